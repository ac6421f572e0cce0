"""The interactive shell's result formatter: box-drawn tables, expanded records, csv/json/unaligned.

Pure: values in, text out. Non-interactive output (-c, -f, piped input) keeps
using heliosdb.shell.output, which is byte-compatible with psql.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from heliosdb.shell import output

_NUMERIC_OIDS = output._NUMERIC_OIDS  # noqa: SLF001 - the one list of numeric type OIDs
_JSON_OIDS = {114, 3802}
_CTRL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"


BOX_NULL = "<null>"


@dataclass
class RenderOptions:
    format: str = "aligned"  # aligned (box-drawn), csv, json, unaligned
    expanded: str = "off"  # on, off, auto
    null: str = BOX_NULL
    tuples_only: bool = False
    colour: bool = False
    width: int | None = None  # terminal width: wide tables wrap (or expand with \x auto)


# -- cell text -------------------------------------------------------------------------------------
def _array_item(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, list):
        return array_literal(v)
    s = output.cell(v)
    if s == "" or s.upper() == "NULL" or any(c in s for c in ',{}"\\ \t\n'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def array_literal(values: list[Any]) -> str:
    """A Python list as PostgreSQL prints an array: {a,b,"c d"}."""
    return "{" + ",".join(_array_item(v) for v in values) + "}"


_OFFSETS: dict[datetime.timedelta | None, str] = {}


def _offset(off: datetime.timedelta | None) -> str:
    """A UTC offset as PostgreSQL prints it: +00, +05:30, -08."""
    text = _OFFSETS.get(off)
    if text is None:
        secs = int(off.total_seconds()) if off is not None else 0
        sign, secs = ("-", -secs) if secs < 0 else ("+", secs)
        h, m = divmod(secs // 60, 60)
        text = _OFFSETS[off] = f"{sign}{h:02d}" + (f":{m:02d}" if m else "")
    return text


def _datetime(v: datetime.datetime) -> str:
    if v.tzinfo is None:
        return v.isoformat(sep=" ")
    return v.replace(tzinfo=None).isoformat(sep=" ") + _offset(v.utcoffset())


_FAST: dict[type, Any] = {str: str, int: str, decimal.Decimal: str, bool: lambda v: "t" if v else "f",
                          datetime.datetime: _datetime}


def cell_text(value: Any, json_type: bool = False) -> str:
    """A value as PostgreSQL prints it (heliosdb.shell.output.cell, with fast paths for common types)."""
    fast = _FAST.get(type(value))
    if fast is not None:
        return fast(value)  # type: ignore[no-any-return]
    if isinstance(value, list) and not json_type:
        return array_literal(value)
    return output.cell(value)


def _width(s: str) -> int:
    if s.isascii():
        return len(s)
    from wcwidth import wcswidth

    w = wcswidth(s)
    return w if w >= 0 else len(s)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | decimal.Decimal) and not isinstance(v, bool)


def numeric_flags(rows: Sequence[Sequence[Any]], ncol: int) -> list[bool]:
    """Right-align a column when every value in it is a number."""
    flags = []
    for i in range(ncol):
        vals = [r[i] for r in rows if r[i] is not None]
        flags.append(bool(vals) and all(_is_number(v) for v in vals))
    return flags


def types_of(description: Sequence[Any]) -> list[int | None]:
    return [getattr(d, "type_code", None) for d in description]


# -- entry point -----------------------------------------------------------------------------------
def render(headers: list[str], rows: Sequence[Sequence[Any]], opts: RenderOptions, *,
           numeric: list[bool] | None = None, types: list[int | None] | None = None,
           title: str | None = None, footer: Sequence[str] = (), count: bool = True) -> str:
    ncol = len(headers)
    if types is not None:
        numeric = [t in _NUMERIC_OIDS for t in types]
        json_cols = [t in _JSON_OIDS for t in types]
    else:
        json_cols = [False] * ncol
        if numeric is None:
            numeric = numeric_flags(rows, ncol)
    # <null> is the box-drawn tables' default: csv and unaligned print NULL as psql does, empty unless \pset null
    plain_null = "" if opts.null == BOX_NULL else opts.null
    if opts.format == "csv":
        return output.as_csv(_table(headers, rows, numeric, json_cols), opts.tuples_only, plain_null)
    if opts.format == "unaligned":
        return output.unaligned(_table(headers, rows, numeric, json_cols), opts.tuples_only, null=plain_null)
    if opts.format == "json":
        return as_json(headers, rows, json_cols)
    null = f"{DIM}{opts.null}{RESET}" if opts.colour else opts.null
    cells = [[None if v is None else cell_text(v, json_cols[i]) for i, v in enumerate(r)] for r in rows]
    for j in range(ncol if cells else 0):  # tabs and control characters, shown as psql shows them
        if _CTRL.search("".join(v for r in cells if (v := r[j]) is not None)):
            for r in cells:
                v = r[j]
                if v is not None:
                    r[j] = "\n".join(output._display(x) for x in v.split("\n"))  # noqa: SLF001
    out = io.StringIO()
    if title and not opts.tuples_only:
        out.write(title + "\n")
    text = None
    if opts.expanded == "on":
        text = expanded(headers, cells, opts, null)
    else:
        text = box(headers, cells, numeric, opts, null)
        if opts.expanded == "auto" and opts.width and _longest(text) > opts.width and rows:
            text = expanded(headers, cells, opts, null)
    out.write(text)
    if not opts.tuples_only:
        for line in footer:
            out.write(line + "\n")
        if count:
            n = len(rows)
            out.write(f"({n} row{'s' if n != 1 else ''})\n")
    return out.getvalue()


def _longest(text: str) -> int:
    return max((_width(line) for line in text.split("\n", 3)[:3]), default=0)


def _table(headers: list[str], rows: Sequence[Sequence[Any]], numeric: list[bool],
           json_cols: list[bool]) -> output.Table:
    fixed = [tuple(v if v is None or not isinstance(v, list) or json_cols[i] else array_literal(v)
                   for i, v in enumerate(r)) for r in rows]
    return output.Table(list(headers), fixed, numeric)


def _json_value(v: Any, json_col: bool, exact: list[str]) -> Any:
    if isinstance(v, float) and not math.isfinite(v):  # JSON has no NaN/Infinity: strings, as PostgreSQL's to_json
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, decimal.Decimal):
        if not v.is_finite():
            return str(v)
        exact.append(str(v))  # written as its exact digits, not through float
        return f"\x00{len(exact) - 1}\x00"
    if isinstance(v, dict) or (isinstance(v, list) and json_col):
        return v
    if isinstance(v, list):
        return [_json_value(x, False, exact) for x in v]
    return output.cell(v)


def json_keys(headers: list[str]) -> list[str]:
    """Object keys for the columns: a repeated name gets _2, _3... (the first that no column has), so no
    column is lost."""
    keys: list[str] = []
    for h in headers:
        key, n = h, 1
        while key in keys or (n > 1 and key in headers):
            n += 1
            key = f"{h}_{n}"
        keys.append(key)
    return keys


def as_json(headers: list[str], rows: Sequence[Sequence[Any]], json_cols: list[bool]) -> str:
    exact: list[str] = []
    keys = json_keys(headers)
    objs = [{k: _json_value(v, json_cols[i], exact) for i, (k, v) in enumerate(zip(keys, r, strict=False))}
            for r in rows]
    text = json.dumps(objs, indent=2, ensure_ascii=False, allow_nan=False)
    if exact:
        text = re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: exact[int(m.group(1))], text)
    return text + "\n"


# -- box-drawn table -------------------------------------------------------------------------------
def _fit(widths: list[int], numeric: list[bool], headers: list[str], limit: int) -> list[int]:
    """Narrow the widest text columns until the table fits `limit` columns (never below 8)."""
    widths = list(widths)
    budget = limit - (3 * len(widths) + 1)
    while sum(widths) > budget:
        cands = [i for i in range(len(widths)) if not numeric[i] and widths[i] > max(8, _width(headers[i]) // 2)]
        if not cands:
            break
        i = max(cands, key=lambda k: widths[k])
        # Down to the next widest column at most, so that wide columns end up sharing the width evenly
        # instead of the first one taking the whole overflow.
        others = [widths[k] for k in cands if k != i]
        floor = max(8, _width(headers[i]) // 2, max(others, default=0))
        widths[i] -= max(1, min(widths[i] - floor, sum(widths) - budget))
    return widths


def _chunks(line: str, width: int) -> list[str]:
    if _width(line) <= width:
        return [line]
    out, cur, w = [], "", 0
    for ch in line:
        cw = _width(ch)
        if w + cw > width and cur:
            out.append(cur)
            cur, w = "", 0
        cur += ch
        w += cw
    out.append(cur)
    return out


def _pad(s: str, width: int, right: bool) -> str:
    gap = width - _width(s)
    if gap <= 0:
        return s
    return " " * gap + s if right else s + " " * gap


def box(headers: list[str], cells: list[list[str | None]], numeric: list[bool], opts: RenderOptions,
        null: str) -> str:
    ncol = len(headers)
    if ncol == 0:
        return "" if opts.tuples_only else "┌┐\n└┘\n"
    heads = [h.split("\n") for h in headers]  # a name with newlines: one header line each
    widths = [0 if opts.tuples_only else max(map(_width, lines)) for lines in heads]
    multiline = False
    cols = [list(c) for c in zip(*cells, strict=True)] if cells else [[] for _ in headers]
    ascii_cols = []
    nullw = _width(opts.null)
    for i, col in enumerate(cols):  # column by column: one pass of C-level builtins per column
        values = [v for v in col if v is not None]
        joined = "".join(values)
        is_ascii = joined.isascii()
        ascii_cols.append(is_ascii)
        if "\n" in joined:
            multiline = True
            w = max((_width(x) for v in values for x in v.split("\n")), default=0)
        elif is_ascii:
            w = max(map(len, values), default=0)
        else:
            w = max(map(_width, values), default=0)
        if len(values) < len(col):
            w = max(w, nullw)
        widths[i] = max(widths[i], w)
    if opts.width and sum(widths) + 3 * ncol + 1 > opts.width and opts.expanded != "auto":
        fitted = _fit(widths, numeric, headers, opts.width)
        if fitted != widths:
            widths, multiline = fitted, True
    bar = lambda left, mid, right: left + mid.join("─" * (w + 2) for w in widths) + right + "\n"  # noqa: E731
    out = io.StringIO()
    out.write(bar("┌", "┬", "┐"))
    if not opts.tuples_only:
        # a name wider than its (narrowed) column wraps like the values do
        heads = [[c for line in lines for c in _chunks(line, widths[i])] for i, lines in enumerate(heads)]
        for k in range(max(len(lines) for lines in heads)):
            parts = []
            for i, lines in enumerate(heads):
                h = lines[k] if k < len(lines) else ""
                pad = widths[i] - _width(h)
                text = " " * (pad // 2) + h + " " * (pad - pad // 2)
                parts.append(f"{BOLD}{text}{RESET}" if opts.colour and h else text)
            out.write("│ " + " │ ".join(parts) + " │\n")
        out.write(bar("├", "┼", "┤"))
    write = out.write
    if not multiline:
        padded = []
        for i, col in enumerate(cols):
            w, right = widths[i], numeric[i]
            np = (" " * (w - nullw) + null) if right else (null + " " * (w - nullw))
            if ascii_cols[i]:
                padded.append([np if v is None else v.rjust(w) for v in col] if right
                              else [np if v is None else v.ljust(w) for v in col])
            else:
                padded.append([np if v is None else _pad(v, w, right) for v in col])
        write("".join(["│ " + " │ ".join(r) + " │\n" for r in zip(*padded, strict=True)]))
    else:
        for row in cells:
            lines: list[list[str | None]] = []
            for i, v in enumerate(row):
                if v is None:
                    lines.append([None])
                else:
                    lines.append([c for part in v.split("\n") for c in _chunks(part, widths[i])])
            height = max(len(x) for x in lines)
            for k in range(height):
                parts = []
                for i in range(ncol):
                    col = lines[i]
                    if k >= len(col):
                        parts.append(" " * widths[i])
                    elif col[k] is None:
                        parts.append(_pad(opts.null, widths[i], numeric[i]).replace(opts.null, null))
                    else:
                        parts.append(_pad(col[k] or "", widths[i], numeric[i]))
                write("│ " + " │ ".join(parts) + " │\n")
    out.write(bar("└", "┴", "┘"))
    return out.getvalue()


def expanded(headers: list[str], cells: list[list[str | None]], opts: RenderOptions, null: str) -> str:
    """One block per record, as psql's \\x with unicode borders."""
    if not cells:
        return ""
    labels = not opts.tuples_only  # as psql: rows only, the records are apart by a plain rule
    heads = [h.split("\n") for h in headers]
    hw = max([_width(x) for lines in heads for x in lines]
             + ([_width(f"─[ RECORD {len(cells)} ]") - 1] if labels else []))
    vw = 0
    for row in cells:
        for v in row:
            text = opts.null if v is None else v
            vw = max(vw, *(_width(x) for x in text.split("\n")))
    if opts.width:
        vw = min(vw, max(8, opts.width - hw - 7))
    out = io.StringIO()
    for n, row in enumerate(cells, 1):
        label = f"─[ RECORD {n} ]" if labels else ""
        left = "┌" if n == 1 else "├"
        mid = "┬" if n == 1 else "┼"
        right = "┐" if n == 1 else "┤"
        first = label + "─" * (hw + 2 - _width(label))
        out.write(left + first + mid + "─" * (vw + 2) + right + "\n")
        for hlines, v in zip(heads, row, strict=False):
            vals: list[str | None]
            if v is None:
                vals = [None]
            else:
                vals = [c for part in v.split("\n") for c in _chunks(part, vw)]
            for k in range(max(len(hlines), len(vals))):
                head = _pad(hlines[k] if k < len(hlines) else "", hw, False)
                if opts.colour and k < len(hlines):
                    head = f"{BOLD}{head}{RESET}"
                val = vals[k] if k < len(vals) else ""
                body = _pad(opts.null, vw, False).replace(opts.null, null) if val is None else _pad(val, vw, False)
                out.write(f"│ {head} │ {body} │\n")
    out.write("└" + "─" * (hw + 2) + "┴" + "─" * (vw + 2) + "┘\n")
    return out.getvalue()


