"""Format, sort, hash and compare query results the way sqllogictest does (pure, no database).

Each value is printed as its column's type letter says, after the reference
implementation's conversions: ``I`` through a C integer conversion (a numeric
or float is truncated, text keeps its integer prefix), ``R`` as ``%.3f`` of a
double, ``T`` as text with unprintable characters replaced by ``@``. ``NULL``
prints as ``NULL`` and the empty string as ``(empty)``.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from heliosdb.slt.parser import HashedResult, Query, SortMode

_INT_PREFIX = re.compile(r"\s*([+-]?\d+)")
_FLOAT_PREFIX = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_UNPRINTABLE = re.compile(r"[^ -~]")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _as_str(value: Any) -> str | None:
    """The text of a value that is text-like (str, bytes), else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return None


def _clamp_real(x: float | Decimal) -> int:
    """C's double -> int64 conversion as SQLite does it: truncate, saturate, NaN is 0."""
    if isinstance(x, Decimal):
        if x.is_nan():
            return 0
        if x.is_infinite():
            return _INT64_MAX if x > 0 else _INT64_MIN
    elif math.isnan(x):
        return 0
    elif math.isinf(x):
        return _INT64_MAX if x > 0 else _INT64_MIN
    return max(_INT64_MIN, min(_INT64_MAX, int(x)))


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        return _clamp_real(value)
    text = _as_str(value)
    if text is None:
        text = str(value)
    m = _INT_PREFIX.match(text)
    return int(m.group(1)) if m else 0


def to_float(value: Any) -> float:
    if isinstance(value, bool | int | float | Decimal):
        return float(value)
    text = _as_str(value)
    if text is None:
        text = str(value)
    m = _FLOAT_PREFIX.match(text)
    return float(m.group(1)) if m else 0.0


def _real_text(x: float) -> str:
    """SQLite's text of a REAL (``%!.15g``: always with a decimal point or an exponent)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    text = f"{x:.15g}"
    if "e" in text:
        mant, exp = text.split("e")
        if "." not in mant:
            mant += ".0"
        return f"{mant}e{exp}"
    return text if "." in text else text + ".0"


def to_text(value: Any) -> str:
    text = _as_str(value)
    if text is not None:
        return text
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return _real_text(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def format_value(value: Any, type_letter: str) -> str:
    """One value as sqllogictest prints it in a column of type `type_letter` (I, R or T)."""
    if value is None:
        return "NULL"
    if _as_str(value) == "":
        return "(empty)"
    if type_letter == "I":
        return str(to_int(value))
    if type_letter == "R":
        return f"{to_float(value):.3f}"
    return _UNPRINTABLE.sub("@", to_text(value))


def format_rows(rows: Iterable[Sequence[Any]], types: str) -> list[list[str]]:
    """Format each row's values by the type string; a row wider than `types` is printed as text."""
    out = []
    for row in rows:
        out.append([format_value(v, types[i] if i < len(types) else "T") for i, v in enumerate(row)])
    return out


def sort_values(rows: list[list[str]], sort: SortMode) -> list[str]:
    """The flat list of values in the order sqllogictest compares them."""
    if sort == "rowsort":
        rows = sorted(rows)
    values = [v for row in rows for v in row]
    if sort == "valuesort":
        values.sort()
    return values


def md5_values(values: Iterable[str]) -> str:
    h = hashlib.md5()
    for v in values:
        h.update(v.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def hash_result(values: Sequence[str]) -> HashedResult:
    return HashedResult(len(values), md5_values(values))


def describe(
    values: Sequence[str] | HashedResult, threshold: int = 0, limit: int = 12, hashed: bool = False
) -> str:
    """A short, one-line rendering of a result for reports (with its hash past `threshold`)."""
    if isinstance(values, HashedResult):
        return str(values)
    if hashed or (threshold > 0 and len(values) > threshold):
        shown = " ".join(values[:limit]) + (" ..." if len(values) > limit else "")
        return f"{hash_result(values)} [{shown}]"
    if not values:
        return "(no rows)"
    text = " ".join(values[:limit])
    return text + (f" ... ({len(values)} values)" if len(values) > limit else "")


def check_query(
    query: Query,
    columns: int,
    rows: Iterable[Sequence[Any]],
    threshold: int = 0,
    labels: dict[str, HashedResult] | None = None,
) -> str | None:
    """Compare a query's result with its record; None when it matches, else what we got.

    A result given as a hash in the script is compared by hash; a literal list is
    compared value by value (equivalent to comparing by hash past the threshold).
    Records sharing a label must all give the same result.
    """
    if columns != len(query.types):
        return f"{columns} columns, expected {len(query.types)}"
    values = sort_values(format_rows(rows, query.types), query.sort)
    got = hash_result(values)
    expected = query.expected
    if isinstance(expected, HashedResult):
        if got != expected:
            return describe(values, hashed=True)
    elif list(expected) != values:
        return describe(values, threshold)
    if labels is not None and query.label:
        seen = labels.setdefault(query.label, got)
        if seen != got:
            return f"{got}, but label {query.label} gave {seen}"
    return None
