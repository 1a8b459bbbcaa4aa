"""An NLLB-shaped CLIP (a stand-in exported as nllb-clip-base-siglip__v1): immich's textual entry with a
language gets the FLORES-200 prefix, as immich-ml writes it before the query; other models ignore it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.immich import client
from tests.e2e.immich.conftest import NLLB_MODEL
from tests.e2e.immich.test_predict import answer, mt, predict
from tests.e2e.service.support import Service

pytestmark = pytest.mark.e2e


def textual(language: str | None) -> dict:
    options = {} if language is None else {"language": language}
    return {"clip": {"textual": {"modelName": NLLB_MODEL, "options": options}}}


def vector(service: Service, text: str, language: str | None) -> np.ndarray:
    return np.array(client.clip_answer(answer(predict(service, textual(language), text=text)), image=False))


@pytest.mark.parametrize(("language", "prefix"), [("de", "deu_Latn"), ("pt-BR", "por_Latn"), ("de-AT", "deu_Latn"),
                                                  ("xx", "eng_Latn"), (None, "")])
def test_language_prefix(nllb_service: Service, language: str | None, prefix: str) -> None:
    ours = vector(nllb_service, "ein  hund", language)
    # /clip/txt sends no language: the prefixed query given as text is what immich-ml tokenises
    reference = np.array([float(v) for v in mt(nllb_service, "/clip/txt", json={"text": f"{prefix}ein hund"})])
    assert len(ours) == 768 and np.abs(ours - reference).max() <= 1e-6


def test_the_language_changes_the_vector(nllb_service: Service) -> None:
    assert np.abs(vector(nllb_service, "a dog", "de") - vector(nllb_service, "a dog", None)).max() > 1e-4
