"""The three model families: which Triton models serve each, the command that exports them, and the
environment variables (the reference service's own) that choose their models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

OCR_MODEL = "ocr"
FACES_MODEL = "faces"
CLIP_IMAGE_MODEL = "clip_image"
CLIP_TEXT_MODEL = "clip_text"

# Every entry model's config carries the name of the model export was given (`export --model`, or the variable
# below), so that `/check`, `/represent` and `serve` report what Triton really serves, read from Triton itself.
SERVED_MODEL_PARAMETER = "served_model"


@dataclass(frozen=True)
class Family:
    name: str
    entry_models: tuple[str, ...]  # what a route (or a direct Triton client) calls
    variables: tuple[str, ...]  # the reference's variables naming this family's model, the first one leading
    default_model: str  # the reference service's default
    # CLIP's two towers must come from one model (vectors of one space); faces' recogniser leads (its embeddings
    # are what a library indexed) and the detector is taken from the same pack
    variables_must_agree: bool = False

    @property
    def export_command(self) -> str:
        return f"mt-photos-triton export {self.name}"


FAMILIES = {
    "ocr": Family("ocr", (OCR_MODEL,), ("OCR_MODEL_NAME",), "PP-OCRv5_mobile"),
    "faces": Family(
        "faces", (FACES_MODEL,), ("FACE_RECOGNITION_MODEL_NAME", "FACE_DETECTION_MODEL_NAME"), "buffalo_l"
    ),
    "clip": Family(
        "clip",
        (CLIP_IMAGE_MODEL, CLIP_TEXT_MODEL),
        ("CLIP_VISUAL_MODEL_NAME", "CLIP_TEXTUAL_MODEL_NAME"),
        "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k",
        variables_must_agree=True,
    ),
}


class ModelChoiceError(ValueError):
    """The variables name models this service cannot serve together; the message says what to set."""


def chosen_model(family: Family, env: Mapping[str, str]) -> str:
    """The model the variables name for `family` (its default where none is set), the leading variable first.
    One model per family is served: where the family's variables must agree and name different models, refused."""
    named = {variable: env[variable].strip() for variable in family.variables if env.get(variable, "").strip()}
    if family.variables_must_agree and len(set(named.values())) > 1:
        listed = ", ".join(f"{variable}={value}" for variable, value in named.items())
        raise ModelChoiceError(
            f"{listed}: one {family.name} model is served, so these must name the same model; set them alike"
        )
    return next(iter(named.values()), family.default_model)


def family_of(model: str) -> Family | None:
    return next((f for f in FAMILIES.values() if model in f.entry_models), None)
