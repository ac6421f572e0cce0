"""Result formatting for non-interactive output, byte-compatible with psql's defaults.

aligned (psql's default), unaligned (-A), csv (--csv); tuples_only (-t) drops
headers and footers.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_NUMERIC_OIDS = {20, 21, 23, 26, 700, 701, 1700, 790}


@dataclass
class Table:
    headers: list[str]
    rows: list[tuple[Any, ...]]
    numeric: list[bool]


def returning_tag(status: str | None) -> str | None:
    """The command tag psql prints after the rows of INSERT/UPDATE/DELETE ... RETURNING (None: not one)."""
    if status and status.split(None, 1)[0] in ("INSERT", "UPDATE", "DELETE", "MERGE"):
        return status
    return None


def cell(value: Any) -> str:
    """A value as psql prints it (text output of PostgreSQL's types)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime.datetime):
        text = value.isoformat(sep=" ")
        if value.tzinfo is not None:
            off = value.strftime("%z")
            text = value.replace(tzinfo=None).isoformat(sep=" ") + off[:3] + (":" + off[3:] if off[3:] != "00" else "")
        return text
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return _interval(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def _interval(td: datetime.timedelta) -> str:
    days, secs = td.days, td.seconds
    parts = []
    if days:
        parts.append(f"{days} day{'s' if abs(days) != 1 else ''}")
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    if secs or td.microseconds or not parts:
        frac = f".{td.microseconds:06d}" if td.microseconds else ""
        parts.append(f"{h:02d}:{m:02d}:{s:02d}{frac}")
    return " ".join(parts)


def table_from(description: Sequence[Any], rows: list[tuple[Any, ...]]) -> Table:
    headers = [d[0] for d in description]
    numeric = [getattr(d, "type_code", None) in _NUMERIC_OIDS for d in description]
    return Table(headers, rows, numeric)


def _width(s: str) -> int:
    """Display columns, as psql counts them (East Asian wide characters take two)."""
    if s.isascii():
        return len(s)
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _display(line: str) -> str:
    """Tabs expanded to 8 columns and control characters escaped, as psql shows them."""
    if "\t" in line:
        line = line.expandtabs(8)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in line):
        line = "".join(("\\r" if ch == "\r" else f"\\x{ord(ch):02x}") if ord(ch) < 32 or ord(ch) == 127 else ch
                       for ch in line)
    return line


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - _width(text))
    return fill + text if right else text + fill


