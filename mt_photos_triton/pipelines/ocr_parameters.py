"""The OCR pipeline's numbers: `OcrParameters` from the `ocr` model's config (written by export, no second
default), `OcrOptions`, a request's replacements for some of them, and `WidthBuckets`, the recogniser widths the
GPU variant pads to. No cv2, pyclipper or Pillow import: who only reads or checks these numbers does not load the
image maths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from mt_photos_triton.errors import INVALID_INPUT, PipelineError


@dataclass(frozen=True)
class OcrParameters:
    """The pipeline's numbers, read from the `ocr` model config's `parameters` (all strings there)."""

    min_side: int  # images smaller than this on a side give no text
    det_limit_side: int  # the shorter side is scaled down to at most this
    det_multiple: int  # detector input sides are rounded to a multiple of this
    det_mean: float  # detector normalisation: (x - mean) / std, x in 0..255 (the reference's formula)
    det_std: float
    binary_threshold: float
    box_threshold: float
    max_candidates: int
    unclip_ratio: float
    rec_height: int
    rec_min_width: int  # recogniser batches are at least this wide (RapidOCR rec_img_shape 3x48x320)
    rec_batch_size: int
    text_score_threshold: float
    # when nothing is found at the reference's scale, detect once more at this fraction of it (0: never);
    # large lettering (glyphs over ~100 px) escapes the detector at full size (docs/compatibility.md)
    retry_scale: float

    @classmethod
    def from_config(cls, parameters: Mapping[str, str]) -> OcrParameters:
        values: dict[str, object] = {}
        for field in fields(cls):
            if field.name not in parameters:
                raise KeyError(f"config parameter '{field.name}' is missing: re-run `mt-photos-triton export ocr`")
            kind = int if field.type in ("int", int) else float
            values[field.name] = kind(parameters[field.name])
        return cls(**values)  # type: ignore[arg-type]

    def as_config(self) -> dict[str, str]:
        return {field.name: str(getattr(self, field.name)) for field in fields(self)}


MAX_DET_LIMIT_SIDE = 10000  # a request's max resolution above the largest side any image may have is refused


@dataclass(frozen=True)
class OcrOptions:
    """What one request may set instead of the config's numbers (immich's per-request `options`: detection
    `minScore`, `maxResolution`, recognition `minScore`); None keeps the config's value."""

    box_threshold: float | None = None
    det_limit_side: int | None = None
    text_score_threshold: float | None = None

    def applied(self, params: OcrParameters) -> OcrParameters:
        """`params` with these options in place; an option out of its range is refused (invalid_input)."""
        for name in ("box_threshold", "text_score_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise PipelineError(INVALID_INPUT, f"{name} {value} is not within 0..1")
        side = self.det_limit_side
        if side is not None and not params.det_multiple <= side <= MAX_DET_LIMIT_SIDE:
            raise PipelineError(
                INVALID_INPUT, f"max resolution {side} is not within {params.det_multiple}..{MAX_DET_LIMIT_SIDE}"
            )
        given = {field.name: getattr(self, field.name) for field in fields(self) if getattr(self, field.name) is not None}
        return replace(params, **given) if given else params


REC_WIDTH_BUCKETS = "rec_width_buckets"  # the config parameter (GPU variant only)


@dataclass(frozen=True)
class WidthBuckets:
    """The widths the recogniser is sent at on a GPU: each batch padded on the right, up to the next bucket, so
    that a TensorRT engine whose one optimisation profile spans the buckets serves every call and batches of
    near widths share calls. Only the `ocr` GPU variant's config names them (export/ocr_gpu.py); without them
    each batch goes at its own width. The detector is not padded: docs/gpu.md says why."""

    widths: tuple[int, ...]  # ascending

    @classmethod
    def from_config(cls, parameters: Mapping[str, str]) -> WidthBuckets | None:
        """The buckets a config names, or None where it names none (the CPU configs)."""
        if REC_WIDTH_BUCKETS not in parameters:
            return None
        widths = tuple(int(v) for v in parameters[REC_WIDTH_BUCKETS].split(","))
        if min(widths) < 1 or list(widths) != sorted(set(widths)):
            raise ValueError(f"config parameter '{REC_WIDTH_BUCKETS}' must list ascending positive widths: {widths}")
        return cls(widths)

    def as_config(self) -> dict[str, str]:
        return {REC_WIDTH_BUCKETS: ",".join(str(w) for w in self.widths)}

    def width(self, width: int) -> int:
        """The smallest bucket that holds `width`; beyond the largest, the smallest multiple of the largest that
        does (outside the TensorRT profile, so kept to a few shapes: docs/gpu.md)."""
        for bucket in self.widths:
            if width <= bucket:
                return bucket
        return -(-width // self.widths[-1]) * self.widths[-1]
