"""Split SQL text into statements at ';' outside quotes, comments, dollar quotes and parentheses."""

from __future__ import annotations

import re

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


class Scanner:
    """Incremental statement scanner; the shell feeds it line by line."""

    def __init__(self) -> None:
        self.buffer = ""

    @staticmethod
    def scan(text: str) -> tuple[list[str], str, bool]:
        """(complete statements, remaining text, inside-something?)."""
        out: list[str] = []
        i, start, depth, n = 0, 0, 0, len(text)
        state = ""  # '', "'", '"', '--', '/*', or a dollar tag
        comment_depth = 0
        while i < n:
            c = text[i]
            if state == "":
                if c == "'" or c == '"':
                    state = c
                elif c == "-" and text.startswith("--", i):
                    state = "--"
                    i += 1
                elif c == "/" and text.startswith("/*", i):
                    state, comment_depth = "/*", 1
                    i += 1
                elif c == "$":
                    m = _DOLLAR.match(text, i)
                    if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
                        state = m.group(0)
                        i = m.end()
                        continue
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth = max(0, depth - 1)
                elif c == ";" and depth == 0:
                    stmt = text[start:i].strip()
                    if stmt:
                        out.append(stmt)
                    start = i + 1
            elif state in ("'", '"'):
                if c == state:
                    if i + 1 < n and text[i + 1] == state:
                        i += 1
                    else:
                        state = ""
            elif state == "--":
                if c == "\n":
                    state = ""
            elif state == "/*":
                if text.startswith("*/", i):
                    comment_depth -= 1
                    i += 1
                    if comment_depth == 0:
                        state = ""
                elif text.startswith("/*", i):
                    comment_depth += 1
                    i += 1
            else:  # dollar quote
                if text.startswith(state, i):
                    i += len(state)
                    state = ""
                    continue
            i += 1
        rest = text[start:]
        pending = state not in ("", "--") or depth > 0
        return out, rest, pending


def split_statements(text: str) -> list[str]:
    """Every statement in `text`; a trailing one without ';' counts too."""
    if ";" not in text.rstrip().rstrip(";"):
        # the hot path: one statement, with or without a final ';'
        one = text.strip().rstrip(";").rstrip()
        return [one] if strip_comments(one).strip() else []
    stmts, rest, _ = Scanner.scan(text)
    if strip_comments(rest).strip():
        stmts.append(rest.strip())
    return stmts


def strip_comments(text: str) -> str:
    """Drop leading '--' and '/* */' comments (for classifying a statement)."""
    s = text.lstrip()
    while True:
        if s.startswith("--"):
            nl = s.find("\n")
            s = "" if nl < 0 else s[nl + 1 :].lstrip()
        elif s.startswith("/*"):
            end = s.find("*/")
            s = "" if end < 0 else s[end + 2 :].lstrip()
        else:
            return s