def timing_text(ms: float) -> str:
    """`Time: ...` as psql's \\timing prints it: from a second on, also (mm:ss.fff), (hh:mm:ss.fff) from an
    hour, (N d hh:mm:ss.fff) from a day."""
    if ms < 1000.0:
        return f"Time: {ms:.3f} ms"
    seconds = ms / 1000.0
    minutes = math.floor(seconds / 60.0)
    seconds -= 60.0 * minutes
    if minutes < 60:
        return f"Time: {ms:.3f} ms ({minutes:02d}:{seconds:06.3f})"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"Time: {ms:.3f} ms ({hours:02d}:{minutes:02d}:{seconds:06.3f})"
    days, hours = divmod(hours, 24)
    return f"Time: {ms:.3f} ms ({days} d {hours:02d}:{minutes:02d}:{seconds:06.3f})"


# -- errors ----------------------------------------------------------------------------------------
VERBOSITY = ("default", "verbose", "terse", "sqlstate")  # psql's \\set VERBOSITY values
# what \\set VERBOSITY verbose adds, as libpq names PostgreSQL's error fields
_VERBOSE_FIELDS = (("schema", "SCHEMA NAME"), ("table", "TABLE NAME"), ("column", "COLUMN NAME"),
                   ("datatype", "DATATYPE NAME"), ("constraint", "CONSTRAINT NAME"))


