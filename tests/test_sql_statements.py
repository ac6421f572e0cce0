"""heliosdb.sql.statements (branch statement grammar), heliosdb.sql.classify and heliosdb.sql.lsn."""

from __future__ import annotations

import pytest

from heliosdb import errors
from heliosdb.sql.classify import Kind, classify
from heliosdb.sql.lsn import MAX_LSN, format_lsn, parse_lsn
from heliosdb.sql.statements import (
    AlterBranch,
    CreateBranch,
    DropBranch,
    Point,
    ShowBranches,
    UseBranch,
    parse_branch_statement,
)

# --- CREATE DATABASE BRANCH ---------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE DATABASE BRANCH dev", CreateBranch("dev")),
        ("create database branch dev;", CreateBranch("dev")),
        ("CREATE DATABASE BRANCH Dev", CreateBranch("dev")),
        ('CREATE DATABASE BRANCH "feature-auth"', CreateBranch("feature-auth")),
        ('CREATE DATABASE BRANCH "Dev"', CreateBranch("Dev")),
        ('CREATE DATABASE BRANCH "say ""hi"""', CreateBranch('say "hi"')),
        ("CREATE DATABASE BRANCH IF NOT EXISTS dev", CreateBranch("dev", if_not_exists=True)),
        ("CREATE DATABASE BRANCH dev FROM main", CreateBranch("dev", parent="main")),
        ('CREATE DATABASE BRANCH "b-2" FROM "feature-auth"', CreateBranch("b-2", parent="feature-auth")),
        ("CREATE DATABASE BRANCH dev AS OF NOW", CreateBranch("dev", point=Point("NOW"))),
        (
            "CREATE DATABASE BRANCH dev AS OF LSN '0/16B3740'",
            CreateBranch("dev", point=Point("LSN", "'0/16B3740'")),
        ),
        (
            "CREATE DATABASE BRANCH dev AS OF LSN 0/16B3740",
            CreateBranch("dev", point=Point("LSN", "0/16B3740")),
        ),
        (
            "CREATE DATABASE BRANCH dev AS OF TIMESTAMP '2024-01-01 00:00:00+00'",
            CreateBranch("dev", point=Point("TIMESTAMP", "'2024-01-01 00:00:00+00'")),
        ),
        (
            "CREATE DATABASE BRANCH dev AS OF TIMESTAMP now() - interval '5 minutes'",
            CreateBranch("dev", point=Point("TIMESTAMP", "now() - interval '5 minutes'")),
        ),
        (
            # A stop word inside parentheses belongs to the expression.
            "CREATE DATABASE BRANCH dev AS OF TIMESTAMP (SELECT max(ts) FROM t WHERE k = 'ON') OPTIONS (a = 1)",
            CreateBranch(
                "dev", point=Point("TIMESTAMP", "(SELECT max(ts) FROM t WHERE k = 'ON')"), options={"a": "1"}
            ),
        ),
        ("CREATE DATABASE BRANCH dev AS OF SCN 42", CreateBranch("dev", point=Point("SCN", "42"))),
        (
            "CREATE DATABASE BRANCH dev AS OF TRANSACTION 1234",
            CreateBranch("dev", point=Point("TRANSACTION", "1234")),
        ),
        ("CREATE DATABASE BRANCH dev ON STORAGE NODE node2", CreateBranch("dev", storage_node="node2")),
        ('CREATE DATABASE BRANCH dev ON STORAGE NODE "Node-2"', CreateBranch("dev", storage_node="Node-2")),
        ("CREATE DATABASE BRANCH dev WITH COMPUTE ENDPOINT ep1", CreateBranch("dev", compute_endpoint="ep1")),
        (
            "CREATE DATABASE BRANCH dev OPTIONS (retention_period = '7 days', gc_policy = aggressive, read_only = TRUE)",
            CreateBranch(
                "dev", options={"retention_period": "7 days", "gc_policy": "aggressive", "read_only": "true"}
            ),
        ),
        (
            "CREATE DATABASE BRANCH dev OPTIONS (gc_policy = 'it''s')",
            CreateBranch("dev", options={"gc_policy": "it's"}),
        ),
        (
            'CREATE DATABASE BRANCH dev OPTIONS ("Read_Only" = TRUE)',
            CreateBranch("dev", options={"Read_Only": "true"}),
        ),
        (
            "CREATE DATABASE BRANCH IF NOT EXISTS \"feature-auth\" FROM main AS OF LSN '0/1' "
            "ON STORAGE NODE n1 WITH COMPUTE ENDPOINT e1 OPTIONS (gc_policy = balanced)",
            CreateBranch(
                "feature-auth", True, "main", Point("LSN", "'0/1'"), "n1", "e1", {"gc_policy": "balanced"}
            ),
        ),
        (
            "create   database\nbranch\tdev\n  from main\n  as of scn 7",
            CreateBranch("dev", parent="main", point=Point("SCN", "7")),
        ),
        # Clauses after the name may come in any order.
        (
            "CREATE DATABASE BRANCH dev OPTIONS (read_only = true) FROM main",
            CreateBranch("dev", parent="main", options={"read_only": "true"}),
        ),
        (
            "CREATE DATABASE BRANCH dev WITH COMPUTE ENDPOINT e ON STORAGE NODE n",
            CreateBranch("dev", storage_node="n", compute_endpoint="e"),
        ),
        # HeliosDB words are not reserved: they can name branches.
        ("CREATE DATABASE BRANCH branch FROM lsn", CreateBranch("branch", parent="lsn")),
        ("-- comment\nCREATE DATABASE BRANCH dev", CreateBranch("dev")),
    ],
)
def test_create_branch(sql: str, expected: CreateBranch) -> None:
    assert parse_branch_statement(sql) == expected


