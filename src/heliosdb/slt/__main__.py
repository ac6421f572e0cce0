"""Command line: ``python -m heliosdb.slt [--modes 1,2,3,4] [--data-dir DIR] [FILES or dirs...]``.

Prints a markdown table (file, records, passed per mode, differences), the time
per file and mode, and the differing records; exits 1 when any record that
passes on plain PostgreSQL fails in a HeliosDB mode.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from heliosdb.slt import corpus_dir
from heliosdb.slt.backends import MODES
from heliosdb.slt.report import render, write_markdown
from heliosdb.slt.runner import run_files


def _modes(text: str) -> list[int]:
    try:
        modes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"modes are numbers from 1 to 4, got {text!r}") from None
    if not modes or any(m not in MODES for m in modes):
        raise argparse.ArgumentTypeError(f"modes are numbers from 1 to 4, got {text!r}")
    return modes


def collect(targets: Sequence[str], corpus: Path) -> list[tuple[Path, str]]:
    """(path, display name) of every .test file named or found under a named directory."""
    paths: list[Path] = []
    for target in targets or [str(corpus)]:
        p = Path(target)
        if not p.exists() and (corpus / target).exists():
            p = corpus / target
        if p.is_dir():
            paths.extend(sorted(p.rglob("*.test")))
        elif p.exists():
            paths.append(p)
        else:
            raise SystemExit(f"no such file or directory: {target}")
    out = []
    base = corpus.resolve()
    for p in paths:
        try:
            name = str(p.resolve().relative_to(base))
        except ValueError:
            name = str(p)
        out.append((p, name))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m heliosdb.slt", description=__doc__.split("\n\n")[1])
    ap.add_argument("targets", nargs="*", metavar="FILE_OR_DIR", help="default: the whole corpus")
    ap.add_argument(
        "--modes",
        type=_modes,
        default=[1, 2, 3, 4],
        help="comma-separated: " + ", ".join(f"{k} {v}" for k, v in MODES.items()),
    )
    ap.add_argument("--data-dir", help="HeliosDB data directory (default: a temporary one)")
    ap.add_argument(
        "--markdown",
        metavar="PATH",
        help="also write the report there (between the slt-results markers if the file has them)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write every result, failure and difference as JSON")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="files run in parallel processes")
    ap.add_argument("--timeout", type=float, default=300, help="statement timeout in seconds (0: none)")
    ap.add_argument(
        "--budget",
        type=float,
        default=0,
        help="seconds per file and mode; records left when it is spent are not run (0: no limit)",
    )
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)

    corpus = corpus_dir()
    files = collect(args.targets, corpus)
    if not files:
        print("no .test files found", file=sys.stderr)
        return 2
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="heliosdb-slt-")
        # registered before the instance's own atexit release, so it runs after it
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = run_files(
        files,
        args.modes,
        data_dir,
        jobs=args.jobs,
        timeout=args.timeout,
        progress=None if args.quiet else progress,
        budget=args.budget,
    )
    text = render(results, args.modes)
    print(text)
    if args.markdown:
        write_markdown(args.markdown, text)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    failed = any(r.differences or r.error for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
