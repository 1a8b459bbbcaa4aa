"""The production files, checked for the properties that matter (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mt_photos_triton.runtime.container import server_flags
from mt_photos_triton.repository import ModelConfig
from export.configs import write_config
from tests.harness import ROOT

MIN_TRITON_RELEASE = (25, 7)  # older NGC tags carry published CVEs
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


@pytest.mark.parametrize("name", ["Dockerfile.triton", "Dockerfile.adapter"])
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
    # dependencies come from the project's own files
    assert any(line.startswith("COPY pyproject.toml") for line in lines)
    assert any("pip install" in line and " . " in f"{line} " for line in lines)


def test_triton_base_is_a_recent_ngc_release() -> None:
    image = _base_image(_dockerfile("Dockerfile.triton"))
    match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d+)\.(\d+)-py3", image)
    assert match, image
    assert (int(match[1]), int(match[2])) >= MIN_TRITON_RELEASE


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
