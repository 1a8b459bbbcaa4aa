"""Error codes that cross the Triton boundary.

A Triton python model that rejects one request answers `TritonError("<code>: <detail>")`; the adapter reads
the code back with `parse_code` and maps it to the route's fixed message. Details are for logs only.
"""

from __future__ import annotations

INVALID_IMAGE = "invalid_image"
IMAGE_TOO_LARGE = "image_too_large"
INVALID_INPUT = "invalid_input"
CODES = (INVALID_IMAGE, IMAGE_TOO_LARGE, INVALID_INPUT)


class PipelineError(ValueError):
    """A request the pipeline refuses; `code` is one of CODES."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def parse_code(message: str) -> str | None:
    """The code a model put in front of its error message, if any (Triton may prefix the model name)."""
    for code in CODES:
        if f"{code}: " in message:
            return code
    return None
