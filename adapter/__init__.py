"""The MT Photos AI API over HTTP (Litestar), answering from a Triton Inference Server."""

from adapter.app import create_app
from adapter.settings import Settings

__all__ = ["Settings", "create_app"]
