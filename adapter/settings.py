"""Typed settings, built explicitly from an environment mapping (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

DEFAULT_API_KEY = "mt_photos_ai_extra"


@dataclass(frozen=True)
class Settings:
    api_auth_key: str = DEFAULT_API_KEY
    triton_url: str = "127.0.0.1:8000"
    http_host: str = "0.0.0.0"
    http_port: int = 8060
    # model names the reference service reads; `/check` reports the face ones to MT Photos
    ocr_model_name: str = "PP-OCRv5_mobile"
    clip_visual_model_name: str = "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k"
    clip_textual_model_name: str = "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k"
    face_detection_model_name: str = "buffalo_l"
    face_recognition_model_name: str = "buffalo_l"
    face_min_score: float = 0.65
    # seconds one inference may take before the route answers with an error
    inference_timeout_s: float = 60.0
    # inferences running at once; more get a "busy" answer at once instead of queueing without bound
    max_in_flight: int = 64
    # largest request body accepted (HTTP 413 beyond)
    max_body_mb: float = 50.0
    # "text" or "json" (one JSON object per line)
    log_format: str = "text"
    # refuse to start while API_AUTH_KEY is the public default
    refuse_default_key: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Each field from its upper-case environment variable (API_AUTH_KEY, TRITON_URL, ...)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get(field.name.upper())
            if raw is None or raw == "":
                continue
            kind = type(field.default)
            try:
                values[field.name] = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError as error:
                raise ValueError(f"{field.name.upper()}={raw!r} is not a valid {kind.__name__}") from error
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def uses_default_key(self) -> bool:
        return self.api_auth_key == DEFAULT_API_KEY


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
