"""The language prefix NLLB-CLIP text models expect: a FLORES-200 code written before the query.

immich's server sends the user's interface language as a Weblate code ("de", "pt-BR", "zh-Hans"); immich-ml
v2.5.6 (machine-learning/immich_ml/models/clip/textual.py, `OpenClipTextualEncoder.tokenize`) looks the code up,
then its part before "-", else falls back to English, and prefixes the cleaned text with the FLORES-200 code
(no separator). Only `nllb*` models get it; others ignore the language.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

FALLBACK_FLORES200 = "eng_Latn"

# Weblate code → FLORES-200 code: data, as immich-ml v2.5.6 machine-learning/immich_ml/models/constants.py
# `WEBLATE_TO_FLORES200` lists it
WEBLATE_TO_FLORES200 = {
    "af": "afr_Latn", "ar": "arb_Arab", "az": "azj_Latn", "be": "bel_Cyrl", "bg": "bul_Cyrl",
    "ca": "cat_Latn", "cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn", "el": "ell_Grek",
    "en": "eng_Latn", "es": "spa_Latn", "et": "est_Latn", "fa": "pes_Arab", "fi": "fin_Latn",
    "fr": "fra_Latn", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn", "hu": "hun_Latn",
    "hy": "hye_Armn", "id": "ind_Latn", "it": "ita_Latn", "ja": "jpn_Hira", "kmr": "kmr_Latn",
    "ko": "kor_Hang", "lb": "ltz_Latn", "lt": "lit_Latn", "lv": "lav_Latn", "mfa": "zsm_Latn",
    "mk": "mkd_Cyrl", "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn", "nb-NO": "nob_Latn",
    "nn": "nno_Latn", "nl": "nld_Latn", "pl": "pol_Latn", "pt-BR": "por_Latn", "pt": "por_Latn",
    "ro": "ron_Latn", "ru": "rus_Cyrl", "sk": "slk_Latn", "sl": "slv_Latn", "sr-Cyrl": "srp_Cyrl",
    "sv": "swe_Latn", "ta": "tam_Taml", "te": "tel_Telu", "th": "tha_Thai", "tr": "tur_Latn",
    "uk": "ukr_Cyrl", "ur": "urd_Arab", "vi": "vie_Latn", "zh-CN": "zho_Hans", "zh-Hans": "zho_Hans",
    "zh-TW": "zho_Hant",
}


def flores200(language: str) -> str:
    """The FLORES-200 code for a Weblate code: the code itself, else its part before "-", else English."""
    code = WEBLATE_TO_FLORES200.get(language) or WEBLATE_TO_FLORES200.get(language.split("-")[0])
    if code is None:
        log.warning("language %r is not known; English is assumed", language[:40])
        return FALLBACK_FLORES200
    return code


def with_language(text: str, language: str | None) -> str:
    """`text` (already cleaned) as an NLLB model reads it: prefixed by the language's FLORES-200 code; a
    query without a language stays as it is (an empty code is unknown: English, as immich)."""
    return text if language is None else f"{flores200(language)}{text}"
