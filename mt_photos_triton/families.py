"""The three model families: which Triton models serve each, and the command that exports them."""

from __future__ import annotations

from dataclasses import dataclass

OCR_MODEL = "ocr"
FACES_MODEL = "faces"
CLIP_IMAGE_MODEL = "clip_image"
CLIP_TEXT_MODEL = "clip_text"


@dataclass(frozen=True)
class Family:
    name: str
    entry_models: tuple[str, ...]  # what a route (or a direct Triton client) calls

    @property
    def export_command(self) -> str:
        return f"mt-photos-triton export {self.name}"


FAMILIES = {
    "ocr": Family("ocr", (OCR_MODEL,)),
    "faces": Family("faces", (FACES_MODEL,)),
    "clip": Family("clip", (CLIP_IMAGE_MODEL, CLIP_TEXT_MODEL)),
}


def family_of(model: str) -> Family | None:
    return next((f for f in FAMILIES.values() if model in f.entry_models), None)