def test_create_branch_defaults() -> None:
    stmt = parse_branch_statement("CREATE DATABASE BRANCH dev")
    assert isinstance(stmt, CreateBranch)
    assert (
        stmt.if_not_exists,
        stmt.parent,
        stmt.point,
        stmt.storage_node,
        stmt.compute_endpoint,
        stmt.options,
    ) == (False, None, Point("NOW", None), None, None, {})


def test_as_of_does_not_swallow_a_following_from_clause() -> None:
    sql = "CREATE DATABASE BRANCH dev AS OF TIMESTAMP '2024-01-01' FROM main"
    try:
        stmt = parse_branch_statement(sql)
    except errors.SyntaxError:
        return  # rejecting the order is acceptable too
    assert stmt == CreateBranch("dev", parent="main", point=Point("TIMESTAMP", "'2024-01-01'"))


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE DATABASE BRANCH dev FROM main FROM other",
        "CREATE DATABASE BRANCH dev AS OF LSN '0/1' AS OF SCN 3",
        "CREATE DATABASE BRANCH dev OPTIONS (a = 1) OPTIONS (b = 2)",
    ],
)
def test_repeated_create_clause_is_a_syntax_error(sql: str) -> None:
    with pytest.raises(errors.SyntaxError):
        parse_branch_statement(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE DATABASE BRANCH dev AS OF LSN '0/1' FRUM main",
        "CREATE DATABASE BRANCH dev AS OF SCN 42 garbage",
        "CREATE DATABASE BRANCH dev AS OF TRANSACTION 7 8",
    ],
)
def test_text_after_a_single_value_point_is_a_syntax_error(sql: str) -> None:
    with pytest.raises(errors.SyntaxError):
        parse_branch_statement(sql)


# --- USE / ALTER / DROP / SHOW --------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("USE BRANCH dev", UseBranch("dev", "SESSION")),
        ("use branch DEV;", UseBranch("dev", "SESSION")),
        ("USE BRANCH dev FOR SESSION", UseBranch("dev", "SESSION")),
        ("USE BRANCH dev FOR TRANSACTION", UseBranch("dev", "TRANSACTION")),
        ('use branch "feature-auth" for transaction;', UseBranch("feature-auth", "TRANSACTION")),
        ("USE  BRANCH\tdev\nFOR\nTRANSACTION", UseBranch("dev", "TRANSACTION")),
        ("ALTER DATABASE BRANCH dev SET READ_ONLY", AlterBranch("dev", read_only=True)),
        ("ALTER DATABASE BRANCH dev SET READ ONLY", AlterBranch("dev", read_only=True)),
        ("ALTER DATABASE BRANCH dev SET WRITABLE", AlterBranch("dev", read_only=False)),
        ("ALTER DATABASE BRANCH dev SET READ WRITE", AlterBranch("dev", read_only=False)),
        ('alter database branch "feature-auth" set read_only;', AlterBranch("feature-auth", read_only=True)),
        (
            "ALTER DATABASE BRANCH dev SET OPTIONS (retention_period = '1 day', gc_policy = conservative)",
            AlterBranch("dev", options={"retention_period": "1 day", "gc_policy": "conservative"}),
        ),
        ("DROP DATABASE BRANCH dev", DropBranch("dev")),
        ("DROP DATABASE BRANCH dev RESTRICT", DropBranch("dev")),
        ("DROP DATABASE BRANCH dev CASCADE", DropBranch("dev", cascade=True)),
        ("DROP DATABASE BRANCH IF EXISTS dev", DropBranch("dev", if_exists=True)),
        ('drop database branch if exists "feature-auth" cascade;', DropBranch("feature-auth", True, True)),
        ("SHOW BRANCHES", ShowBranches()),
        ("show branches;", ShowBranches()),
        ("  SHOW \n BRANCHES ; ", ShowBranches()),
    ],
)
def test_other_branch_statements(sql: str, expected: object) -> None:
    assert parse_branch_statement(sql) == expected


