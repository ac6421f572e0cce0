"""The `heliosdb` command's entry point: start PostgreSQL before the rest of HeliosDB imports.

An interactive start (no -c / -f / --storage) needs the managed instance; it
takes ~0.7-0.9 s to come up, about as long as importing the shell. Starting it
in a thread first, from this module that imports almost nothing, overlaps the
two (issue 7: first prompt within 1.5 s).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

_early: tuple[Any, threading.Thread] | None = None


def early_start(argv: list[str]) -> None:
    """When argv asks for the interactive shell on a managed instance, start that instance in a thread."""
    global _early
    if _early is not None or (argv and argv[0] == "serve"):
        return
    import argparse

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-D", "--data-dir")
    p.add_argument("--storage")
    p.add_argument("-c", "--command", action="append")
    p.add_argument("-f", "--file", action="append")
    p.add_argument("-h", "--help", action="store_true")
    try:
        args, _ = p.parse_known_args(argv)
    except SystemExit:  # malformed: the real parser reports it
        return
    if args.storage or args.command or args.file or args.help:
        return
    from heliosdb.storage.instance import Instance

    instance = Instance(args.data_dir)

    def start() -> None:
        try:
            instance.acquire()
        except Exception:  # noqa: BLE001 - the session starts it again and reports the error properly
            pass

    t = threading.Thread(target=start, name="heliosdb-early-start", daemon=True)
    t.start()
    _early = (instance, t)


def wait_early() -> bool:
    """Join an early start if one is running; False when there is none."""
    if _early is None:
        return False
    _early[1].join()
    return True


def main() -> int:
    early_start(sys.argv[1:])
    from heliosdb.cli import main as cli_main

    return cli_main()
