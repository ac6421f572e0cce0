"""Imports run one way: storage -> catalog -> sql -> branching -> session -> dbapi / cli / shell.

A module may import modules of its own layer or of earlier layers, never of a
later one. heliosdb.errors sits below every layer. Imports under
`if TYPE_CHECKING:` are ignored (they never run); imports inside functions
count too, with one exception: the branching layer may import session inside a
function (the session hands itself to branching code, which builds Results).

The engine packages next to branching (temporal: time travel, merge: branch
merges, mv: materialized views) share its layer: they and branching use each other and are called by
session. server (the wire protocol front end) sits with cli. Every module must
be placed here: a new package makes test_every_module_belongs_to_a_layer fail
until it is.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import heliosdb

PKG_DIR = Path(heliosdb.__file__).resolve().parent
SRC_DIR = PKG_DIR.parent

LAYERS: dict[str, int] = {
    "heliosdb.errors": 0,
    "heliosdb.storage": 1,
    "heliosdb.catalog": 2,
    "heliosdb.sql": 3,
    "heliosdb.branching": 4,
    "heliosdb.temporal": 4,
    "heliosdb.merge": 4,
    "heliosdb.mv": 4,
    "heliosdb.session": 5,
    "heliosdb.dbapi": 6,
    "heliosdb.cli": 6,
    "heliosdb.launch": 6,
    "heliosdb.shell": 6,
    "heliosdb.server": 6,
    # The package facade re-exports the DB-API; tools use that public API.
    "heliosdb": 7,
    "heliosdb.slt": 7,
}
# Deferred (function-level) imports allowed, as (importer's LAYERS key, imported's LAYERS key).
DEFERRED_OK = {
    ("heliosdb.branching", "heliosdb.session"),
    ("heliosdb.temporal", "heliosdb.session"),
    ("heliosdb.merge", "heliosdb.session"),
    ("heliosdb.mv", "heliosdb.session"),
}


def layer_of(module: str) -> str | None:
    """The LAYERS key owning `module` (longest prefix)."""
    best = None
    for key in LAYERS:
        if (module == key or module.startswith(key + ".")) and (best is None or len(key) > len(best)):
            if key == "heliosdb" and module != "heliosdb":
                continue
            best = key
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC_DIR).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> list[Path]:
    return sorted(p for p in PKG_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def _is_package(module: str) -> bool:
    path = SRC_DIR.joinpath(*module.split("."))
    return path.is_dir() and (path / "__init__.py").exists()


def _is_module(module: str) -> bool:
    path = SRC_DIR.joinpath(*module.split("."))
    return _is_package(module) or path.with_suffix(".py").exists()


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    deferred: bool  # inside a function


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, module: str, is_package: bool = False) -> list[Edge]:
    """heliosdb modules imported by `source` (the code of `module`)."""
    tree = ast.parse(source)
    edges: list[Edge] = []

    def resolve_from(node: ast.ImportFrom) -> list[str]:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        out = []
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            # `from heliosdb import errors` imports the module heliosdb.errors
            out.append(sub if _is_module(sub) else target)
        return out

    def visit(node: ast.AST, deferred: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, deferred)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "heliosdb" or alias.name.startswith("heliosdb."):
                    edges.append(Edge(module, alias.name, node.lineno, deferred))
            return
        if isinstance(node, ast.ImportFrom):
            for target in resolve_from(node):
                if target == "heliosdb" or target.startswith("heliosdb."):
                    edges.append(Edge(module, target, node.lineno, deferred))
            return
        inner = deferred or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return edges


def violations(edges: list[Edge]) -> list[str]:
    bad = []
    for e in edges:
        src, dst = layer_of(e.importer), layer_of(e.imported)
        assert src is not None and dst is not None, (e.importer, e.imported)
        if LAYERS[dst] <= LAYERS[src]:
            continue
        if e.deferred and (src, dst) in DEFERRED_OK:
            continue
        kind = "inside a function" if e.deferred else "at module level"
        bad.append(f"{e.importer}:{e.line} imports {e.imported} ({kind}): {src} must not depend on {dst}")
    return bad


# --- the checker itself --------------------------------------------------------------


def test_checker_finds_a_later_layer_import() -> None:
    src = "from heliosdb.session import Session\n"
    assert violations(imports_of(src, "heliosdb.storage.instance"))


def test_checker_counts_imports_inside_functions() -> None:
    src = "def f():\n    from heliosdb.branching import branches\n"
    assert violations(imports_of(src, "heliosdb.sql.classify"))
    # ... except deferred imports of session by the branching layer.
    deferred = "def f():\n    from heliosdb.session import Result\n"
    assert not violations(imports_of(deferred, "heliosdb.branching.tables"))
    assert violations(imports_of("from heliosdb.session import Result\n", "heliosdb.branching.tables"))
    assert violations(imports_of(deferred, "heliosdb.catalog.model"))
    # Branching may not import the DB-API even inside a function.
    assert violations(imports_of("def f():\n    import heliosdb.dbapi\n", "heliosdb.branching.tables"))


def test_checker_ignores_type_checking_blocks() -> None:
    src = (
        "from typing import TYPE_CHECKING\nimport typing\n"
        "if TYPE_CHECKING:\n    from heliosdb.session import Session\n"
        "if typing.TYPE_CHECKING:\n    import heliosdb.cli\n"
        "else:\n    import heliosdb.dbapi\n"
    )
    found = violations(imports_of(src, "heliosdb.branching.tables"))
    assert len(found) == 1 and "heliosdb.dbapi" in found[0]


def test_checker_resolves_from_package_imports() -> None:
    edges = imports_of("from heliosdb import errors\nfrom heliosdb import connect\n", "heliosdb.sql.lsn")
    assert [e.imported for e in edges] == ["heliosdb.errors", "heliosdb"]
    assert len(violations(edges)) == 1  # the facade is the top layer


def test_checker_resolves_relative_imports() -> None:
    edges = imports_of("from . import split\nfrom ..session import Session\n", "heliosdb.sql.classify")
    assert [e.imported for e in edges] == ["heliosdb.sql.split", "heliosdb.session"]
    assert len(violations(edges)) == 1


# --- the package -----------------------------------------------------------------------


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [module_name(p) for p in all_modules() if layer_of(module_name(p)) is None]
    assert not unplaced, f"place these modules in tests/test_layers.py LAYERS: {unplaced}"


# Known violations (each is a failing check, kept visible with strict xfail).
KNOWN: dict[str, str] = {}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(
            p,
            id=module_name(p),
            marks=pytest.mark.xfail(strict=True, reason="layering violation: " + KNOWN[module_name(p)]),
        )
        if module_name(p) in KNOWN
        else pytest.param(p, id=module_name(p))
        for p in all_modules()
    ],
)
def test_module_imports_only_earlier_layers(path: Path) -> None:
    mod = module_name(path)
    found = violations(imports_of(path.read_text(encoding="utf-8"), mod, path.name == "__init__.py"))
    assert not found, "\n".join(found)


def test_imported_heliosdb_modules_exist() -> None:
    missing = []
    for p in all_modules():
        for e in imports_of(p.read_text(encoding="utf-8"), module_name(p), p.name == "__init__.py"):
            if not _is_module(e.imported):
                missing.append(f"{e.importer}:{e.line} {e.imported}")
    assert not missing
