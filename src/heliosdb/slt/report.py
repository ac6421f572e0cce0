"""Markdown reports of a sqllogictest run: pass table, timings, differences."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from heliosdb.slt.backends import MODES
from heliosdb.slt.runner import FileResult

BEGIN_MARK = "<!-- slt-results:begin -->"
END_MARK = "<!-- slt-results:end -->"


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.replace("|", "\\|")


def pass_table(results: Sequence[FileResult], modes: Sequence[int]) -> str:
    head = ["file", "records", *(f"mode {m}" for m in modes), "differences"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    totals = [0] * (len(modes) + 2)
    for res in results:
        if res.error:
            lines.append(f"| {_cell(res.file)} | parse error: {_cell(res.error)} |" + " |" * (len(modes) + 1))
            continue
        cells = [str(res.records)]
        totals[0] += res.records
        for i, mode in enumerate(modes):
            mres = res.modes.get(mode)
            if mres is None:
                cells.append("-")
            elif mres.error:
                cells.append("setup failed")
            else:
                cells.append(f"{mres.passed} ({mres.not_run} not run)" if mres.not_run else str(mres.passed))
                totals[i + 1] += mres.passed
        cells.append(str(len(res.differences)))
        totals[-1] += len(res.differences)
        lines.append(f"| {_cell(res.file)} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        lines.append("| **total** | " + " | ".join(f"**{t}**" for t in totals) + " |")
    return "\n".join(lines)


def timing_table(results: Sequence[FileResult], modes: Sequence[int]) -> str:
    head = ["file", *(f"mode {m} (s)" for m in modes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(modes)) + "|"]
    totals = [0.0] * len(modes)
    for res in results:
        cells = []
        for i, mode in enumerate(modes):
            mres = res.modes.get(mode)
            if mres is None:
                cells.append("-")
            else:
                cells.append(f"{mres.seconds:.1f}")
                totals[i] += mres.seconds
        lines.append(f"| {_cell(res.file)} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        lines.append("| **total** | " + " | ".join(f"**{t:.1f}**" for t in totals) + " |")
    return "\n".join(lines)


def differences_list(results: Sequence[FileResult]) -> str:
    out: list[str] = []
    for res in results:
        if not res.differences:
            continue
        more = len(res.differences) - len(res.shown_differences)
        title = f"**{res.file}**: {len(res.differences)} differences"
        out.append(title + (f" (first {len(res.shown_differences)} shown)" if more else ""))
        out.append("")
        for d in res.shown_differences:
            where = f"{res.file}:{d.line}" if d.line else res.file
            sql = f" `{_cell(d.sql, 200)}`" if d.sql else ""
            out.append(
                f"- {where} mode {d.mode} ({MODES[d.mode]}):{sql} expected `{_cell(d.expected)}`, got `{_cell(d.got)}`"
            )
        out.append("")
    return "\n".join(out).rstrip() or "No differences."


def render(results: Sequence[FileResult], modes: Sequence[int]) -> str:
    legend = ", ".join(f"mode {m}: {MODES[m]}" for m in modes)
    return "\n\n".join(
        [
            f"Passed records per mode ({legend}).",
            pass_table(results, modes),
            "Time per file and mode, in seconds (database creation included).",
            timing_table(results, modes),
            "Differences (records that pass on plain PostgreSQL but fail on HeliosDB):",
            differences_list(results),
        ]
    )


def write_markdown(path: str | Path, text: str) -> None:
    """Write the report into `path`: between the result markers when the file has them, else the whole file."""
    p = Path(path)
    block = f"{BEGIN_MARK}\n{text}\n{END_MARK}"
    if p.exists():
        old = p.read_text(encoding="utf-8")
        start, end = old.find(BEGIN_MARK), old.find(END_MARK)
        if 0 <= start < end:
            p.write_text(old[:start] + block + old[end + len(END_MARK) :], encoding="utf-8")
            return
    p.write_text(block + "\n", encoding="utf-8")
