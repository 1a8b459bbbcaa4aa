"""Export of the ocr family (filled in by its issue)."""

from __future__ import annotations

from pathlib import Path

from export.common import ExportError, ExportResult


def export(repository: Path, model: str | None, source: str | None, force: bool) -> ExportResult:
    raise ExportError("the ocr export is not implemented yet")
