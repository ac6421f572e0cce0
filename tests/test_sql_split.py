"""heliosdb.sql.split: statement splitting the way psql splits a script."""

from __future__ import annotations

import pytest

from heliosdb.sql.split import Scanner, split_statements, strip_comments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT 1;", ["SELECT 1"]),
        ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
        ("  SELECT 1 ;\n\n  SELECT 2 ;  ", ["SELECT 1", "SELECT 2"]),
        (";;  ; SELECT 1;;", ["SELECT 1"]),
        ("", []),
        ("   \n\t ", []),
    ],
)
def test_basic_splitting(text: str, expected: list[str]) -> None:
    assert split_statements(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
        ("SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine'", "SELECT 2"]),
        ("SELECT ''';'''; SELECT 2", ["SELECT ''';'''", "SELECT 2"]),
        ('SELECT 1 AS "a;b"; SELECT 2', ['SELECT 1 AS "a;b"', "SELECT 2"]),
        ('SELECT 1 AS "say ""hi;"""; SELECT 2', ['SELECT 1 AS "say ""hi;"""', "SELECT 2"]),
        ("SELECT '\"'; SELECT '--'; SELECT '/*'", ["SELECT '\"'", "SELECT '--'", "SELECT '/*'"]),
        ('SELECT "\'" FROM t; SELECT 2', ['SELECT "\'" FROM t', "SELECT 2"]),
    ],
)
def test_quotes_hide_semicolons(text: str, expected: list[str]) -> None:
    assert split_statements(text) == expected


def test_escape_string_with_backslash_quote() -> None:
    # E'a\'b; c' is one literal in PostgreSQL; psql sends one statement.
    assert split_statements("SELECT E'a\\'b; c'; SELECT 2") == ["SELECT E'a\\'b; c'", "SELECT 2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT $$a;b$$; SELECT 2", ["SELECT $$a;b$$", "SELECT 2"]),
        ("SELECT $x$ $$ ; $x$; SELECT 3", ["SELECT $x$ $$ ; $x$", "SELECT 3"]),
        ("SELECT $x$ ; $y$ ; $x$; SELECT 3", ["SELECT $x$ ; $y$ ; $x$", "SELECT 3"]),
        ("SELECT $_t1$ ';' $_t1$; SELECT 2", ["SELECT $_t1$ ';' $_t1$", "SELECT 2"]),
        (
            "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql; SELECT f()",
            [
                "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql",
                "SELECT f()",
            ],
        ),
        # $1 is a parameter, not a dollar quote; a$b$ is an identifier.
        ("SELECT $1; SELECT $2", ["SELECT $1", "SELECT $2"]),
        ("SELECT a$b$; SELECT 2", ["SELECT a$b$", "SELECT 2"]),
        # A tag is case sensitive: $A$ does not close $a$.
        ("SELECT $a$ ; $A$ ; $a$; SELECT 2", ["SELECT $a$ ; $A$ ; $a$", "SELECT 2"]),
    ],
)
def test_dollar_quotes(text: str, expected: list[str]) -> None:
    assert split_statements(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT 1 -- a; b\n; SELECT 2", ["SELECT 1 -- a; b", "SELECT 2"]),
        ("SELECT 1 /* a; b */; SELECT 2", ["SELECT 1 /* a; b */", "SELECT 2"]),
        ("SELECT 1 /* a /* b; */ c; */; SELECT 2", ["SELECT 1 /* a /* b; */ c; */", "SELECT 2"]),
        ("SELECT 1 /* ' */; SELECT 2", ["SELECT 1 /* ' */", "SELECT 2"]),
        ("SELECT 1 -- it's\n; SELECT 2", ["SELECT 1 -- it's", "SELECT 2"]),
        ("SELECT 1; -- trailing comment", ["SELECT 1"]),
        ("SELECT 1; /* trailing */", ["SELECT 1"]),
        ("-- only a comment", []),
        ("SELECT 1; SELECT 2 -- no newline; at end", ["SELECT 1", "SELECT 2 -- no newline; at end"]),
    ],
)
def test_comments(text: str, expected: list[str]) -> None:
    assert split_statements(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); SELECT 1",
            [
                "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))",
                "SELECT 1",
            ],
        ),
        ("SELECT ((1;2)); SELECT 3", ["SELECT ((1;2))", "SELECT 3"]),
        ("SELECT (')', ';', '('); SELECT 2", ["SELECT (')', ';', '(')", "SELECT 2"]),
    ],
)
def test_parentheses(text: str, expected: list[str]) -> None:
    assert split_statements(text) == expected