def error_text(exc: Any, statement: str | None = None, colour: bool = False, verbosity: str = "default") -> str:
    """ERROR:  <SQLSTATE>: <message>, the statement line with a caret under the error position,
    then DETAIL, HINT and CONTEXT, as psql prints them; verbosity as psql's \\set VERBOSITY
    (terse: the first line only, sqlstate: the code only, verbose: also the error's named fields)."""
    sqlstate = getattr(exc, "sqlstate", None)
    label = "\x1b[1;31mERROR:\x1b[0m" if colour else "ERROR:"
    if verbosity == "sqlstate" and sqlstate:
        return f"{label}  {sqlstate}\n"
    code = f"{sqlstate}: " if sqlstate else ""
    lines = [f"{label}  {code}{exc.message}"]
    pos = getattr(exc, "position", None)
    if verbosity == "terse":
        return lines[0] + (f" at character {pos}" if statement and pos else "") + "\n"
    if statement and pos and 0 < pos <= len(statement) + 1:
        lines += _caret(statement, pos)
    if getattr(exc, "detail", None):
        lines.append(f"DETAIL:  {exc.detail}")
    if getattr(exc, "hint", None):
        lines.append(f"HINT:  {exc.hint}")
    fields = getattr(exc, "fields", None) or {}
    if fields.get("where"):
        lines.append(f"CONTEXT:  {fields['where']}")
    if verbosity == "verbose":
        lines += [f"{name}:  {fields[key]}" for key, name in _VERBOSE_FIELDS if fields.get(key)]
    return "\n".join(lines) + "\n"


def _caret(statement: str, pos: int) -> list[str]:
    """psql's `LINE n: ...` and the caret under character pos (1-based) of the statement."""
    before = statement[: pos - 1]
    lineno = before.count("\n") + 1
    start = before.rfind("\n") + 1
    end = statement.find("\n", start)
    text = statement[start:] if end < 0 else statement[start:end]
    col = _width(before[start:])
    if len(text) > 100:  # long lines: a window around the position, as psql does
        lo = max(0, col - 50)
        text = ("..." if lo else "") + text[lo:lo + 100] + ("..." if lo + 100 < len(text) else "")
        col = col - lo + (3 if lo else 0)
    prefix = f"LINE {lineno}: "
    return [prefix + text, " " * (len(prefix) + col) + "^"]
