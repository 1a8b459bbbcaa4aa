"""Triton's own HTTP body limit follows the adapter's MAX_BODY_MB in the NGC container (newer Triton releases cap
bodies at 64 MB by default; a photo the adapter accepts must not fail inside)."""

from __future__ import annotations

from typing import Any

import yaml

from adapter.settings import Settings
from mt_photos_triton.runtime import container
from mt_photos_triton.runtime.embedded import locate_bundle
from tests.harness import ROOT

NEWER_HELP = "  --http-max-input-size <integer>\n\tMaximum allowed HTTP request input size in bytes.\n"


def test_the_flag_carries_the_adapter_limit_plus_the_request_overhead() -> None:
    (flag,) = container.input_size_flags(NEWER_HELP, 200)
    name, value = flag.split("=")
    assert name == "--http-max-input-size"
    assert int(value) > 200 * 1024 * 1024
    assert int(value) - 200 * 1024 * 1024 == container.REQUEST_OVERHEAD_BYTES


def test_a_triton_without_the_flag_gets_none() -> None:
    # the embedded bundle's tritonserver (2.51) predates the flag: passing it would stop the server
    help_text = container._help_text(str(locate_bundle().binary))
    assert "--model-repository" in help_text, "the bundled tritonserver printed no help"
    assert container.input_size_flags(help_text, 200) == []


def test_the_container_default_is_the_adapter_default() -> None:
    assert container.DEFAULT_MAX_BODY_MB == Settings().max_body_mb


def test_compose_gives_both_services_the_same_limit() -> None:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["triton"]["environment"]["MAX_BODY_MB"] == services["adapter"]["environment"]["MAX_BODY_MB"]
