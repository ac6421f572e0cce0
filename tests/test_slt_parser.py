"""Pure tests of the sqllogictest runner: parser, value formatting, sorting, hashing, comparison."""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from heliosdb.slt import corpus_dir
from heliosdb.slt.parser import (
    Condition,
    Halt,
    HashedResult,
    HashThreshold,
    Query,
    SltParseError,
    Statement,
    active_records,
    applies,
    parse,
    parse_file,
)
from heliosdb.slt.report import BEGIN_MARK, END_MARK, pass_table, write_markdown
from heliosdb.slt.results import check_query, format_rows, format_value, md5_values, sort_values
from heliosdb.slt.runner import ModeResult, compare, run_records

SCRIPT = """\
# a comment
hash-threshold 8

statement ok
CREATE TABLE t1(a INTEGER,
                b TEXT)

statement error
CREATE TABLE t1(a INTEGER)

skipif mssql # not there
onlyif postgresql
query IT rowsort label-7
SELECT a, b
  FROM t1
----
1
x
2
(empty)

query R nosort
SELECT avg(a) FROM t1
----
30 values hashing to 0123456789abcdef0123456789abcdef

onlyif sqlite
halt

query I valuesort
SELECT 1
----

skipif postgresql
halt

statement ok
DROP TABLE t1
"""


def test_parse_records() -> None:
    script = parse(SCRIPT, "x.test")
    kinds = [type(r).__name__ for r in script.records]
    assert kinds == [
        "HashThreshold",
        "Statement",
        "Statement",
        "Query",
        "Query",
        "Halt",
        "Query",
        "Halt",
        "Statement",
    ]
    thr, create, dup, q1, q2, halt, q3, _, drop = script.records
    assert thr == HashThreshold(2, 8)
    assert isinstance(create, Statement) and not create.expect_error and create.line == 4
    assert create.sql == "CREATE TABLE t1(a INTEGER,\n                b TEXT)"
    assert isinstance(dup, Statement) and dup.expect_error
    assert isinstance(q1, Query)
    assert (q1.types, q1.sort, q1.label, q1.line) == ("IT", "rowsort", "label-7", 13)
    assert q1.conditions == (Condition("skipif", "mssql"), Condition("onlyif", "postgresql"))
    assert q1.sql == "SELECT a, b\n  FROM t1"
    assert q1.expected == ("1", "x", "2", "(empty)")
    assert isinstance(q2, Query) and q2.expected == HashedResult(30, "0123456789abcdef0123456789abcdef")
    assert str(q2.expected) == "30 values hashing to 0123456789abcdef0123456789abcdef"
    assert isinstance(halt, Halt) and halt.conditions == (Condition("onlyif", "sqlite"),)
    assert isinstance(q3, Query) and q3.expected == () and q3.sort == "valuesort"
    assert isinstance(drop, Statement)


def test_conditions_and_halt() -> None:
    assert applies(())
    assert not applies((Condition("skipif", "postgresql"),))
    assert applies((Condition("skipif", "mysql"),))
    assert not applies((Condition("onlyif", "sqlite"),))
    assert applies((Condition("onlyif", "postgresql"),))
    assert not applies((Condition("onlyif", "postgresql"), Condition("skipif", "postgresql")))
    active = active_records(parse(SCRIPT))
    # the onlyif-sqlite halt is skipped; the skipif-postgresql halt also; DROP TABLE runs
    assert [r.line for r in active] == [2, 4, 8, 13, 22, 30, 37]
    halted = active_records(parse("statement ok\nSELECT 1\n\nhalt\n\nstatement ok\nSELECT 2\n"))
    assert len(halted) == 1
    assert len(active_records(parse(SCRIPT), engine="sqlite")) == 4


def test_stray_condition_and_trailing_space() -> None:
    script = parse("onlyif sqlite\n\nstatement ok   \nSELECT 1  \n\nquery I nosort\nSELECT 1\n----\n1   \n")
    assert [type(r) for r in script.records] == [Statement, Query]
    assert script.records[0].conditions == ()
    assert script.records[0].sql == "SELECT 1"
    assert script.records[1].expected == ("1",)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("statement maybe\nSELECT 1\n", "statement ok"),
        ("statement ok\n", "without SQL"),
        ("query X nosort\nSELECT 1\n", "type string"),
        ("query I sideways\nSELECT 1\n", "sort mode"),
        ("hash-threshold many\n", "number"),
        ("skipif\nstatement ok\nSELECT 1\n", "engine"),
        ("\n\nfrobnicate\n", "unknown record"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SltParseError, match=message) as info:
        parse(text, "bad.test")
    assert str(info.value).startswith("bad.test:")
    if "frobnicate" in text:
        assert info.value.line == 3


