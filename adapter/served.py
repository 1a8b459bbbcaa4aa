"""Which model each Triton entry model serves, as `/check` and `/represent` report it to MT Photos.

Export writes the name into every entry model's config (parameter `served_model`); it is read from Triton with
get_model_config once the model is loaded, and kept until the server is lost or the model unloaded (a restarted
server may serve a new export). A config without the parameter (an older export) serves its family's default.
"""

from __future__ import annotations

from adapter.backend import BackendError, InferenceBackend
from mt_photos_triton.families import SERVED_MODEL_PARAMETER, family_of


def default_name(model: str) -> str:
    family = family_of(model)
    return family.default_model if family is not None else model


class ServedModels:
    def __init__(self, backend: InferenceBackend) -> None:
        self._backend = backend
        self._names: dict[str, str] = {}

    async def name(self, model: str) -> str:
        if model in self._names:
            return self._names[model]
        try:
            parameters = await self._backend.model_parameters(model)
        except BackendError:
            return default_name(model)  # not loaded (yet): asked again next time
        self._names[model] = parameters.get(SERVED_MODEL_PARAMETER) or default_name(model)
        return self._names[model]

    def forget(self, model: str | None = None) -> None:
        """Read `model`'s name again next time (every model's, with None)."""
        if model is None:
            self._names.clear()
        else:
            self._names.pop(model, None)
