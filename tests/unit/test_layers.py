"""Imports point one way: cli, serve, bench → runtime, adapter, export → Triton glue, pipelines → errors, families.

An AST walk over every module of the three packages and the committed python models: a module may import a
module of a lower layer, or of its own group; never a higher layer, nor another group of its own layer (except at
the top, the composition root, where cli runs serve and the benches).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (group, layer): a module belongs to the longest group that prefixes its dotted name.
LAYERS = {
    "mt_photos_triton": 0,  # the package's own __init__
    "mt_photos_triton.errors": 0,
    "mt_photos_triton.families": 0,
    "mt_photos_triton.pipelines": 1,
    "mt_photos_triton.triton": 1,
    "mt_photos_triton.repository": 1,
    "mt_photos_triton.procfs": 1,
    "mt_photos_triton.reference": 1,
    "mt_photos_triton.runtime": 2,
    "adapter": 2,
    "export": 2,
    "model_repository": 2,  # the Triton python models
    "mt_photos_triton.bench": 3,
    "mt_photos_triton.serve": 3,
    "mt_photos_triton.cli": 3,
}


def group_of(module: str) -> str | None:
    candidates = [g for g in LAYERS if module == g or module.startswith(g + ".")]
    return max(candidates, key=len) if candidates else None


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in ("mt_photos_triton", "adapter", "export"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "templates" in path.relative_to(ROOT).parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    for path in sorted((ROOT / "model_repository").glob("*/1/model.py")):
        found[f"model_repository.{path.parts[-3]}"] = path
    return found


def imported(path: Path) -> list[tuple[int, str]]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
            # `from mt_photos_triton import errors` imports the submodule
            names += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return names


def violations() -> list[str]:
    found = []
    for module, path in modules().items():
        own = group_of(module)
        assert own is not None, f"{module} belongs to no layer: add it to LAYERS"
        for line, name in imported(path):
            target = group_of(name)
            if target is None or target == own:
                continue
            if LAYERS[target] > LAYERS[own] or (LAYERS[target] == LAYERS[own] in (1, 2)):
                found.append(f"{path.relative_to(ROOT)}:{line}: {own} (layer {LAYERS[own]}) imports {name} "
                             f"({target}, layer {LAYERS[target]})")
    return found


def test_no_import_points_up_or_sideways() -> None:
    assert violations() == []


@pytest.mark.parametrize(("module", "name", "allowed"), [
    ("mt_photos_triton.pipelines.ocr", "adapter.app", False),
    ("adapter.app", "export.clip", False),
    ("export.clip", "mt_photos_triton.cli", False),
    ("mt_photos_triton.cli", "export.clip", True),
    ("adapter.routes.ocr", "mt_photos_triton.pipelines.images", True),
    ("model_repository.ocr", "mt_photos_triton.triton.glue", True),
])
def test_the_rule_itself(module: str, name: str, allowed: bool) -> None:
    own, target = group_of(module), group_of(name)
    upward = LAYERS[target] > LAYERS[own] or (LAYERS[target] == LAYERS[own] in (1, 2) and target != own)
    assert upward is not allowed