def test_alter_branch_leaves_the_other_setting_unset() -> None:
    assert parse_branch_statement("ALTER DATABASE BRANCH dev SET READ_ONLY") == AlterBranch("dev", True, None)
    assert parse_branch_statement("ALTER DATABASE BRANCH dev SET OPTIONS (a = 1)") == AlterBranch(
        "dev", None, {"a": "1"}
    )


@pytest.mark.parametrize(
    "sql", ["/* list them */ SHOW BRANCHES", "-- all\nSHOW BRANCHES", "SHOW BRANCHES -- all"]
)
def test_show_branches_with_comments(sql: str) -> None:
    assert classify(sql) is Kind.BRANCH
    assert parse_branch_statement(sql) == ShowBranches()


# --- syntax errors ------------------------------------------------------------------

MALFORMED = [
    # (statement, 1-based position PostgreSQL-style, text of the token reported or None for end of input)
    ("CREATE DATABASE BRANCH", 23, None),
    ("CREATE DATABASE BRANCH 1abc", 24, "1"),
    ("CREATE DATABASE BRANCH dev FROM", 32, None),
    ("CREATE DATABASE BRANCH dev AS OF", 33, None),
    ("CREATE DATABASE BRANCH dev AS OF YESTERDAY", 34, "YESTERDAY"),
    ("CREATE DATABASE BRANCH dev AS OF LSN", 37, None),
    ("CREATE DATABASE BRANCH dev AS OF TIMESTAMP", 43, None),
    ("CREATE DATABASE BRANCH dev AS OF NOW()", 37, "("),
    ("CREATE DATABASE BRANCH dev ON STORAGE", 28, "ON"),
    ("CREATE DATABASE BRANCH dev OPTIONS ()", 37, ")"),
    ("CREATE DATABASE BRANCH dev OPTIONS (a)", 38, ")"),
    ("CREATE DATABASE BRANCH dev OPTIONS (a = 1", 42, None),
    ("CREATE DATABASE BRANCH dev OPTIONS a = 1", 36, "a"),
    ("CREATE DATABASE BRANCH dev; extra", 29, "extra"),
    ("CREATE DATABASE BRANCH IF NOT dev", 27, "NOT"),
    ("USE BRANCH", 11, None),
    ("USE BRANCH a b", 14, "b"),
    ("USE BRANCH a FOR", 14, "FOR"),
    ("USE BRANCH a FOR EVER", 14, "FOR"),
    ("USE BRANCH a.b", 13, "."),
    ("ALTER DATABASE BRANCH dev", 26, None),
    ("ALTER DATABASE BRANCH dev SET", 30, None),
    ("ALTER DATABASE BRANCH dev SET FROZEN", 31, "FROZEN"),
    ("ALTER DATABASE BRANCH dev SET READ_ONLY now", 41, "now"),
    ("ALTER DATABASE BRANCH dev SET OPTIONS (x = 1", 45, None),
    ("DROP DATABASE BRANCH", 21, None),
    ("DROP DATABASE BRANCH a b", 24, "b"),
    ("DROP DATABASE BRANCH IF dev", 25, "dev"),
    ("DROP DATABASE BRANCH dev CASCADE RESTRICT", 34, "RESTRICT"),
    ("SHOW BRANCHES x", 1, "SHOW"),
    ("SELECT 1", 1, "SELECT"),
    ("CREATE DATABASE dev", 1, "CREATE"),
]


