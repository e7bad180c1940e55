"""JSON from files anyone could have written (shards, exported models' metadata): parsed strictly and within bounds.

``parse_json`` refuses what Python's ``json`` accepts but a reader should not: more than a size limit, nesting
deeper than a limit (counted before parsing, so that depth costs nothing), duplicate keys (the last would win
silently), non-finite numbers (``NaN``, ``Infinity``, ``1e999``) and integers of more digits than any count
needs. Every refusal is a ``ValueError`` naming the problem.
"""

import json
import math

MAX_JSON_BYTES = 1 << 16
MAX_JSON_DEPTH = 16
MAX_INT_DIGITS = 30


def _no_duplicate_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is not finite")
    return value


def _bounded_int(text):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a {len(text)}-digit number")
    return int(text)


def _reject_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def _depth(text):
    """The deepest nesting of brackets outside strings (computed without parsing, so that depth costs nothing)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(data, limit=MAX_JSON_BYTES, max_depth=MAX_JSON_DEPTH):
    """Strict, bounded JSON: ``ValueError`` for more than ``limit`` bytes, invalid UTF-8 or JSON, nesting deeper
    than ``max_depth``, duplicate keys, non-finite numbers or integers of more than 30 digits.

    Example
    -------
    >>> parse_json(b'{"id": "a", "duration": 1.5}')
    {'id': 'a', 'duration': 1.5}
    >>> parse_json(b'{"duration": 1e999}')
    Traceback (most recent call last):
    ...
    ValueError: number 1e999 is not finite
    >>> parse_json(b'{"a": 1, "a": 2}')
    Traceback (most recent call last):
    ...
    ValueError: duplicate key 'a'
    """
    if len(data) > limit:
        raise ValueError(f"{len(data)} bytes of JSON, more than {limit}")
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if _depth(text) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth}")
    return json.loads(
        text,
        object_pairs_hook=_no_duplicate_keys,
        parse_float=_finite_float,
        parse_int=_bounded_int,
        parse_constant=_reject_constant,
    )
