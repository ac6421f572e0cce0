"""The shell's pure parts: the box-drawn formatter, error display, the prompt state machine, the registry."""

from __future__ import annotations

import datetime
import decimal
import json

import pytest

from heliosdb import errors
from heliosdb.shell import executor  # noqa: F401 - registers every meta command
from heliosdb.shell.commands import REGISTRY, UsageError, parse, split_words
from heliosdb.shell.prompt import PromptState, Tx, short_lsn, text
from heliosdb.shell.render import RenderOptions, array_literal, error_text, render, timing_text
from tests.shell_support import check_golden

HEADERS = ["id", "owner", "balance", "note", "at"]
ROWS = [
    (1, "ann", decimal.Decimal("100.50"), None, datetime.date(2026, 1, 2)),
    (22, "bob\nsecond line", None, "x", datetime.date(2026, 1, 3)),
    (3, "日本語", decimal.Decimal("-5"), "", None),
]


def test_box_table_golden() -> None:
    out = render(HEADERS, ROWS, RenderOptions())
    check_golden("render_box", out)
    lines = out.splitlines()
    assert lines[0].startswith("┌") and lines[0].endswith("┐") and "┬" in lines[0]
    assert lines[2].startswith("├") and "┼" in lines[2] and lines[2].endswith("┤")
    assert lines[-2].startswith("└") and "┴" in lines[-2] and lines[-2].endswith("┘")
    assert lines[-1] == "(3 rows)"
    assert "│  1 │ ann" in out and "│  100.50 │" in out and "│      -5 │" in out  # numbers right-aligned
    assert "│ <null> │" in out or "│  <null> │" in out  # NULL shown distinctly


def test_expanded_and_auto() -> None:
    out = render(HEADERS, ROWS[:2], RenderOptions(expanded="on"))
    check_golden("render_expanded", out)
    assert out.startswith("┌─[ RECORD 1 ]") and "├─[ RECORD 2 ]" in out and out.endswith("(2 rows)\n")
    wide = [(1, "x" * 200)]
    assert "RECORD 1" in render(["a", "b"], wide, RenderOptions(expanded="auto", width=80))
    assert "RECORD 1" not in render(["a", "b"], [(1, "x")], RenderOptions(expanded="auto", width=80))


def test_expanded_rows_only_has_no_record_labels() -> None:
    out = render(["id", "name"], [(1, "a"), (22, "bb")], RenderOptions(expanded="on", tuples_only=True))
    assert out == ("┌──────┬────┐\n"  # as psql (border 2, unicode): a plain rule, as wide as the names
                   "│ id   │ 1  │\n"
                   "│ name │ a  │\n"
                   "├──────┼────┤\n"
                   "│ id   │ 22 │\n"
                   "│ name │ bb │\n"
                   "└──────┴────┘\n")


def test_column_names_with_newlines_take_several_header_lines() -> None:
    out = render(["a\nbc", "long\n z", "n"], [(1, "x\ny", 5)], RenderOptions())
    assert out == ("┌────┬──────┬───┐\n"
                   "│ a  │ long │ n │\n"
                   "│ bc │   z  │   │\n"
                   "├────┼──────┼───┤\n"
                   "│  1 │ x    │ 5 │\n"
                   "│    │ y    │   │\n"
                   "└────┴──────┴───┘\n"
                   "(1 row)\n")
    out = render(["a\nbc", "n"], [(1, 5)], RenderOptions(expanded="on"))
    assert "│ a            │ 1 │\n│ bc           │   │\n│ n            │ 5 │\n" in out
    narrow = render(["a_rather_long_header_name", "b"], [("x " * 40, "y " * 30)], RenderOptions(width=50))
    assert {len(line) for line in narrow.splitlines()[:-1]} == {50}  # a name wider than its column wraps


def test_wide_tables_wrap_to_the_terminal() -> None:
    out = render(["id", "text"], [(1, "word " * 60)], RenderOptions(width=60))
    assert max(len(line) for line in out.splitlines()) <= 60
    assert out.count("│  1 │") == 1 and out.count("\n│    │ ") >= 3


