"""Each deployable's extra covers what its modules import when they load, and the wheel carries the templates.

The module-level imports (what fails a container at start) are followed from each deployable's entry modules
through the project's own modules; every third-party module reached must come from a distribution in the
dependency closure of that deployable's extra, as pip would resolve it from pyproject.toml.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.harness import ROOT

PROJECT = "mt-photos-triton"
OWN_PACKAGES = ("adapter", "export", "mt_photos_triton")
# provided by the process that loads the module, not by a distribution
PROVIDED = {"triton_python_backend_utils"}
# deployable -> (its extra, its entry modules as files relative to the checkout)
DEPLOYABLES = {
    "NGC Triton image": ("triton", ["model_repository/*/1/model.py", "mt_photos_triton/runtime/container.py"]),
    "adapter image": ("adapter", ["adapter/app.py", "mt_photos_triton/serve.py", "mt_photos_triton/cli.py"]),
    "export": ("export", ["export/*.py"]),
    "embedded (make serve, single container)": (
        "embedded",
        ["mt_photos_triton/serve.py", "mt_photos_triton/runtime/*.py", "mt_photos_triton/runtime/backends/*/model.py",
         "model_repository/*/1/model.py", "export/*.py"],
    ),
    "reference (benches, stand-ins)": ("reference", ["mt_photos_triton/reference/*.py", "mt_photos_triton/bench/*.py"]),
}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def load_time_imports(path: Path) -> set[str]:
    """Modules imported when the file loads: module-level statements, not those inside functions."""
    return statement_imports(ast.parse(path.read_text()).body)


def statement_imports(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            names |= statement_imports(node.body) | statement_imports(node.orelse)
        elif isinstance(node, ast.Try):  # a guarded import still loads when it can
            names |= statement_imports(node.body)
    return names


def third_party_reached(entries: list[Path]) -> dict[str, str]:
    """Top-level third-party module -> the project file that imports it, over the project's import closure."""
    seen: set[Path] = set()
    todo = list(entries)
    reached: dict[str, str] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in load_time_imports(path):
            top = name.split(".")[0]
            if top in OWN_PACKAGES:
                # `pkg.sub` and each parent package run on import
                parts = name.split(".")
                todo += [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))]
            elif top not in sys.stdlib_module_names and top not in PROVIDED and top != "__future__":
                reached.setdefault(top, str(path.relative_to(ROOT)))
    return reached


def extra_closure(extra: str) -> set[str]:
    """Normalised distribution names pip installs for `mt-photos-triton[extra]` (markers for this interpreter)."""
    extras = pyproject()["project"]["optional-dependencies"]
    found: set[str] = set()

    def own(name: str) -> None:
        for text in extras[name]:
            requirement = Requirement(text)
            if canonical(requirement.name) == PROJECT:
                for nested in requirement.extras:
                    own(nested)
            else:
                walk(requirement)

    def walk(requirement: Requirement) -> None:
        name = canonical(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in found:
            return
        found.update({key, name})
        for text in installed_requires(name):
            nested = Requirement(text)
            wanted = [{"extra": e} for e in requirement.extras] or [{"extra": ""}]
            if nested.marker is None or any(nested.marker.evaluate(env) for env in wanted):
                walk(nested)

    own(extra)
    return {name for name in found if "[" not in name}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def installed_requires(name: str) -> tuple[str, ...]:
    try:
        return tuple(metadata.requires(name) or ())
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is required by an extra but not installed here (install '.[test]')")


@cache
def distributions_of() -> dict[str, set[str]]:
    return {module: {canonical(d) for d in dists} for module, dists in metadata.packages_distributions().items()}


def entry_files(patterns: list[str]) -> list[Path]:
    return sorted(path for pattern in patterns for path in ROOT.glob(pattern))


@pytest.mark.parametrize("deployable", list(DEPLOYABLES))
def test_each_deployable_extra_covers_its_load_time_imports(deployable: str) -> None:
    extra, patterns = DEPLOYABLES[deployable]
    files = entry_files(patterns)
    assert files, patterns
    closure = extra_closure(extra)
    uncovered = {
        module: importer
        for module, importer in third_party_reached(files).items()
        if not distributions_of().get(module, set()) & closure
    }
    assert not uncovered, f"{deployable} installs .[{extra}] but loads modules no distribution of it provides: {uncovered}"


def test_extras_layer_as_the_deployables_do() -> None:
    extras = pyproject()["project"]
    assert extras["dependencies"] == [], "the base install stays minimal: each deployable takes its extra"
    adapter = extra_closure("adapter")
    assert not adapter & {"opencv-python-headless", "onnxruntime", "onnx", "tokenizers", "pyclipper", "nvidia-pytriton"}
    triton = extra_closure("triton")
    assert not triton & {"litestar", "uvicorn", "onnxruntime", "onnx", "nvidia-pytriton"}
    embedded = extra_closure("embedded")
    assert {"nvidia-pytriton", "litestar", "onnxruntime", "opencv-python-headless", "huggingface-hub"} <= embedded
    numpy_pins = [r for r in extras["optional-dependencies"]["triton"] if canonical(Requirement(r).name) == "numpy"]
    assert numpy_pins and Requirement(numpy_pins[0]).specifier.contains("1.26.4")
    assert not Requirement(numpy_pins[0]).specifier.contains("2.0.0"), "the Triton python stub needs numpy < 2"


def test_templates_are_package_data_of_the_wheel() -> None:
    """Every committed config and python model matches a package-data glob of the templates package (the
    built wheel itself is installed and served by tests/e2e/user_paths)."""
    tool = pyproject()["tool"]["setuptools"]
    assert tool["package-dir"]["mt_photos_triton.templates"] == "model_repository"
    globs = tool["package-data"]["mt_photos_triton.templates"]
    committed = [p for p in (ROOT / "model_repository").rglob("*") if p.is_file() and p.name != ".gitkeep"]
    for path in committed:
        relative = path.relative_to(ROOT / "model_repository")
        if relative.suffix in (".onnx", ".json", ".txt") or "configs" in relative.parts or "__pycache__" in relative.parts:
            continue  # what export writes (git-ignored), not a template
        assert any(relative.match(glob) for glob in globs), f"{relative} is not in the wheel's package data"
