"""LSN text form: X/XXXXXXXX (high and low 32 bits in hex), or a plain integer."""

from __future__ import annotations

import re

from heliosdb.errors import InvalidTemporalPoint

_LSN = re.compile(r"^\s*([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\s*$")
from heliosdb.catalog.model import MAX_LSN  # noqa: E402,F401 - re-exported


def format_lsn(value: int) -> str:
    """As PostgreSQL prints LSNs (%X/%X): 0/1A3F."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def parse_lsn(text: str | int) -> int:
    if isinstance(text, int):
        value = text
    else:
        m = _LSN.match(text)
        if m:
            value = (int(m.group(1), 16) << 32) | int(m.group(2), 16)
        elif text.strip().isascii() and text.strip().isdigit():
            value = int(text.strip())
        else:
            raise InvalidTemporalPoint(
                f'invalid LSN "{text}"', hint="Write an LSN as X/XXXXXXXX (hex) or as an integer."
            )
    if not 0 <= value <= MAX_LSN:
        raise InvalidTemporalPoint(f'LSN "{text}" is out of range')
    return value
