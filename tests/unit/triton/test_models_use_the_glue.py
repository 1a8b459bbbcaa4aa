"""Every python model goes through the glue: none imports Triton's utils itself, and only the glue's
python_backend module does (so the rest of the glue is importable, and tested, without a Triton stub)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TRITON_UTILS = "triton_python_backend_utils"
MODELS = [*sorted((ROOT / "model_repository").glob("*/1/model.py")),
          ROOT / "mt_photos_triton" / "runtime" / "backends" / "onnxruntime" / "model.py"]


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_model_uses_the_glue_and_not_triton_utils_directly() -> None:
    assert len(MODELS) == 5
    for path in MODELS:
        found = imports(path)
        assert TRITON_UTILS not in found, path
        assert "mt_photos_triton.triton.python_backend" in found, path
        assert "json" not in found, f"{path} parses its config itself"


def test_only_python_backend_imports_triton_utils() -> None:
    glue = sorted((ROOT / "mt_photos_triton" / "triton").glob("*.py"))
    users = [path.name for path in glue if TRITON_UTILS in imports(path)]
    assert users == ["python_backend.py"]
    for path in glue:
        assert "mt_photos_triton.triton.python_backend" not in imports(path), path
