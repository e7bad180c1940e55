"""Names that moved keep working for one release, with a ``DeprecationWarning`` that says where they went and
the version that removes them (``REMOVED_IN``).

Example
-------
>>> import warnings
>>> def new_name(x):
...     return x + 1
>>> old_name = deprecated_alias(new_name, "old_name", "new_name")
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     old_name(1), str(caught[0].message)
(2, 'old_name is deprecated and will be removed in version 0.4: use new_name')
"""

import functools
import importlib
import warnings

#: The release that removes the names deprecated in this one.
REMOVED_IN = "0.4"


def warn_moved(old, new):
    """Warns that ``old`` is deprecated in favour of ``new`` (both as a user would write them)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in version {REMOVED_IN}: use {new}", DeprecationWarning, stacklevel=3
    )


def deprecated_alias(function, old, new):
    """``function`` under its previous name ``old``: calls warn, then run ``function``."""

    @functools.wraps(function)
    def alias(*args, **kwargs):
        """The moved function, after the warning that names its new place."""
        warn_moved(old, new)
        return function(*args, **kwargs)

    return alias


def deprecated_class(cls, old, new):
    """A subclass of ``cls`` under its previous name ``old`` that warns when it is built (``from_hparams`` too).

    ``cls`` may be a mixin: the warning subclass hands construction on along the method resolution order.
    """

    def __init__(self, *args, **kwargs):
        warn_moved(old, new)
        super(alias, self).__init__(*args, **kwargs)

    alias = type(
        old, (cls,), {"__init__": __init__, "__doc__": f"Deprecated name of ``{new}``.", "__module__": cls.__module__}
    )
    return alias


def moved_names(module, moved):
    """A module-level ``__getattr__`` (PEP 562) under which each name of ``moved`` (``{name: new module}``) can
    still be imported from ``module``, with a ``DeprecationWarning`` that says where it went.

    Example
    -------
    >>> import warnings
    >>> __getattr__ = moved_names("old.place", {"sqrt": "math"})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     __getattr__("sqrt")(4.0), str(caught[0].message)
    (2.0, 'old.place.sqrt is deprecated and will be removed in version 0.4: use math.sqrt')
    """

    def __getattr__(name):
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warn_moved(f"{module}.{name}", f"{moved[name]}.{name}")
        return getattr(importlib.import_module(moved[name]), name)

    return __getattr__