def test_begin_atomic_body_is_one_statement() -> None:
    text = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT f()"
    assert split_statements(text) == [
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
        "SELECT f()",
    ]


def test_begin_atomic_body_with_case_is_one_statement() -> None:
    text = (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; "
        "SELECT f()"
    )
    assert split_statements(text) == [
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END",
        "SELECT f()",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Only E'' strings have backslash escapes: in a plain string a backslash is an ordinary character.
        ("SELECT 'a\\'; SELECT 2", ["SELECT 'a\\'", "SELECT 2"]),
        ("SELECT e'a\\'b;'; SELECT 2", ["SELECT e'a\\'b;'", "SELECT 2"]),
        ("SELECT E'a\\\\'; SELECT 2", ["SELECT E'a\\\\'", "SELECT 2"]),
        # BEGIN / END outside a routine body are transaction statements.
        ("BEGIN; SELECT 1; END; SELECT 2", ["BEGIN", "SELECT 1", "END", "SELECT 2"]),
        (
            "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END; CALL p()",
            ["CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END", "CALL p()"],
        ),
    ],
)
def test_backslashes_and_begin_end(text: str, expected: list[str]) -> None:
    assert split_statements(text) == expected


def test_trailing_statement_without_semicolon_keeps_its_text() -> None:
    assert split_statements("SELECT 1;\nSELECT 'x'\n  ") == ["SELECT 1", "SELECT 'x'"]


def test_multiline_statement_keeps_inner_newlines() -> None:
    assert split_statements("SELECT\n  1,\n  2\n;") == ["SELECT\n  1,\n  2"]


@pytest.mark.parametrize(
    ("text", "pending"),
    [
        ("SELECT 'abc", True),
        ('SELECT "abc', True),
        ("SELECT $f$ x", True),
        ("SELECT /* open", True),
        ("SELECT /* a /* b */ still open", True),
        ("SELECT (1", True),
        ("SELECT 1 -- comment", False),
        ("SELECT 1", False),
        ("SELECT 'x' || (2)", False),
    ],
)
def test_scanner_reports_unfinished_text(text: str, pending: bool) -> None:
    stmts, rest, inside = Scanner.scan(text)
    assert stmts == []
    assert rest == text
    assert inside is pending


def test_scanner_returns_complete_statements_and_the_rest() -> None:
    stmts, rest, inside = Scanner.scan("SELECT 1; SELECT 'a;\nb")
    assert stmts == ["SELECT 1"]
    assert rest == " SELECT 'a;\nb"
    assert inside is True
    # Feeding the rest with its continuation completes the statement.
    stmts, rest, inside = Scanner.scan(rest + "'; ")
    assert stmts == ["SELECT 'a;\nb'"]
    assert rest.strip() == ""
    assert inside is False


def test_scanner_line_by_line_equals_whole_text() -> None:
    script = (
        "CREATE TABLE t (a int, b text);\n"
        "INSERT INTO t VALUES (1, 'x;\n"
        "y');\n"
        "DO $$\nBEGIN\n  PERFORM 1;\nEND\n$$;\n"
        "/* multi\n line; */ SELECT 1;\n"
    )
    got: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        stmts, buf, _ = Scanner.scan(buf)
        got.extend(stmts)
    assert buf.strip() == ""
    assert got == split_statements(script)
    assert len(got) == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT 1", "SELECT 1"),
        ("  -- c\n  SELECT 1", "SELECT 1"),
        ("/* c */ SELECT 1", "SELECT 1"),
        ("-- a\n/* b */ -- c\n SELECT 1 -- d", "SELECT 1 -- d"),
        ("-- only", ""),
        ("/* unterminated", ""),
    ],
)
def test_strip_comments(text: str, expected: str) -> None:
    assert strip_comments(text) == expected


def test_strip_comments_nested_block_comment() -> None:
    assert strip_comments("/* a /* b */ c */ SELECT 1") == "SELECT 1"
