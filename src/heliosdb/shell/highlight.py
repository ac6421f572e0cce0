"""Syntax highlighting: pygments' PostgreSQL lexer plus HeliosDB's words and the shell's meta commands."""

from __future__ import annotations

from pygments.lexer import words
from pygments.lexers.sql import PostgresLexer
from pygments.token import Keyword, Name, Number

from heliosdb.shell.completion import HELIOS_WORDS

_EXTRA = tuple(sorted({*HELIOS_WORDS, "VERSIONS_STARTSCN", "VERSIONS_ENDSCN", "VERSIONS_STARTTIME",
                       "VERSIONS_ENDTIME", "VERSIONS_STARTLSN", "VERSIONS_ENDLSN", "VERSIONS_XID",
                       "VERSIONS_OPERATION", "COMPLETE", "USE"}))


class HeliosLexer(PostgresLexer):
    name = "HeliosDB SQL"
    aliases = ["heliosdb"]

    tokens = {
        **PostgresLexer.tokens,
        "root": [
            (r"\\[A-Za-z?!][^\s]*", Keyword.Pseudo),  # meta command
            (r"\b[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}\b", Number.Hex),  # an LSN
            (words(_EXTRA, prefix=r"(?i)\b", suffix=r"\b"), Keyword),
            (r"\bheliosdb\.", Name.Namespace),
            *PostgresLexer.tokens["root"],
        ],
    }


STYLE = {
    "pygments.keyword": "ansiblue bold",
    "pygments.keyword.pseudo": "ansimagenta bold",
    "pygments.name.builtin": "ansicyan",
    "pygments.name.namespace": "ansicyan",
    "pygments.literal.string": "ansigreen",
    "pygments.literal.string.single": "ansigreen",
    "pygments.literal.number": "ansiyellow",
    "pygments.comment": "ansibrightblack italic",
    "pygments.operator": "",
}