def test_other_formats() -> None:
    rows = [(1, "a,b", None, [1, 2])]
    heads = ["n", "s", "z", "arr"]
    assert render(heads, rows, RenderOptions(format="csv")) == 'n,s,z,arr\n1,"a,b",,"{1,2}"\n'
    assert render(heads, rows, RenderOptions(format="unaligned")) == "n|s|z|arr\n1|a,b||{1,2}\n(1 row)\n"
    assert render(heads, rows, RenderOptions(format="csv", tuples_only=True)) == '1,"a,b",,"{1,2}"\n'
    assert render(heads, rows, RenderOptions(format="csv", null="(nil)")) == 'n,s,z,arr\n1,"a,b",(nil),"{1,2}"\n'
    assert render(heads, rows, RenderOptions(format="unaligned", null="-")) == "n|s|z|arr\n1|a,b|-|{1,2}\n(1 row)\n"
    assert render(["x"], [], RenderOptions(format="json")) == "[]\n"
    doc = render(["a", "a", "f", "g", "a_2"], [(1, 2, float("nan"), [float("-inf"), 1.5], 3)], RenderOptions(format="json"))
    assert json.loads(doc, parse_constant=lambda c: pytest.fail(f"not JSON: {c}")) == [  # valid JSON, every column
        {"a": 1, "a_3": 2, "f": "NaN", "g": ["-Infinity", 1.5], "a_2": 3}]
    assert render(["x"], [(1,)], RenderOptions(tuples_only=True)) == "┌───┐\n│ 1 │\n└───┘\n"


def test_arrays_print_like_postgresql() -> None:
    assert array_literal(["a", "b c", None, "", 'q"']) == '{a,"b c",NULL,"","q\\""}'
    assert array_literal([[1, 2], [3, 4]]) == "{{1,2},{3,4}}"


def test_colour_marks_headers_and_nulls_without_changing_layout() -> None:
    plain = render(["a"], [(None,)], RenderOptions())
    coloured = render(["a"], [(None,)], RenderOptions(colour=True))
    assert "\x1b[2m<null>\x1b[0m" in coloured and "\x1b[1m" in coloured
    assert plain == coloured.replace("\x1b[2m", "").replace("\x1b[1m", "").replace("\x1b[0m", "")


def test_ten_thousand_rows_render_in_under_a_second() -> None:
    import time

    rows = [(i, f"name {i}", i * 1.5, None, "x" * (i % 17), i % 2 == 0, decimal.Decimal(i), "abc", i, "end")
            for i in range(10_000)]
    heads = [f"c{i}" for i in range(10)]
    start = time.perf_counter()
    out = render(heads, rows, RenderOptions(width=200))
    assert time.perf_counter() - start < 1.0
    assert out.endswith("(10000 rows)\n")


def test_error_text_with_caret_detail_and_hint() -> None:
    exc = errors.UndefinedColumn('column "nope" does not exist', position=17, hint="Perhaps you meant id.",
                                 detail="More.", sqlstate="42703")
    assert error_text(exc, "SELECT 1,\n  2 + nope FROM t") == (
        'ERROR:  42703: column "nope" does not exist\n'
        "LINE 2:   2 + nope FROM t\n"
        "              ^\n"
        "DETAIL:  More.\n"
        "HINT:  Perhaps you meant id.\n")
    assert error_text(errors.DataError("division by zero", sqlstate="22012"), "SELECT 1/0") \
        == "ERROR:  22012: division by zero\n"
    assert error_text(exc, "x" * 5).count("^") == 0  # a position past the text shows no caret


