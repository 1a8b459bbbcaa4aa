"""The console of a service where only CLIP was exported: it says which families are missing and the command
that exports each; their routes answer with the spec's error and nothing is drawn."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.console.cdp import Page
from tests.e2e.console.conftest import Uploads
from tests.e2e.console.support import ROWS_JS, boxes, families, message, set_value, upload
from tests.e2e.service.support import KEY, Service

pytestmark = pytest.mark.e2e


def test_missing_families_are_named_with_their_export_command(clip_only_service: Service, page: Page,
                                                              uploads: Uploads, tmp_path: Path) -> None:
    page.open(f"{clip_only_service.url}/")
    shown = families(page)
    assert shown["clip"]["state"] == "ready" and "mt-photos-triton export" not in shown["clip"]["text"]
    for family in ("faces", "ocr"):
        assert shown[family]["state"] == "not exported", family
        assert "not exported" in shown[family]["text"]
        assert f"mt-photos-triton export {family}" in shown[family]["text"]
    rows = {row["name"]: row for row in page.evaluate(ROWS_JS)}
    assert "faces" not in rows and rows["clip_image"]["cells"][2] == "READY"  # never exported: not in the index

    set_value(page, "#key", KEY)
    upload(page, "#face-file", uploads.face)
    said = message(page, "#face-msg")
    assert said["kind"] == "error" and said["text"]
    assert boxes(page, "#face-svg") == []
    shot = page.screenshot(tmp_path / "console-not-exported.png")
    print(f"\nscreenshot: {shot}")