@pytest.mark.parametrize(
    ("value", "letter", "text"),
    [
        (None, "I", "NULL"),
        (None, "T", "NULL"),
        (None, "R", "NULL"),
        ("", "T", "(empty)"),
        (7, "I", "7"),
        (-7, "I", "-7"),
        (True, "I", "1"),
        (False, "I", "0"),
        (Decimal("2.5000"), "I", "2"),
        (Decimal("-2.5"), "I", "-2"),
        (Decimal("NaN"), "I", "0"),
        (3.99, "I", "3"),
        (-3.99, "I", "-3"),
        (1e300, "I", str(2**63 - 1)),
        ("12abc", "I", "12"),
        (" -4.7", "I", "-4"),
        ("abc", "I", "0"),
        (7, "R", "7.000"),
        (Decimal("1.23456"), "R", "1.235"),
        (1.0005, "R", "1.000"),  # the double is 1.000499999..., as C's printf sees it
        (2.0005, "R", "2.001"),  # and this one 2.00050000...01
        (-0.5, "R", "-0.500"),
        ("3.25xyz", "R", "3.250"),
        ("hello", "T", "hello"),
        ("tab\there", "T", "tab@here"),
        ("caf\u00e9", "T", "caf@"),
        (42, "T", "42"),
        (1.0, "T", "1.0"),
        (0.1, "T", "0.1"),
        (1e20, "T", "1.0e+20"),
        (True, "T", "1"),
        (Decimal("1.50"), "T", "1.50"),
        (b"ab", "T", "ab"),
        (datetime.date(2024, 1, 2), "T", "2024-01-02"),
    ],
)
def test_format_value(value: Any, letter: str, text: str) -> None:
    assert format_value(value, letter) == text


def test_sort_modes() -> None:
    rows = format_rows([(9, "b"), (10, "a"), (None, "c")], "IT")
    assert rows == [["9", "b"], ["10", "a"], ["NULL", "c"]]
    assert sort_values(rows, "nosort") == ["9", "b", "10", "a", "NULL", "c"]
    # sqllogictest sorts the printed strings (strcmp), not the numbers
    assert sort_values(rows, "rowsort") == ["10", "a", "9", "b", "NULL", "c"]
    assert sort_values(rows, "valuesort") == ["10", "9", "NULL", "a", "b", "c"]


def test_md5() -> None:
    assert md5_values([]) == hashlib.md5(b"").hexdigest()
    assert md5_values(["1", "NULL"]) == hashlib.md5(b"1\nNULL\n").hexdigest()


def _query(types: str, sort: str, expected: Sequence[str] | HashedResult, label: str | None = None) -> Query:
    exp = expected if isinstance(expected, HashedResult) else tuple(expected)
    return Query(1, "SELECT", types, sort, label, exp)  # type: ignore[arg-type]


def test_check_query() -> None:
    q = _query("II", "rowsort", ["1", "2", "3", "4"])
    assert check_query(q, 2, [(3, 4), (1, 2)]) is None
    assert check_query(q, 2, [(3, 5), (1, 2)]) == "1 2 3 5"
    assert check_query(q, 1, [(1,)]) == "1 columns, expected 2"
    values = [str(i) for i in range(10)]
    hashed = _query("I", "nosort", HashedResult(10, md5_values(values)))
    assert check_query(hashed, 1, [(i,) for i in range(10)]) is None
    got = check_query(hashed, 1, [(i,) for i in range(9)])
    assert got is not None and got.startswith("9 values hashing to ")
    # a literal result past the threshold is reported with its hash
    literal = _query("I", "nosort", values)
    assert (check_query(literal, 1, [(1,)] * 10, threshold=8) or "").startswith("10 values hashing to")
    # records sharing a label must agree
    labels: dict[str, HashedResult] = {}
    assert check_query(_query("I", "nosort", ["1"], "label-1"), 1, [(1,)], labels=labels) is None
    lying = _query("I", "nosort", ["2"], "label-1")
    assert check_query(lying, 1, [(2,)], labels=labels) is not None


