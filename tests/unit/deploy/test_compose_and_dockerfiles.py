"""The production files, checked for the properties that matter (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mt_photos_triton.runtime.container import server_flags
from mt_photos_triton.repository import ModelConfig
from export.configs import write_config
from tests.harness import ROOT

MIN_TRITON_RELEASE = (26, 7)  # older NGC tags predate the 2026 Triton security bulletins (fixed in 26.03-26.07)
# each image installs the extra of what it runs (pyproject.toml)
IMAGE_EXTRAS = {"Dockerfile": "embedded", "Dockerfile.adapter": "adapter", "Dockerfile.triton": "triton"}
SECRET_WORDS = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD)", re.IGNORECASE)


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load("docker-compose.yml")


def _dockerfile(name: str) -> list[str]:
    """Instructions with continuation lines joined."""
    text = (ROOT / name).read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _base_image(lines: list[str]) -> str:
    args = {m[1]: m[2] for line in lines if (m := re.match(r"ARG (\w+)=(\S+)", line))}
    image = next(line.split()[1] for line in lines if line.startswith("FROM "))
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)


def test_triton_service_is_internal_read_only_with_shm_and_healthcheck(compose: dict) -> None:
    triton = compose["services"]["triton"]
    assert triton["build"]["dockerfile"] == "Dockerfile.triton"
    assert "ports" not in triton, "Triton's ports must not be published"
    assert triton["networks"] == ["internal"]
    assert compose["networks"]["internal"]["internal"] is True
    assert "./model_repository:/models:ro" in triton["volumes"]
    size = triton["shm_size"]
    assert size.endswith("gb") or int(size.rstrip("mb")) >= 256
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])


def test_adapter_is_the_only_published_port_and_waits_for_triton(compose: dict) -> None:
    adapter = compose["services"]["adapter"]
    assert adapter["build"]["dockerfile"] == "Dockerfile.adapter"
    assert adapter["ports"] == ["${HTTP_PORT:-8060}:8060"]
    assert adapter["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "/health/ready" in " ".join(adapter["healthcheck"]["test"])
    assert adapter["environment"]["TRITON_URL"] == "triton:8000"
    # the key comes from the user's environment, never from this file
    assert adapter["environment"]["API_AUTH_KEY"].startswith("${API_AUTH_KEY:?")
    published = [name for name, service in compose["services"].items() if service.get("ports")]
    assert published == ["adapter"]


def test_gpu_and_openvino_variants() -> None:
    gpu = _load("docker-compose.gpu.yml")["services"]["triton"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"]["ACCELERATOR"] == "gpu"
    assert _load("docker-compose.openvino.yml")["services"]["triton"]["environment"]["ACCELERATOR"] == "openvino"


@pytest.mark.parametrize("name", sorted(IMAGE_EXTRAS))
def test_dockerfiles_pin_base_run_unprivileged_and_hold_no_secrets(name: str) -> None:
    lines = _dockerfile(name)
    image = _base_image(lines)
    assert ":" in image and not image.endswith(":latest"), image
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the last USER must be unprivileged"
    entry = max(i for i, line in enumerate(lines) if line.startswith(("ENTRYPOINT", "CMD")))
    assert max(i for i, line in enumerate(lines) if line.startswith("USER ")) < entry
    for line in lines:
        if line.startswith(("ENV ", "ARG ")):
            assert not SECRET_WORDS.search(line), f"{name}: {line}"
    # dependencies come from the project's own files: the image's extra of this checkout
    assert any(line.startswith("COPY pyproject.toml") for line in lines)
    installs = [line for line in lines if "pip install" in line]
    assert any(f'".[{IMAGE_EXTRAS[name]}]"' in line for line in installs), installs


@pytest.mark.parametrize("name", sorted(IMAGE_EXTRAS))
def test_dockerfiles_copy_every_directory_the_build_reads(name: str) -> None:
    """`pip install .` fails on a listed package whose folder was not copied (the templates among them)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setuptools["package-dir"]
    folders = {mapped.get(package, package.split(".")[0]) for package in setuptools["packages"]}
    copied = {line.split()[1].rstrip("/") for line in _dockerfile(name) if line.startswith("COPY ")}
    assert folders <= copied, f"{name} copies {sorted(copied)}; the build reads {sorted(folders)}"


