"""The sqllogictest corpus on plain PostgreSQL and on HeliosDB: main, queries on a child, many generations.

Runs select1-5.test and every evidence/ file in all four modes (two files at a time, through the
runner's worker processes, on the session's managed instance) and asserts, record by record, that
every record passing on plain PostgreSQL passes on HeliosDB too. Mode 4 reaches ~200 generations of
branches in select4 and ~140 in select5. The whole corpus is a separate step: ``python -m heliosdb.slt``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from heliosdb.slt import corpus_dir
from heliosdb.slt.report import differences_list
from heliosdb.slt.runner import ALL_MODES, FileResult, run_files

CORPUS = corpus_dir()
SELECTS = ["select1.test", "select2.test", "select3.test", "select4.test", "select5.test"]
EVIDENCE = sorted(str(p.relative_to(CORPUS)) for p in (CORPUS / "evidence").glob("*.test")) if CORPUS.is_dir() else []
# longest first, so the two workers finish together
CI_FILES = ["select5.test", "select4.test", "select3.test", "select1.test", "select2.test", *EVIDENCE]
JOBS = 2

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no sqllogictest corpus at {CORPUS}")


@pytest.fixture(scope="module")
def results(helios_data_dir: Path) -> dict[str, FileResult]:
    files = [(CORPUS / name, name) for name in CI_FILES]
    return {r.file: r for r in run_files(files, ALL_MODES, helios_data_dir, jobs=JOBS, timeout=300)}


@pytest.mark.parametrize("name", SELECTS + EVIDENCE)
def test_file_matches_postgresql_in_every_mode(results: dict[str, FileResult], name: str) -> None:
    res = results[name]
    assert res.error is None
    assert set(res.modes) == set(ALL_MODES)
    assert all(m.error is None and m.not_run == 0 for m in res.modes.values())
    assert not res.differences, differences_list([res])
    assert res.modes[1].passed > 0


@pytest.mark.parametrize("name", SELECTS)
def test_select_files_pass_completely(results: dict[str, FileResult], name: str) -> None:
    # plain PostgreSQL passes all of select1-5 (the runner formats like the reference), so every mode must
    res = results[name]
    for mode in ALL_MODES:
        assert res.modes[mode].passed == res.records, (mode, list(res.modes[mode].failures.values())[:3])


def test_deep_generations_were_reached(results: dict[str, FileResult]) -> None:
    # select4 has 1,025 statements: mode 4 ran them across ~200 generations of branches
    assert results["select4.test"].records == 3857
    assert results["select4.test"].modes[4].passed == 3857