def _header(heads: list[list[str]], widths: list[int]) -> str:
    """The header lines, each name centred; a name with newlines takes several lines, each but its last
    marked `+` (psql's print_aligned_text)."""
    out = []
    for k in range(max(len(lines) for lines in heads)):
        parts = []
        for lines, w in zip(heads, widths, strict=True):
            text = lines[k] if k < len(lines) else ""
            pad = w - _width(text) if k < len(lines) else w
            parts.append(" " + " " * (pad // 2) + text + " " * (pad - pad // 2) + ("+" if k < len(lines) - 1 else " "))
        out.append("|".join(parts) + "\n")
    return "".join(out)


def aligned(t: Table, tuples_only: bool = False, null: str = "") -> str:
    """psql's aligned format, byte for byte (multi-line values continue with '+')."""
    cells = [[[_display(x) for x in (cell(v) if v is not None else null).split("\n")] for v in row]
             for row in t.rows]
    ncol = len(t.headers)
    if not ncol:  # psql prints no header and no row lines when there are no columns (`SELECT FROM t`)
        if tuples_only:
            return ""
        n = len(t.rows)
        return f"--\n({n} row{'s' if n != 1 else ''})\n"
    heads = [[_display(x) for x in h.split("\n")] for h in t.headers]
    widths = [max(map(_width, lines)) for lines in heads]
    for row in cells:
        for i, lines in enumerate(row):
            for line in lines:
                widths[i] = max(widths[i], _width(line))
    out = io.StringIO()
    if not tuples_only:
        out.write(_header(heads, widths))
        out.write("-" + "-+-".join("-" * w for w in widths) + "-\n")
    for row in cells:
        height = max((len(lines) for lines in row), default=1)
        for k in range(height):
            parts = []
            for i, lines in enumerate(row):
                text = lines[k] if k < len(lines) else ""
                more = k < len(lines) - 1
                last = i == ncol - 1
                if t.numeric[i] and text:
                    text = _pad(text, widths[i], True)
                elif not last or more:  # the last column too when a `+` follows, as psql
                    text = _pad(text, widths[i], False)
                parts.append(" " + text + ("+" if more else ("" if last else " ")))
            out.write("|".join(parts) + "\n")
    if not tuples_only:
        n = len(t.rows)
        out.write(f"({n} row{'s' if n != 1 else ''})\n")
    return out.getvalue()


def unaligned(t: Table, tuples_only: bool = False, sep: str = "|", null: str = "") -> str:
    out = io.StringIO()
    if not tuples_only:
        out.write(sep.join(t.headers) + "\n")
    for row in t.rows if t.headers else ():  # no columns: psql prints no row lines
        out.write(sep.join(cell(v) if v is not None else null for v in row) + "\n")
    if not tuples_only:
        n = len(t.rows)
        out.write(f"({n} row{'s' if n != 1 else ''})\n")
    return out.getvalue()


def as_csv(t: Table, tuples_only: bool = False, null: str = "") -> str:
    """psql's csv format; NULL prints as the \\pset null string (empty by default), as in psql."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if not tuples_only:
        w.writerow(t.headers)
    for row in t.rows if t.headers else ():  # no columns: psql prints no row lines
        w.writerow([null if v is None else cell(v) for v in row])
    return out.getvalue()


def _record_line(label: str, hwidth: int, dwidth: int) -> str:
    """psql's record header of expanded output (print_aligned_vertical_line, border 1): `-[ RECORD n ]`
    drawn over the name column, the `+`, and the value column, as far as each is wider than the label."""
    line = "-" + label
    reclen = len(line)
    line += "-" * max(0, hwidth - reclen)
    reclen -= hwidth
    for ch in "-+-":
        if reclen <= 0:
            line += ch
        reclen -= 1
    return line + "-" * max(0, dwidth - max(reclen, 0)) + "\n"


def expanded(t: Table, tuples_only: bool = False, null: str = "") -> str:
    """psql's expanded aligned output (`\\x`), byte for byte: one `name | value` line per column."""
    if not t.rows:  # psql ends an empty expanded result with a newline, tuples only too
        return "\n" if tuples_only else "(0 rows)\n\n"
    cells = [[[_display(x) for x in (cell(v) if v is not None else null).split("\n")] for v in row]
             for row in t.rows]
    heads = [[_display(x) for x in h.split("\n")] for h in t.headers]
    hwidth = max((_width(x) for lines in heads for x in lines), default=0)
    dwidth = max((_width(x) for row in cells for lines in row for x in lines), default=0)
    out = io.StringIO()
    for n, row in enumerate(cells, 1):
        if not tuples_only:
            out.write(_record_line(f"[ RECORD {n} ]", hwidth, dwidth))
        elif n > 1:
            out.write(_record_line("", hwidth, dwidth))
        for head, lines in zip(heads, row, strict=False):
            out.write(_vertical_field(head, lines, hwidth, dwidth))
    return out.getvalue() + "\n"


def _vertical_field(head: list[str], lines: list[str], hwidth: int, dwidth: int) -> str:
    """One column of an expanded record (print_aligned_vertical, border 1): the name's lines and the
    value's side by side, each but their last marked `+`; a value shorter than its name leaves `|` alone."""
    out = []
    for k in range(max(len(head), len(lines))):
        name = _pad(head[k], hwidth, False) + ("+" if k < len(head) - 1 else " ") if k < len(head) \
            else " " * (hwidth + 1)
        value = ""
        if k < len(lines):
            value = " " + (_pad(lines[k], dwidth, False) + "+" if k < len(lines) - 1 else lines[k])
        out.append(f"{name}|{value}\n")
    return "".join(out)


def expanded_unaligned(t: Table, tuples_only: bool = False, null: str = "", sep: str = "|") -> str:
    """psql's expanded unaligned output: `name|value` lines, records apart by an empty line."""
    if not t.rows:
        return "" if tuples_only else "(0 rows)\n"
    records = ["".join(f"{h}{sep}{cell(v) if v is not None else null}\n" for h, v in zip(t.headers, row, strict=False))
               for row in t.rows]
    return "\n".join(records)
