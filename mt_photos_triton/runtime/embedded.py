"""Run the real `tritonserver` that ships inside the PyPI wheel `nvidia-pytriton`.

The wheel bundles Triton 2.51 with the python backend only. We assemble a backend directory for it
(the python backend with the stub that matches this interpreter, plus our python-based `onnxruntime`
backend, so `backend: "onnxruntime"` models load unchanged), start the server on loopback ports and
wait until it is ready. Facts and pitfalls: `shared/spec/triton-embedded.md`.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mt_photos_triton.procfs import listens_on, mapped_files, processes
from mt_photos_triton.runtime.ports import LOOPBACK, choose_ports

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
EXIT_TIMEOUT_S = 5  # the server's own grace for open connections and in-flight requests on SIGTERM
SHM_DIR = Path("/dev/shm")
# one region family per backend name: triton_python_backend_shm_region_*, triton_onnxruntime_backend_...
SHM_PATTERN = re.compile(r"^triton_\w+_backend_shm_region_")
LOG_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1

ONNXRUNTIME_BACKEND = Path(__file__).parent / "backends" / "onnxruntime" / "model.py"


class EmbeddedTritonError(RuntimeError):
    """The embedded server cannot be prepared or did not come up; the message says why."""


@dataclass(frozen=True)
class Bundle:
    """Where the pieces of the bundled server live inside site-packages."""

    root: Path
    libs: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    def stub_for(self, version: tuple[int, int]) -> Path:
        return self.root / "python_backend_stubs" / f"{version[0]}.{version[1]}" / "triton_python_backend_stub"


def locate_bundle() -> Bundle:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise EmbeddedTritonError(
            "the embedded Triton server needs the 'nvidia-pytriton' package: "
            "pip install 'mt-photos-triton[embedded]' (or use --triton-url with an existing server)"
        )
    package = Path(spec.origin).parent
    bundle = Bundle(root=package / "tritonserver", libs=package.parent / "nvidia_pytriton.libs")
    if not bundle.binary.is_file():
        raise EmbeddedTritonError(f"no tritonserver binary in the nvidia-pytriton package at {bundle.binary}")
    return bundle


def check_environment(bundle: Bundle, python: Path) -> None:
    """Refuse, with a reason, the set-ups that make the server hang or fail every request."""
    version = sys.version_info[:2]
    stub = bundle.stub_for(version)
    if not stub.is_file():
        available = sorted(p.name for p in (bundle.root / "python_backend_stubs").iterdir())
        raise EmbeddedTritonError(
            f"nvidia-pytriton has no python backend stub for Python {version[0]}.{version[1]} "
            f"(it has {', '.join(available)}); a mismatched stub hangs model loading. "
            "Run with one of those Python versions."
        )
    # The stub runs the first `python3` on PATH; we put this interpreter's directory first, so it must
    # be this interpreter (a venv's bin/ has python3 beside python).
    python3 = python.parent / "python3"
    if not python3.exists():
        raise EmbeddedTritonError(f"{python3} does not exist: the python models need it first on PATH")
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise EmbeddedTritonError(
            f"numpy {numpy.__version__} is installed; the Triton python stub needs numpy < 2 "
            "(with numpy 2 every python-model inference fails)"
        )


def assemble_backends(bundle: Bundle, target: Path) -> Path:
    """Write a backend directory: python (with the matching stub) and our python-based onnxruntime."""
    python_dir = target / "python"
    shutil.copytree(bundle.python_backend, python_dir, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(bundle.stub_for(sys.version_info[:2]), python_dir / "triton_python_backend_stub")
    onnx_dir = target / "onnxruntime"
    onnx_dir.mkdir()
    shutil.copy2(ONNXRUNTIME_BACKEND, onnx_dir / "model.py")
    return target


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM the server if the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def shm_regions() -> set[str]:
    if not SHM_DIR.is_dir():
        return set()
    return {p.name for p in SHM_DIR.iterdir() if SHM_PATTERN.match(p.name)}


@dataclass
class EmbeddedTriton:
    """One tritonserver process serving `repository` on loopback.

    `models=None` loads every model of the repository at start (`--model-control-mode=none` would stop at
    the first broken one, so we always use explicit mode); a list loads those; an empty list loads none
    (tests load models through the repository API).
    """

    repository: Path
    models: list[str] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    log_verbose: int = 0
    ready_timeout_s: float = READY_TIMEOUT_S
    python: Path = field(default_factory=lambda: Path(sys.executable))
    # "gpu" serves each model's configs/gpu.pbtxt (precision "fp32": gpu-fp32.pbtxt) where onnxruntime-gpu can
    # run it; "openvino" configs/openvino.pbtxt; "cpu" the models' own configs
    accelerator: str = "cpu"
    precision: str = "auto"

    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workdir: Path | None = field(default=None, init=False, repr=False)
    _log_file: IO[bytes] | None = field(default=None, init=False, repr=False)
    _shm_before: set[str] = field(default_factory=set, init=False, repr=False)
    _gpu_ignored_logged: bool = field(default=False, init=False, repr=False)
    _served_repository: Path | None = field(default=None, init=False, repr=False)

    @property
    def http_url(self) -> str:
        return f"{LOOPBACK}:{self.ports['http']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['metrics']}/metrics"

    @property
    def log_path(self) -> Path:
        assert self._workdir is not None, "the server was never started"
        return self._workdir / "tritonserver.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self, backend_dir: Path) -> list[str]:
        from mt_photos_triton.runtime.container import server_flags

        return [
            str(locate_bundle().binary),
            *server_flags(self._served_repository or self.repository, self.models_to_load(), *self.served_accelerator()),
            f"--backend-directory={backend_dir}",
            f"--http-address={LOOPBACK}",
            f"--http-port={self.ports['http']}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={self.ports['grpc']}",
            f"--metrics-address={LOOPBACK}",
            f"--metrics-port={self.ports['metrics']}",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            # on SIGTERM the server waits for every open HTTP connection, idle keep-alive ones included (a
            # client's pool), up to this long (default 30 s, longer than stop() waits before SIGKILL)
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            f"--log-verbose={self.log_verbose}",
        ]

    def served_accelerator(self) -> tuple[str, str]:
        """(accelerator, precision) the server is started with: a GPU variant only where onnxruntime has the CUDA
        provider; otherwise one log line says the GPU variant is ignored and the CPU configs are served."""
        from mt_photos_triton.runtime.container import config_name

        try:
            config_name(self.accelerator, self.precision)
        except ValueError as error:
            raise EmbeddedTritonError(str(error)) from None
        if self.accelerator != "gpu":
            return self.accelerator, self.precision
        providers = onnxruntime_providers()
        if "CUDAExecutionProvider" in providers:
            return self.accelerator, self.precision
        if self._gpu_ignored_logged:  # a restart does not repeat it
            return "cpu", "auto"
        self._gpu_ignored_logged = True
        log.warning(
            "ACCELERATOR=gpu, but onnxruntime here has no CUDA provider (it has %s; install onnxruntime-gpu): "
            "ignoring the GPU variants and serving every model on CPU",
            ", ".join(providers) or "none",
        )
        return "cpu", "auto"

    def models_to_load(self) -> list[str]:
        if self.models is not None:
            return list(self.models)
        from mt_photos_triton.repository import loadable_models

        return loadable_models(self.repository)

    def start(self) -> EmbeddedTriton:
        bundle = locate_bundle()
        check_environment(bundle, self.python)
        self.served_accelerator()  # refuses an unknown accelerator before anything is set up
        self.repository = Path(self.repository).resolve()
        if not self.repository.is_dir():
            raise EmbeddedTritonError(f"model repository {self.repository} does not exist")
        self.ports = choose_ports(self.ports or None)  # a restart keeps its ports where they are still free
        self._workdir = Path(tempfile.mkdtemp(prefix="mt-photos-triton-"))
        backend_dir = assemble_backends(bundle, self._workdir / "backends")
        self._served_repository = self._spaceless(self.repository)
        env = dict(os.environ)
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(bundle.libs), env.get("LD_LIBRARY_PATH")]))
        self._shm_before = shm_regions()
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = self.command(backend_dir)
        log.info("starting tritonserver (http %s, metrics %s)", self.http_url, self.ports["metrics"])
        self._process = subprocess.Popen(
            cmd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            # its own session: a terminal's Ctrl-C reaches us, and we stop the server in order
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _spaceless(self, repository: Path) -> Path | None:
        """A path without whitespace for a repository whose path has some: the python backend's stub is started
        with the model's path in its command line and cannot parse one that holds a space. None when not needed."""
        if not any(character.isspace() for character in str(repository)):
            return None
        assert self._workdir is not None
        link = self._workdir / "repository"
        link.symlink_to(repository, target_is_directory=True)
        log.info("serving %s through %s (the python backend cannot start under a path with a space)", repository, link)
        return link

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _get(self, path: str, timeout: float = 2.0) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def _listening(self) -> bool:
        """Our own tritonserver holds the listening socket on our HTTP port (it logs "Started HTTPService"
        before its bind can still fail, so the log is no proof)."""
        return self._process is not None and listens_on(self._process.pid, self.ports["http"])

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise EmbeddedTritonError(
                    f"tritonserver exited with code {code} before it was ready; its log ends:\n{self.log_tail()}"
                )
            # Ready only once our own process listens on our port: another server that holds the port
            # (our bind then fails) would otherwise answer the health check in its place.
            with contextlib.suppress(OSError):
                if self._listening() and self._get("/v2/health/ready") == 200 and self.alive():
                    return
            time.sleep(0.1)
        raise EmbeddedTritonError(
            f"tritonserver was not ready after {self.ready_timeout_s:.0f} s; its log ends:\n{self.log_tail()}"
        )

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, wait, SIGKILL if needed; then remove shared-memory regions the stubs left behind."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop within %.0f s: killing it", timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        if process is not None:
            self._reap_stubs(process.pid)
        self._remove_leftover_shm()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @staticmethod
    def _reap_stubs(session_id: int, timeout: float = 5.0) -> None:
        """Stubs exit by themselves once the server is gone; kill any still in its session after a while."""
        deadline = time.monotonic() + timeout
        while True:
            stubs = _session_members(session_id)
            if not stubs:
                return
            if time.monotonic() > deadline:
                for pid in stubs:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    def _remove_leftover_shm(self) -> None:
        """Regions that appeared while we ran and that no live process maps (another server's stay)."""
        leftovers = shm_regions() - self._shm_before
        if leftovers:
            leftovers -= mapped_files(SHM_DIR)
        for name in leftovers:
            with contextlib.suppress(OSError):
                (SHM_DIR / name).unlink()

    def __enter__(self) -> EmbeddedTriton:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def onnxruntime_providers() -> list[str]:
    """The execution providers of the onnxruntime installed here (the one the backend's stubs import)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def _session_members(session_id: int) -> list[int]:
    """PIDs of live processes whose session is `session_id` (the server was started as a session leader)."""
    return [p.pid for p in processes() if p.session == session_id and not p.zombie]