# -- prompt ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("state", "cont", "expected"), [
    (PromptState("heliosdb", "main"), False, "heliosdb[main]=> "),
    (PromptState("heliosdb", "main", as_of_lsn=0x1A3F), False, "heliosdb[main@LSN:0/1A3F]=> "),
    (PromptState("heliosdb", "main", Tx.OPEN), False, "heliosdb[main]*=> "),
    (PromptState("heliosdb", "main", Tx.FAILED), False, "heliosdb[main]!=> "),
    (PromptState("heliosdb", "main"), True, "heliosdb[main]-> "),
    (PromptState("heliosdb", "main", Tx.OPEN), True, "heliosdb[main]*-> "),
    (PromptState("heliosdb", "main", node="node-1"), False, "heliosdb[main]@node-1=> "),
    (PromptState("shop", "feature-x", Tx.OPEN, 2, "node-2"), False, "shop[feature-x@LSN:0/2]@node-2*=> "),
])
def test_prompt_states(state: PromptState, cont: bool, expected: str) -> None:
    assert text(state, cont) == expected


def test_short_lsn() -> None:
    assert short_lsn(0) == "0/0" and short_lsn(0x1A3F) == "0/1A3F" and short_lsn((5 << 32) | 0xA) == "5/A"


# -- registry ----------------------------------------------------------------------------------------
def test_every_issue_command_is_registered_with_help() -> None:
    wanted = ["\\branches", "\\use", "\\branch info", "\\branch tree", "\\branch diff", "\\snapshots", "\\retention",
              "\\scn", "\\lsn", "\\timeline", "\\dmv", "\\dmv staleness", "\\dmv refresh", "\\dmv deps", "\\nodes",
              "\\shards", "\\replication", "\\compression", "\\d", "\\dt", "\\dv", "\\dm", "\\di", "\\dn", "\\du",
              "\\x", "\\timing", "\\pset", "\\o", "\\i", "\\e", "\\set", "\\unset", "\\echo", "\\conninfo", "\\q",
              "\\?", "\\h"]
    for name in wanted:
        assert name in REGISTRY.commands, name
        assert REGISTRY.commands[name].description


def test_parse_arguments_and_usage_errors() -> None:
    p = parse("\\branch diff main fix accounts")
    assert p.command.name == "\\branch diff" and p.args == {"a": "main", "b": "fix", "table": "accounts"}
    assert parse("\\x AUTO").args == {"mode": "auto"}
    assert parse("\\echo  a   'b  c' d").args == {"text": "a   'b  c' d"}
    assert parse("\\d \"My Table\"").args == {"name": '"My Table"'}
    with pytest.raises(UsageError, match=r"usage: \\branch diff <a> <b> \[table\]"):
        parse("\\branch diff main")
    with pytest.raises(UsageError, match=r"invalid command \\nope"):
        parse("\\nope")
    with pytest.raises(UsageError, match="unterminated"):
        parse("\\echo 'abc")
    assert split_words("a 'it''s' \"Q\"\"x\"") == ["a", "it's", '"Q""x"']


def test_tabs_and_control_characters_keep_the_columns_aligned() -> None:
    out = render(["a", "b"], [("x\ty", "bell\x07"), ("ok", "z")], RenderOptions())
    assert "│ x       y │ bell\\x07 │\n│ ok        │ z        │" in out


def test_wide_columns_share_the_width() -> None:
    out = render(["x", "y"], [("a" * 150, "b" * 140)], RenderOptions(width=100))
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    first = lines[3]  # the first row line: both columns wrapped to about half the width each
    a, b = first.count("a"), first.count("b")
    assert abs(a - b) <= 1 and a >= 44, first


@pytest.mark.parametrize(("ms", "expected"), [  # psql's PrintTiming (common.c): the same printf formats
    (12.3456, "Time: 12.346 ms"),
    (999.9994, "Time: 999.999 ms"),
    (1000.0, "Time: 1000.000 ms (00:01.000)"),
    (1234.567, "Time: 1234.567 ms (00:01.235)"),
    (61234.5678, "Time: 61234.568 ms (01:01.235)"),
    (3600000.0, "Time: 3600000.000 ms (01:00:00.000)"),
    (3723004.0, "Time: 3723004.000 ms (01:02:03.004)"),
    (2 * 86400000 + 3723004.0, "Time: 176523004.000 ms (2 d 01:02:03.004)"),
])
def test_timing_adds_minutes_and_hours_from_a_second_on(ms: float, expected: str) -> None:
    assert timing_text(ms) == expected
