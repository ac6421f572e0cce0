"""The sqllogictest corpus on plain PostgreSQL and on HeliosDB: main, queries on a child, many generations.

Runs select1.test in full and a slice of the evidence files in all four modes and
asserts that every record passing on plain PostgreSQL passes on HeliosDB too.
The whole corpus is a separate CI step: ``python -m heliosdb.slt``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from heliosdb.slt import corpus_dir
from heliosdb.slt.backends import Cluster
from heliosdb.slt.report import differences_list
from heliosdb.slt.runner import ALL_MODES, FileResult, run_file

CORPUS = corpus_dir()
EVIDENCE_SLICE = ["evidence/in1.test", "evidence/slt_lang_update.test", "evidence/slt_lang_replace.test"]

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no sqllogictest corpus at {CORPUS}")


@pytest.fixture(scope="module")
def cluster(helios_data_dir: Path) -> Iterator[Cluster]:
    c = Cluster(helios_data_dir, timeout=120)
    yield c
    c.close()


def _run(cluster: Cluster, name: str) -> FileResult:
    res = run_file(CORPUS / name, ALL_MODES, cluster, name)
    assert res.error is None
    assert set(res.modes) == set(ALL_MODES)
    assert not res.differences, differences_list([res])
    return res


def test_select1_all_modes(cluster: Cluster) -> None:
    res = _run(cluster, "select1.test")
    assert res.records == 1031
    # plain PostgreSQL passes all of select1 (the corpus README says so): the runner formats like the reference
    for mode in ALL_MODES:
        assert res.modes[mode].passed == res.records, (mode, list(res.modes[mode].failures.values())[:3])


@pytest.mark.parametrize("name", EVIDENCE_SLICE)
def test_evidence_slice(cluster: Cluster, name: str) -> None:
    res = _run(cluster, name)
    assert res.modes[1].passed > 0