@pytest.mark.parametrize(("sql", "position", "near"), MALFORMED)
def test_malformed_statement_is_a_syntax_error_with_position(
    sql: str, position: int, near: str | None
) -> None:
    with pytest.raises(errors.SyntaxError) as info:
        parse_branch_statement(sql)
    exc = info.value
    assert exc.sqlstate == "42601"
    assert isinstance(exc, errors.ProgrammingError)
    assert exc.position == position
    assert exc.message.startswith("syntax error at or near ")
    assert (f'"{near}"' if near else "end of input") in exc.message
    if near:
        assert sql[position - 1 :].startswith(near)
    else:
        assert position == len(sql.rstrip(";")) + 1


def test_syntax_error_reports_line_and_column() -> None:
    sql = "CREATE DATABASE BRANCH dev\n  FROM main\n  FRUM other"
    with pytest.raises(errors.SyntaxError) as info:
        parse_branch_statement(sql)
    assert info.value.position == sql.index("FRUM") + 1
    assert '"FRUM"' in info.value.message
    assert "(line 3, column 3)" in info.value.message


def test_unterminated_quoted_name_has_a_position() -> None:
    with pytest.raises(errors.SyntaxError) as info:
        parse_branch_statement('USE BRANCH "feature-auth')
    assert info.value.sqlstate == "42601"
    assert info.value.position == 12
    assert "tokeniz" not in info.value.message.lower()


def test_unterminated_quoted_name_is_still_a_syntax_error() -> None:
    with pytest.raises(errors.SyntaxError) as info:
        parse_branch_statement('USE BRANCH "feature-auth')
    assert info.value.sqlstate == "42601"


def test_zero_length_quoted_name_is_a_syntax_error() -> None:
    with pytest.raises(errors.SyntaxError):
        parse_branch_statement('USE BRANCH ""')


# --- classify --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT 1", Kind.PASSTHROUGH),
        ("select * from t", Kind.PASSTHROUGH),
        ("INSERT INTO t VALUES (1)", Kind.PASSTHROUGH),
        ("UPDATE t SET a = 1", Kind.PASSTHROUGH),
        ("DELETE FROM t", Kind.PASSTHROUGH),
        ("WITH x AS (SELECT 1) SELECT * FROM x", Kind.PASSTHROUGH),
        ("CREATE DATABASE x", Kind.PASSTHROUGH),
        ("DROP DATABASE x", Kind.PASSTHROUGH),
        ("CREATE VIEW v AS SELECT 1", Kind.PASSTHROUGH),
        ("SHOW search_path", Kind.PASSTHROUGH),
        ("SHOW branches_x", Kind.PASSTHROUGH),
        ("SET x = 1", Kind.PASSTHROUGH),
        ("DO $$ BEGIN END $$", Kind.PASSTHROUGH),
        ("", Kind.PASSTHROUGH),
        ("(SELECT 1)", Kind.PASSTHROUGH),
        ("CREATE TEMP TABLE t (a int)", Kind.PASSTHROUGH),
        ("CREATE TEMPORARY TABLE t (a int)", Kind.PASSTHROUGH),
        ("create global temporary table t (a int)", Kind.PASSTHROUGH),
        ("CREATE LOCAL TEMP TABLE t (a int)", Kind.PASSTHROUGH),
        ("CREATE DATABASE BRANCH dev", Kind.BRANCH),
        ("alter database branch dev set read_only", Kind.BRANCH),
        ("DROP DATABASE BRANCH dev", Kind.BRANCH),
        ("use branch dev", Kind.BRANCH),
        ('USE BRANCH"dev"', Kind.BRANCH),
        ("SHOW BRANCHES", Kind.BRANCH),
        ("CREATE TABLE t (a int)", Kind.CREATE_TABLE),
        ("  create\n  table t (a int)", Kind.CREATE_TABLE),
        ('CREATE TABLE"t"(a int)', Kind.CREATE_TABLE),
        ("CREATE UNLOGGED TABLE t (a int)", Kind.CREATE_TABLE),
        ("CREATE TABLE IF NOT EXISTS t (a int)", Kind.CREATE_TABLE),
        ("DROP TABLE t", Kind.DROP_TABLE),
        ("ALTER TABLE t ADD c int", Kind.ALTER_TABLE),
        ("CREATE INDEX i ON t (a)", Kind.CREATE_INDEX),
        ("CREATE UNIQUE INDEX i ON t (a)", Kind.CREATE_INDEX),
        ("DROP INDEX i", Kind.DROP_INDEX),
        ("TRUNCATE t", Kind.TRUNCATE),
        ("COPY t FROM STDIN", Kind.COPY),
        ("VACUUM", Kind.MAINTENANCE),
        ("VACUUM (FULL) t", Kind.MAINTENANCE),
        ("ANALYZE t", Kind.MAINTENANCE),
        ("ANALYSE t", Kind.MAINTENANCE),
        ("BEGIN", Kind.TRANSACTION),
        ("START TRANSACTION", Kind.TRANSACTION),
        ("COMMIT", Kind.TRANSACTION),
        ("END", Kind.TRANSACTION),
        ("ROLLBACK", Kind.TRANSACTION),
        ("ABORT", Kind.TRANSACTION),
        ("SAVEPOINT s", Kind.TRANSACTION),
        ("RELEASE SAVEPOINT s", Kind.TRANSACTION),
        ("ROLLBACK TO SAVEPOINT s", Kind.TRANSACTION),
        ("PREPARE TRANSACTION 'x'", Kind.TRANSACTION),
        ("PREPARE q AS SELECT 1", Kind.PASSTHROUGH),
        ("-- comment\nCREATE TABLE t (a int)", Kind.CREATE_TABLE),
        ("/* c */ DROP TABLE t", Kind.DROP_TABLE),
        ("/* c */ -- d\n USE BRANCH dev", Kind.BRANCH),
    ],
)
def test_classify(sql: str, kind: Kind) -> None:
    assert classify(sql) is kind


