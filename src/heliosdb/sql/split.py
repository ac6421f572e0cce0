"""Split SQL text into statements at ';' outside quotes, comments, dollar quotes and parentheses."""

from __future__ import annotations

import re

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
_ATOMIC = re.compile(r"BEGIN\s+ATOMIC\b", re.IGNORECASE)
_END = re.compile(r"END\b", re.IGNORECASE)
_CASE = re.compile(r"CASE\b", re.IGNORECASE)


class Scanner:
    """Incremental statement scanner; the shell feeds it line by line."""

    def __init__(self) -> None:
        self.buffer = ""

    @staticmethod
    def scan(text: str) -> tuple[list[str], str, bool]:
        """(complete statements, remaining text, inside-something?)."""
        out: list[str] = []
        i, start, depth, n = 0, 0, 0, len(text)
        state = ""  # '', "'", "E'", '"', '--', '/*', or a dollar tag
        comment_depth = 0
        atomic = 0
        cases = 0
        while i < n:
            c = text[i]
            if state == "":
                if c == "'" and i > 0 and text[i - 1] in "eE" and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_")):
                    state = "E'"  # backslash escapes apply inside E'...'
                elif c == "'" or c == '"':
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
                elif c in "bB" and _ATOMIC.match(text, i) and (i == 0 or not text[i - 1].isalnum()):
                    depth += 1  # BEGIN ATOMIC ... END (a SQL function body) is one statement
                    atomic += 1
                    i = _ATOMIC.match(text, i).end()  # type: ignore[union-attr]
                    continue
                elif atomic and c in "cC" and _CASE.match(text, i) and (i == 0 or not text[i - 1].isalnum()):
                    cases += 1
                    i += 4
                    continue
                elif atomic and c in "eE" and _END.match(text, i) and (i == 0 or not text[i - 1].isalnum()):
                    if cases:
                        cases -= 1  # the END of a CASE inside the body
                    else:
                        depth -= 1
                        atomic -= 1
                    i += 3
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
            elif state == "E'":
                if c == "\\":
                    i += 1
                elif c == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        i += 1
                    else:
                        state = ""
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
            depth, i = 0, 0
            while i < len(s):
                if s.startswith("/*", i):
                    depth += 1
                    i += 2
                elif s.startswith("*/", i):
                    depth -= 1
                    i += 2
                    if depth == 0:
                        break
                else:
                    i += 1
            s = s[i:].lstrip() if depth == 0 else ""
        else:
            return s
