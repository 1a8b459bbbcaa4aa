"""What each Triton entry model serves: the model's name, as `/check` and `/represent` report it to MT Photos,
and the CLIP number format `/clip/*` writes (pipelines/clip_profile.py).

Export writes both into every entry model's config (parameters `served_model`, `number_format`); they are read
from Triton with get_model_config once the model is loaded, and kept until the server is lost or the model
unloaded (a restarted server may serve a new export). A config without `served_model` (an older export) serves
its family's default; one without `number_format` has the immich profile's.
"""

from __future__ import annotations

from adapter.backend import BackendError, InferenceBackend
from mt_photos_triton.families import SERVED_MODEL_PARAMETER, family_of
from mt_photos_triton.pipelines.clip_profile import read_profile


def default_name(model: str) -> str:
    family = family_of(model)
    return family.default_model if family is not None else model


class ServedModels:
    def __init__(self, backend: InferenceBackend) -> None:
        self._backend = backend
        self._parameters: dict[str, dict[str, str]] = {}

    async def _read(self, model: str) -> dict[str, str] | None:
        if model not in self._parameters:
            try:
                self._parameters[model] = await self._backend.model_parameters(model)
            except BackendError:
                return None  # not loaded (yet): asked again next time
        return self._parameters[model]

    async def name(self, model: str) -> str:
        parameters = await self._read(model)
        return (parameters or {}).get(SERVED_MODEL_PARAMETER) or default_name(model)

    async def number_format(self, model: str) -> str:
        """The number format of a CLIP entry model's profile (only asked once the model has answered)."""
        return read_profile(await self._read(model) or {}).number_format

    def forget(self, model: str | None = None) -> None:
        """Read `model`'s parameters again next time (every model's, with None)."""
        if model is None:
            self._parameters.clear()
        else:
            self._parameters.pop(model, None)
