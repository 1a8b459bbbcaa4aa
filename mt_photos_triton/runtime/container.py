"""Entry point of the Triton container (docker-compose): start `tritonserver` on the exported models only.

`python3 -m mt_photos_triton.runtime.container` scans the mounted repository, logs what is missing with the export
command that provides it, and execs `tritonserver` in explicit model-control mode with one `--load-model`
per complete model, so a family that was never exported neither fails the server nor its readiness.
ACCELERATOR=gpu|openvino selects `configs/<name>.pbtxt` in each model directory where export wrote one
(Triton falls back to `config.pbtxt`); with ACCELERATOR=gpu, TRT_PRECISION=fp32 selects `configs/gpu-fp32.pbtxt`
(every TensorRT model in fp32, for users who must keep the vectors they stored before).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from mt_photos_triton.repository import loadable_models, scan

log = logging.getLogger("mt_photos_triton.runtime.container")

ACCELERATORS = ("cpu", "gpu", "openvino")
PRECISIONS = ("auto", "fp32")
DEFAULT_MAX_BODY_MB = 200.0  # the adapter's MAX_BODY_MB default (adapter/settings.py)
INPUT_SIZE_FLAG = "--http-max-input-size"
# what one HTTP request to Triton carries beyond the photo itself: headers, the JSON inference header, other tensors
REQUEST_OVERHEAD_BYTES = 1024 * 1024  # auto: each model's own (FP16 where export chose it, fp32 for embeddings)


def config_name(accelerator: str, precision: str = "auto") -> str | None:
    """The `--model-config-name` for an accelerator and a TRT_PRECISION; None: each model's config.pbtxt."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"ACCELERATOR={accelerator!r}: expected one of {', '.join(ACCELERATORS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"TRT_PRECISION={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if accelerator == "cpu":
        return None
    # the names export/configs.py writes (GPU_VARIANT, GPU_FP32_VARIANT); runtime does not import export
    return "gpu-fp32" if accelerator == "gpu" and precision == "fp32" else accelerator


def server_flags(repository: Path, models: list[str], accelerator: str = "cpu", precision: str = "auto") -> list[str]:
    """Flags shared by the container; the embedded runtime adds loopback addresses and its ports."""
    variant = config_name(accelerator, precision)
    flags = [
        f"--model-repository={repository}",
        "--model-control-mode=explicit",
        # one model that fails to load must not take the others down; the adapter reports it per model
        "--exit-on-error=false",
        "--strict-readiness=false",
        "--disable-auto-complete-config",
        *(f"--load-model={name}" for name in models),
    ]
    if variant is not None:
        flags.append(f"--model-config-name={variant}")
    return flags


def input_size_flags(help_text: str, max_body_mb: float) -> list[str]:
    """Raise Triton's own HTTP body limit to the adapter's, where this Triton has one (newer releases refuse
    bodies over 64 MB by default, so a large photo the adapter accepts would fail inside); none where it has not."""
    if INPUT_SIZE_FLAG not in help_text:
        return []
    return [f"{INPUT_SIZE_FLAG}={int(max_body_mb * 1024 * 1024) + REQUEST_OVERHEAD_BYTES}"]


def _help_text(binary: str) -> str:
    try:
        done = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr  # tritonserver prints its usage on stderr


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    repository = Path(os.environ.get("MODEL_REPOSITORY", "/models"))
    for name, status in sorted(scan(repository).items()):
        if status.missing:
            log.warning("not loading %s: %s", name, status.missing)
    accelerator = os.environ.get("ACCELERATOR", "cpu")
    precision = os.environ.get("TRT_PRECISION", "auto")
    flags = server_flags(repository, loadable_models(repository), accelerator, precision)
    max_body_mb = float(os.environ.get("MAX_BODY_MB", DEFAULT_MAX_BODY_MB))
    flags += input_size_flags(_help_text("tritonserver"), max_body_mb)
    command = ["tritonserver", *flags, *(sys.argv[1:] if argv is None else argv)]
    log.info("exec %s", " ".join(command))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
