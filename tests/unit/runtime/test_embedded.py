"""The embedded runtime's refusals and port choice (the server itself is exercised by the e2e tests)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from mt_photos_triton.runtime import embedded
from mt_photos_triton.runtime.embedded import Bundle, EmbeddedTritonError, check_environment
from mt_photos_triton.runtime.ports import LOOPBACK, choose_ports


def _bundle(tmp_path: Path, versions: list[str]) -> Bundle:
    root = tmp_path / "tritonserver"
    for version in versions:
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        stub.parent.mkdir(parents=True)
        stub.write_bytes(b"")
    return Bundle(root=root, libs=tmp_path / "libs")


def test_refuses_a_python_without_a_matching_stub(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, ["3.8", "3.9"])
    with pytest.raises(EmbeddedTritonError, match=r"no python backend stub for Python \d+\.\d+ \(it has 3\.8, 3\.9\)"):
        check_environment(bundle, Path(sys.executable))


def test_refuses_numpy_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _bundle(tmp_path, [f"{sys.version_info[0]}.{sys.version_info[1]}"])
    import numpy

    monkeypatch.setattr(numpy, "__version__", "2.1.0")
    with pytest.raises(EmbeddedTritonError, match="numpy < 2"):
        check_environment(bundle, Path(sys.executable))


def test_accepts_the_matching_set_up(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, [f"{sys.version_info[0]}.{sys.version_info[1]}"])
    check_environment(bundle, Path(sys.executable))


def test_taken_default_ports_are_replaced_by_free_ones() -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        taken = busy.getsockname()[1]
        ports = choose_ports({"http": taken, "grpc": 0, "metrics": 0})
    assert ports["http"] != taken
    assert len(set(ports.values())) == 3 and all(ports.values())


def test_the_real_bundle_is_found() -> None:
    bundle = embedded.locate_bundle()
    assert bundle.binary.is_file()
    assert bundle.stub_for(sys.version_info[:2]).is_file()