def test_build_context_leaves_out_weights_and_environments() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", ".git", "**/*.onnx"} <= set(ignored)


def _ngc_release(image: str) -> tuple[int, int]:
    match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d+)\.(\d+)-py3", image)
    assert match, image
    return int(match[1]), int(match[2])


def test_triton_base_is_a_recent_ngc_release(compose: dict) -> None:
    image = _base_image(_dockerfile("Dockerfile.triton"))
    assert _ngc_release(image) >= MIN_TRITON_RELEASE
    # compose pins the same tag explicitly, so an old build argument cannot linger in a user's file
    assert compose["services"]["triton"]["build"]["args"]["TRITON_IMAGE"] == image


def test_compose_export_runs_in_the_image_that_carries_export(compose: dict) -> None:
    export = compose["services"]["export"]
    assert export["build"]["dockerfile"] == "Dockerfile"  # the adapter image has no export extra
    assert export["entrypoint"][:2] == ["mt-photos-triton", "export"]
    assert "./model_repository:/models" in export["volumes"]
    for variable in ("CLIP_VISUAL_MODEL_NAME", "OCR_MODEL_NAME", "FACE_RECOGNITION_MODEL_NAME"):
        assert variable in export["environment"], "the variables choose the models export fetches"


def _exec_form(lines: list[str], instruction: str) -> list[str]:
    line = next(line for line in reversed(lines) if line.startswith(f"{instruction} "))
    return json.loads(line.removeprefix(f"{instruction} "))


def test_single_container_is_mt_photos_ml_drop_in() -> None:
    """`docker run -p 8060:8060 -e API_AUTH_KEY=... -v models:/models IMAGE` on a CPU box, amd64 or arm64."""
    lines = _dockerfile("Dockerfile")
    image = _base_image(lines)
    # nvidia-pytriton 0.7.0 ships python-backend stubs for 3.8-3.13 and wheels for x86_64 and aarch64; the
    # official python image is multi-arch
    assert re.fullmatch(r"python:3\.1[0-3](\.\d+)?-slim(-\w+)?", image), image
    assert "EXPOSE 8060" in lines
    assert 'VOLUME ["/models"]' in lines
    env = " ".join(line for line in lines if line.startswith("ENV "))
    assert "MODEL_REPOSITORY=/models" in env and "HTTP_PORT=8060" in env
    health = next(line for line in lines if line.startswith("HEALTHCHECK "))
    assert "127.0.0.1:8060/health/ready" in health
    start_period = re.search(r"--start-period=(\d+)s", health)
    assert start_period and int(start_period[1]) >= 600, "the first start downloads and exports models"
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    assert any("useradd" in line and "mtphotos" in line for line in lines) and user == "mtphotos"
    assert any("chown mtphotos /models" in line for line in lines), "the unprivileged user writes the volume"
    command = _exec_form(lines, "ENTRYPOINT") + _exec_form(lines, "CMD")
    assert command == ["mt-photos-triton", "start", "--repository", "/models"]
    from mt_photos_triton.cli import build_parser

    args = build_parser().parse_args(command[1:])
    assert args.command == "start" and str(args.repository) == "/models"


def test_container_loads_only_complete_models_and_selects_accelerator(tmp_path: Path) -> None:
    flags = server_flags(tmp_path, ["ocr", "ocr_det"], accelerator="openvino")
    assert "--model-control-mode=explicit" in flags
    assert [f for f in flags if f.startswith("--load-model=")] == ["--load-model=ocr", "--load-model=ocr_det"]
    assert "--model-config-name=openvino" in flags
    with pytest.raises(ValueError, match="ACCELERATOR"):
        server_flags(tmp_path, [], accelerator="tpu")


def test_onnxruntime_configs_get_accelerator_variants(tmp_path: Path) -> None:
    write_config(tmp_path / "enc", ModelConfig(name="enc", backend="onnxruntime", max_batch_size=8))
    text = (tmp_path / "enc" / "configs" / "gpu.pbtxt").read_text()
    assert "KIND_GPU" in text and 'name: "tensorrt"' in text
    assert 'name: "openvino"' in (tmp_path / "enc" / "configs" / "openvino.pbtxt").read_text()
    write_config(tmp_path / "py", ModelConfig(name="py", backend="python", max_batch_size=8))
    assert not (tmp_path / "py" / "configs").exists()
