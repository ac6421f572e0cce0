"""The PostgreSQL wire protocol endpoint (`heliosdb serve`)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from heliosdb.server.main import main as serve_main

    return serve_main(argv)
