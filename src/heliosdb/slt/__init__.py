"""A sqllogictest runner: the corpus in plain PostgreSQL and in HeliosDB, on main and on branches.

``python -m heliosdb.slt [--modes 1,2,3,4] [--data-dir DIR] [FILES or dirs...]``; see docs/conformance.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from heliosdb.slt.parser import ENGINE, Script, SltParseError, parse, parse_file
from heliosdb.slt.runner import ALL_MODES, FileResult, ModeResult, run_file, run_files

__all__ = [
    "ALL_MODES",
    "ENGINE",
    "FileResult",
    "ModeResult",
    "Script",
    "SltParseError",
    "corpus_dir",
    "parse",
    "parse_file",
    "run_file",
    "run_files",
]


def corpus_dir() -> Path:
    """The sqllogictest corpus: $HELIOSDB_SLT_DIR, else <repository>/../shared/sqllogictest."""
    env = os.environ.get("HELIOSDB_SLT_DIR")
    if env:
        return Path(env)
    candidates = [Path(__file__).resolve().parents[3], Path.cwd(), *Path.cwd().parents]
    for root in candidates:
        path = root.parent / "shared" / "sqllogictest"
        if path.is_dir():
            return path
    return candidates[0].parent / "shared" / "sqllogictest"
