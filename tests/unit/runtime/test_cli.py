"""Command-line plumbing: JSON logs and the export command's failure reporting."""

from __future__ import annotations

import json
import logging

import pytest

from mt_photos_triton.cli import JsonFormatter, build_parser


def test_json_log_lines() -> None:
    record = logging.LogRecord("adapter", logging.WARNING, __file__, 1, "ocr failed: %s", ("busy",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "adapter" and entry["message"] == "ocr failed: busy"


def test_serve_and_export_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--port", "9000", "--triton-url", "t:8000"])
    assert (args.port, args.triton_url) == (9000, "t:8000")
    args = parser.parse_args(["export", "--repository", "/models", "ocr", "--force"])
    assert (args.family, str(args.repository), args.force) == ("ocr", "/models", True)
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "nonsense"])
