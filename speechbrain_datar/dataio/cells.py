"""The cells of annotation files: numbers as data sets write them, and nothing else.

A cell that is not a plain ASCII number (``²``, ``٣``), or a number no clip can have (``inf``, ``nan``,
``1e400``, a negative time), raises ``ValueError``; preparations count such a row as ``bad_row``.
"""

import math


def whole_number(text):
    """A whole, non-negative number written in ASCII digits (annotation cells); ``ValueError`` otherwise.

    Example
    -------
    >>> whole_number(" 42 ")
    42
    >>> whole_number("\u00b2")
    Traceback (most recent call last):
    ...
    ValueError: '²' is not a whole, non-negative number
    """
    value = (text or "").strip()
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{value!r} is not a whole, non-negative number")
    return int(value)


def seconds(text):
    """A finite, non-negative number of seconds (annotation cells); ``ValueError`` for anything else,
    ``inf``, ``nan`` and ``1e400`` included.

    Example
    -------
    >>> seconds("12.5"), seconds("3")
    (12.5, 3.0)
    >>> seconds("1e400")
    Traceback (most recent call last):
    ...
    ValueError: '1e400' is not a finite, non-negative number of seconds
    """
    value = (text or "").strip()
    try:
        number = float(value) if value.isascii() else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} is not a finite, non-negative number of seconds")
    return number
