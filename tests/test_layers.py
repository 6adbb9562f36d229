"""Keeps the layering one-way: schemas <- tables <- agents <- pipeline (and bench on top).

Every module of the lower layers is parsed (not imported) and each of its imports, including
those under ``TYPE_CHECKING`` and inside functions, is checked against the layers above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each layer must not import: everything above it.
FORBIDDEN: dict[str, frozenset[str]] = {
    "schemas": frozenset({"tables", "agents", "pipeline", "bench"}),
    "tables": frozenset({"agents", "pipeline", "bench"}),
    "agents": frozenset({"pipeline", "bench"}),
}


def _modules() -> list[Path]:
    return sorted(path for layer in FORBIDDEN for path in (ROOT / layer).rglob("*.py"))


def _package_of(path: Path) -> list[str]:
    # A module's package, and an __init__'s too, is the directory it is in.
    return list(path.relative_to(ROOT).parent.parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(path)
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def test_every_layer_has_modules() -> None:
    for layer in FORBIDDEN:
        assert any((ROOT / layer).rglob("*.py")), layer


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_from_a_higher_layer(path: Path) -> None:
    layer = path.relative_to(ROOT).parts[0]
    upward = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for line, module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN[layer]
    ]
    assert not upward, "\n".join(upward)


def test_the_check_sees_upward_imports(tmp_path: Path) -> None:
    # A guard for the guard: every import form the walk must catch.
    source = (
        "from typing import TYPE_CHECKING\n"
        "import pipeline.app\n"
        "from pipeline.metrics import Metrics\n"
        "if TYPE_CHECKING:\n"
        "    from agents.inbox import InboxFeed\n"
        "def f():\n"
        "    import bench.harness\n"
    )
    module = tmp_path / "module.py"
    module.write_text(source)
    names = {name.split(".")[0] for _, name in imported_modules(module)}
    assert {"pipeline", "agents", "bench"} <= names
