"""What handlers get injected, by name: `backend`, `settings` and `inference` (provided by create_app)."""

from __future__ import annotations

from litestar.di import NamedDependency

from adapter.backend import InferenceBackend
from adapter.inference import InferencePath
from adapter.settings import Settings

Backend = NamedDependency[InferenceBackend]
AppSettings = NamedDependency[Settings]
Inference = NamedDependency[InferencePath]