def test_select1_hash_from_its_inserts() -> None:
    """The runner's formatting and hashing reproduce a hash of the real corpus, computed without a database."""
    path = corpus_dir() / "select1.test"
    if not path.exists():
        pytest.skip(f"no corpus at {path}")
    script = parse_file(path)
    rows = []
    for rec in script.records:
        if isinstance(rec, Statement) and rec.sql.startswith("INSERT INTO t1("):
            m = re.match(r"INSERT INTO t1\(([a-e,]+)\) VALUES\(([^)]*)\)", rec.sql)
            assert m
            rows.append(
                dict(zip(m.group(1).split(","), (int(v) for v in m.group(2).split(",")), strict=True))
            )
    query = next(r for r in script.records if isinstance(r, Query) and r.line == 1424)
    assert query.sql.split() == ["SELECT", "e", "FROM", "t1", "ORDER", "BY", "1"]
    assert check_query(query, 1, sorted((r["e"],) for r in rows)) is None


class FakeBackend:
    """Answers from a table: SQL -> rows, or an exception to raise."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def _answer(self, text: str) -> Any:
        ans = self.answers.get(text)
        if isinstance(ans, Exception):
            raise ans
        return ans

    def statement(self, text: str) -> None:
        self._answer(text)

    def query(self, text: str) -> tuple[int, Sequence[Sequence[Any]]]:
        rows = self._answer(text) or []
        return (len(rows[0]) if rows else 1), rows

    def close(self) -> None:
        pass


RUN_SCRIPT = """\
statement ok
CREATE TABLE t(x INT)

statement error
BAD

query I rowsort
SELECT x FROM t
----
1
2

query I nosort
SELECT count(*) FROM t
----
2
"""


def test_run_records_and_compare() -> None:
    records = active_records(parse(RUN_SCRIPT))
    good = FakeBackend(
        {"BAD": RuntimeError("syntax"), "SELECT x FROM t": [(2,), (1,)], "SELECT count(*) FROM t": [(2,)]}
    )
    run = run_records(records, good)
    assert (run.records, run.passed, run.failures, run.not_run) == (4, 4, {}, 0)

    bad = FakeBackend({"CREATE TABLE t(x INT)": RuntimeError("boom"), "SELECT x FROM t": [(1,)]})
    run = run_records(records, bad)
    failures = run.failures
    assert (run.records, run.passed) == (4, 0)
    assert failures[1].got == "RuntimeError: boom" and failures[1].expected == "ok"
    assert failures[4].got == "ok" and failures[4].expected == "error"
    assert failures[7].got == "1" and failures[7].expected == "1 2"
    assert failures[13].got == "(no rows)"

    ref = ModeResult(1, 4, 3, 0.1, {13: failures[13]})
    heliosdb = ModeResult(2, 4, 0, 0.1, dict(failures))
    diffs = compare("f.test", {1: ref, 2: heliosdb})
    assert [(d.line, d.mode) for d in diffs] == [(1, 2), (4, 2), (7, 2)]  # line 13 fails on PostgreSQL too
    # without the reference, every failure counts
    assert len(compare("f.test", {2: heliosdb})) == 4
    slow = ModeResult(4, 4, 1, 9.0, {}, None, not_run=3, first_not_run=4)
    assert [(d.line, d.mode) for d in compare("f.test", {1: ref, 4: slow})] == [(4, 4)]
    broken = ModeResult(3, 4, 0, 0.1, error="setup: OperationalError: no")
    assert [(d.line, d.got) for d in compare("f.test", {1: ref, 3: broken})] == [
        (0, "setup: OperationalError: no")
    ]


def test_budget_spent() -> None:
    records = active_records(parse(RUN_SCRIPT))
    run = run_records(records, FakeBackend({}), deadline=0.0)  # long past
    assert (run.records, run.passed, run.not_run, run.first_not_run) == (4, 0, 4, 1)
    assert run.failures == {}


def test_markdown_between_markers(tmp_path: Path) -> None:
    doc = tmp_path / "conformance.md"
    doc.write_text(f"# Title\n\nintro\n\n{BEGIN_MARK}\nold\n{END_MARK}\n\ntail\n")
    write_markdown(doc, "new table")
    assert doc.read_text() == f"# Title\n\nintro\n\n{BEGIN_MARK}\nnew table\n{END_MARK}\n\ntail\n"
    fresh = tmp_path / "fresh.md"
    write_markdown(fresh, "t")
    assert fresh.read_text() == f"{BEGIN_MARK}\nt\n{END_MARK}\n"


def test_pass_table_shape() -> None:
    from heliosdb.slt.runner import FileResult

    res = FileResult("a.test", 4, {1: ModeResult(1, 4, 4, 0.5), 2: ModeResult(2, 4, 3, 0.7)}, [])
    table = pass_table([res], [1, 2])
    assert table.splitlines() == [
        "| file | records | mode 1 | mode 2 | differences |",
        "|---|---:|---:|---:|---:|",
        "| a.test | 4 | 4 | 3 | 0 |",
    ]
