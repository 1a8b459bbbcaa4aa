"""What handlers get injected, by name: `backend` and `settings` (provided by create_app)."""

from __future__ import annotations

from litestar.di import NamedDependency

from adapter.backend import InferenceBackend
from adapter.settings import Settings

Backend = NamedDependency[InferenceBackend]
AppSettings = NamedDependency[Settings]
