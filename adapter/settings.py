"""Typed settings, built explicitly from an environment mapping (never at import)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cached_property

from mt_photos_triton.pipelines.images import MAX_PIXELS

DEFAULT_API_KEY = "mt_photos_ai_extra"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Settings:
    api_auth_key: str = DEFAULT_API_KEY
    triton_url: str = "127.0.0.1:8000"
    http_host: str = "0.0.0.0"
    http_port: int = 8060
    # (the reference's model variables choose what export writes; `/check` and `/represent` report the model
    # Triton serves, read from its config, so the adapter reads none of them)
    face_min_score: float = 0.65
    # seconds one inference may take before the route answers with an error
    inference_timeout_s: float = 60.0
    # inferences running at once; more get a "busy" answer at once instead of queueing without bound
    max_in_flight: int = 64
    # largest request body accepted (HTTP 413 beyond): real photos reach ~60 MB as 200 MP JPEGs and ~150 MB as
    # 50 MP PNGs, and the reference accepts any size
    max_body_mb: float = 200.0
    # largest image, in pixels from its header (mt_photos_triton.pipelines.images.MAX_PIXELS, which the Triton
    # models hold, is the most allowed)
    max_image_pixels: int = MAX_PIXELS
    # decoded pixels in flight at once (Triton decodes behind the adapter, ~3 bytes a pixel and more): requests
    # wait their turn beyond it; an image larger than this still runs, alone. 400 Mpx: two 200 MP photos
    max_pixels_in_flight: int = 400_000_000
    # refuse to start while API_AUTH_KEY is the public default
    refuse_default_key: bool = False
    # immich's POST /predict, unauthenticated (immich sends no key): off unless true
    immich_ml: bool = False
    # comma-separated CIDRs that may call /predict; empty: anyone who reaches the port
    immich_ml_allow: str = ""

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

    def __post_init__(self) -> None:
        if not 0 < self.max_image_pixels <= MAX_PIXELS:
            raise ValueError(
                f"MAX_IMAGE_PIXELS={self.max_image_pixels}: must be between 1 and {MAX_PIXELS} (the Triton models "
                "refuse larger images)"
            )
        self.immich_ml_networks  # noqa: B018 - a wrong IMMICH_ML_ALLOW stops the start
        if self.max_pixels_in_flight <= 0:
            raise ValueError(f"MAX_PIXELS_IN_FLIGHT={self.max_pixels_in_flight}: must be positive")

    @cached_property
    def immich_ml_networks(self) -> tuple[IPNetwork, ...]:
        """IMMICH_ML_ALLOW's networks (a bare address is its own /32 or /128)."""
        networks = []
        for item in self.immich_ml_allow.split(","):
            if item.strip():
                try:
                    networks.append(ipaddress.ip_network(item.strip(), strict=False))
                except ValueError:
                    raise ValueError(f"IMMICH_ML_ALLOW: {item.strip()!r} is not a network (CIDR)") from None
        return tuple(networks)

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
