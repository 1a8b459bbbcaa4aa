"""Face test material: packs built from the fixture detectors plus a stand-in recogniser, and test images
(the face fixtures, insightface's t1.jpg, and generated cases)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mt_photos_triton.reference.arcface_standin import build_tiny

DETECTORS = ("det_500m", "det_2.5g", "scrfd_500m_bnkps_batched")
FIXTURE_FACES = ("astronaut.png", "obama.jpg", "obama2.jpg", "obama3.jpg", "obama_small.jpg", "biden.jpg", "biden2.jpg")
EXIF_ORIENTATION = 0x0112
ROTATE_90_CW = 6  # EXIF orientation 6: the stored pixels must be turned 90° clockwise to be upright


def detector_path(fixtures: Path, name: str) -> Path:
    path = fixtures / "models" / "scrfd" / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not in the fixtures")
    return path


def build_pack(root: Path, detector: Path, **recognizer_options: bool) -> Path:
    """A face pack folder (detection/model.onnx, recognition/model.onnx) as immich-app lays it out."""
    (root / "detection").mkdir(parents=True, exist_ok=True)
    shutil.copy(detector, root / "detection" / "model.onnx")
    build_tiny(root / "recognition" / "model.onnx", **recognizer_options)
    return root


def t1_bytes() -> bytes:
    """insightface's own group photo (6 faces), from the installed package data."""
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    if not path.is_file():
        pytest.skip("insightface's t1.jpg is not installed")
    return path.read_bytes()


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def generated_cases(fixtures: Path) -> dict[str, bytes]:
    """Rotated, tiny, huge, grayscale, RGBA, EXIF orientation 6 and no-face images."""
    faces = fixtures / "images" / "faces"
    obama = Image.open(faces / "obama.jpg").convert("RGB")
    group = Image.open(io.BytesIO(t1_bytes())).convert("RGB")
    astronaut = Image.open(faces / "astronaut.png").convert("RGB")
    alpha = Image.linear_gradient("L").resize(astronaut.size)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CW
    return {
        "rotated_t1.png": encode(group.transpose(Image.Transpose.ROTATE_90), "PNG"),
        "tiny_obama.jpg": encode(obama.resize((60, 45)), "JPEG", quality=95),
        "huge_t1.jpg": encode(group.resize((group.width * 4, group.height * 4), Image.Resampling.BICUBIC), "JPEG"),
        "grayscale_obama.png": encode(obama.convert("L"), "PNG"),
        "rgba_astronaut.png": encode(Image.merge("RGBA", (*astronaut.split(), alpha)), "PNG"),
        # stored sideways; upright only once the EXIF orientation is applied
        "exif6_obama.jpg": encode(obama.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif),
        "blank.png": encode(Image.new("RGB", (640, 480), (128, 128, 128)), "PNG"),
    }


def all_cases(fixtures: Path) -> dict[str, bytes]:
    faces = fixtures / "images" / "faces"
    cases = {name: (faces / name).read_bytes() for name in FIXTURE_FACES}
    cases["t1.jpg"] = t1_bytes()
    cases.update(generated_cases(fixtures))
    return cases


def reference_decode(data: bytes) -> np.ndarray:
    """How the reference service reads an upload: cv2.imdecode (EXIF applied, BGR)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image
