"""Shared by the mt-photos-ai CLIP tests: Chinese-CLIP's vocab.txt from the cn-clip wheel, and the stand-in files."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from export.sources import cache_dir
from mt_photos_triton.reference.cnclip_standin import (
    CN_CLIP_PACKAGE, VOCAB_IN_WHEEL, VOCAB_SHA256, CnClipSpec, write_mtphotos_layout,
)

WHEEL_GLOB = "cn_clip-*.whl"


def cn_clip_vocab() -> Path:
    """vocab.txt out of the cn-clip wheel, fetched once by `pip download --no-deps` into the clip cache (the
    package itself is never installed: it needs torchvision and timm); skips when PyPI cannot be reached."""
    target = cache_dir("clip") / "cn-clip-wheel"
    vocab = target / "vocab.txt"
    if not vocab.is_file():
        target.mkdir(parents=True, exist_ok=True)
        if not sorted(target.glob(WHEEL_GLOB)):
            command = [sys.executable, "-m", "pip", "download", CN_CLIP_PACKAGE, "--no-deps", "--only-binary=:all:",
                       "-d", str(target)]
            completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
            if completed.returncode != 0 or not sorted(target.glob(WHEEL_GLOB)):
                pytest.skip(f"needs Chinese-CLIP's vocab.txt: `pip download {CN_CLIP_PACKAGE}` failed (PyPI unreachable?)")
        with zipfile.ZipFile(sorted(target.glob(WHEEL_GLOB))[0]) as wheel:
            vocab.write_bytes(wheel.read(VOCAB_IN_WHEEL))
    assert hashlib.sha256(vocab.read_bytes()).hexdigest() == VOCAB_SHA256, f"{vocab} is not cn-clip 1.6.0's vocab.txt"
    return vocab


@pytest.fixture(scope="session")
def cnclip_vocab() -> Path:
    return cn_clip_vocab()


@pytest.fixture(scope="session")
def mtphotos_dir(cnclip_vocab: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory as a user copies it out of the mt-photos-ai container, with stand-in models."""
    return write_mtphotos_layout(tmp_path_factory.mktemp("mt-photos-ai") / "utils", cnclip_vocab, CnClipSpec())
