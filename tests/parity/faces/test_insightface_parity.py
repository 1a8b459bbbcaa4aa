"""Our faces pipeline on the exported (batched, renamed) models vs the reference's on the original files.

The reference is immich v2.5.6's FaceDetector + FaceRecognizer behind mt-photos-ml's `/represent`, transcribed in
tests/parity/faces/reference.py (insightface's RetinaFace at 640, face_align.norm_crop, ArcFaceONNX with every face
of an image in one batch), over the face fixtures, t1.jpg and generated cases, for each of the three real SCRFD
files. All images of one detector go through ONE batched detector run and ONE recogniser run on our side; the
reference runs them one image at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export import faces as faces_export
from mt_photos_triton.pipelines import faces as pipeline
from tests.faces_support import DETECTORS, all_cases, build_pack, detector_path
from tests.parity.faces.reference import ReferenceRepresent, reference_decode

pytestmark = pytest.mark.parity

MIN_SCORE = 0.5  # lower than the service default, so that weak faces are compared too
BOX_TOLERANCE_PX = 0.5
SCORE_TOLERANCE = 1e-4
CROP_TOLERANCE = 1  # grey levels
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def cases(fixtures: Path) -> dict[str, bytes]:
    return all_cases(fixtures)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("detector", DETECTORS)
def test_pipeline_matches_insightface(detector: str, fixtures: Path, cases: dict[str, bytes], tmp_path: Path) -> None:
    pack = build_pack(tmp_path / "pack", detector_path(fixtures, detector))
    repository = tmp_path / "repository"
    faces_export.export(repository, "parity", str(pack), force=True)

    names = list(cases)
    images = [pipeline.decode_image(cases[name]) for name in names]
    ours = faces_export.run_exported(repository, images, [MIN_SCORE] * len(images))

    # the immich-app pack layout (detection/model.onnx, recognition/model.onnx), read as the reference reads it
    represent = ReferenceRepresent(
        pack / "detection" / "model.onnx", pack / "recognition" / "model.onnx", MIN_SCORE, tmp_path
    )
    references = [represent(reference_decode(cases[name])) for name in names]
    worst = {"box": 0.0, "score": 0.0, "landmark": 0.0, "crop": 0, "crop_e2e": 0, "crop_e2e_over_1": 0.0, "cosine": 1.0}
    counts = {}
    for name, image, mine, reference in zip(names, images, ours, references):
        assert np.array_equal(image, reference_decode(cases[name])), f"{name}: decoded differently"
        counts[name] = len(reference.scores)
        assert len(mine.faces) == counts[name], f"{detector} {name}: {len(mine.faces)} faces vs {counts[name]}"
        if not counts[name]:
            assert mine.embeddings.shape == (0, 512)
            continue
        worst["box"] = max(worst["box"], float(np.abs(mine.faces.boxes - reference.boxes).max()))
        worst["score"] = max(worst["score"], float(np.abs(mine.faces.scores - reference.scores).max()))
        worst["landmark"] = max(worst["landmark"], float(np.abs(mine.faces.landmarks - reference.landmarks).max()))
        # alignment itself: our crops from insightface's landmarks vs norm_crop's
        same_landmarks = pipeline.aligned_crops(
            image, pipeline.Faces(reference.boxes, reference.scores, reference.landmarks)
        )
        worst["crop"] = max(worst["crop"], int(np.abs(same_landmarks.astype(int) - reference.crops).max()))
        # end to end: from our own landmarks (batched-run float noise moves warpAffine's 1/32 px grid)
        gap = np.abs(pipeline.aligned_crops(image, mine.faces).astype(int) - reference.crops)
        worst["crop_e2e"] = max(worst["crop_e2e"], int(gap.max()))
        worst["crop_e2e_over_1"] = max(worst["crop_e2e_over_1"], float((gap > CROP_TOLERANCE).mean()))
        worst["cosine"] = min(worst["cosine"], min(cosine(a, b) for a, b in zip(mine.embeddings, reference.embeddings)))

    print(
        f"\nfaces parity {detector} (reference: insightface {type(represent.detector).__name__}): "
        f"{len(names)} images, faces {sum(counts.values())} "
        f"(t1.jpg {counts['t1.jpg']}), same count on all; max |box| {worst['box']:.3g} px, "
        f"max |score| {worst['score']:.3g}, max |landmark| {worst['landmark']:.3g} px, "
        f"crop vs norm_crop on the same landmarks max {worst['crop']} grey levels "
        f"(from our landmarks max {worst['crop_e2e']}, pixels > {CROP_TOLERANCE}: {worst['crop_e2e_over_1']:.2%}), "
        f"min cosine {worst['cosine']:.7f}"
    )
    assert counts["t1.jpg"] == 6
    assert counts["blank.png"] == 0
    assert worst["box"] <= BOX_TOLERANCE_PX
    assert worst["score"] <= SCORE_TOLERANCE
    assert worst["crop"] <= CROP_TOLERANCE
    assert worst["crop_e2e_over_1"] < 0.001  # a handful of edge pixels, never a shifted crop
    assert worst["cosine"] >= MIN_COSINE