def test_classify_after_nested_block_comment() -> None:
    assert classify("/* a /* b */ c */ CREATE TABLE t (a int)") is Kind.CREATE_TABLE


# --- LSN -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0/0"),
        (0x16B3740, "0/16B3740"),
        (2**32, "1/0"),
        (0x16_B374D848, "16/B374D848"),
        (MAX_LSN, "7FFFFFFF/FFFFFFFF"),
    ],
)
def test_format_lsn(value: int, text: str) -> None:
    assert format_lsn(value) == text
    assert parse_lsn(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/16B3740", 0x16B3740),
        ("0/16b3740", 0x16B3740),
        ("16/B374D848", 0x16_B374D848),
        (" 0/0 ", 0),
        ("FFFF/0", 0xFFFF << 32),
        ("123", 123),
        (" 42 ", 42),
        ("9223372036854775807", MAX_LSN),
        (0, 0),
        (12345, 12345),
        (MAX_LSN, MAX_LSN),
    ],
)
def test_parse_lsn(text: str | int, value: int) -> None:
    assert parse_lsn(text) == value


@pytest.mark.parametrize("value", [0, 1, 255, 2**32 - 1, 2**32, 2**32 + 1, 0xDEADBEEF_CAFEBABE >> 1, MAX_LSN])
def test_lsn_round_trip(value: int) -> None:
    text = format_lsn(value)
    assert parse_lsn(text) == value
    assert format_lsn(parse_lsn(str(value))) == text


@pytest.mark.parametrize(
    "text",
    ["", " ", "-1", "0x10", "1/", "/1", "1/2/3", "0/123456789", "123456789/0", "g/1", "1.5", "one", "0/-1"],
)
def test_invalid_lsn(text: str) -> None:
    with pytest.raises(errors.InvalidTemporalPoint) as info:
        parse_lsn(text)
    assert info.value.sqlstate == "HD007"
    assert "invalid LSN" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("value", ["80000000/0", "FFFFFFFF/FFFFFFFF", "9223372036854775808", 2**63, -1])
def test_lsn_out_of_range(value: str | int) -> None:
    with pytest.raises(errors.InvalidTemporalPoint) as info:
        parse_lsn(value)
    assert info.value.sqlstate == "HD007"
    assert "out of range" in info.value.message


@pytest.mark.parametrize("text", ["²", "１２３"])
def test_lsn_rejects_non_ascii_digits(text: str) -> None:
    with pytest.raises(errors.InvalidTemporalPoint):
        parse_lsn(text)
