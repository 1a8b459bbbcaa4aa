"""The FLORES-200 prefix of NLLB text models (immich-ml textual.py's rule), and the tokenizer applying it."""

from __future__ import annotations

import numpy as np

from mt_photos_triton.pipelines.languages import FALLBACK_FLORES200, flores200, with_language


def test_codes_then_the_part_before_the_dash_then_english() -> None:
    assert flores200("de") == "deu_Latn"
    assert flores200("pt-BR") == "por_Latn" and flores200("zh-TW") == "zho_Hant"
    assert flores200("de-AT") == "deu_Latn", "no entry: the part before '-'"
    assert flores200("xx") == FALLBACK_FLORES200 and flores200("") == FALLBACK_FLORES200


def test_the_prefix_goes_before_the_text_without_separator() -> None:
    assert with_language("ein hund", "de") == "deu_Latnein hund"
    assert with_language("a dog", None) == "a dog"


def test_the_tokenizer_prefixes_only_with_a_language_prefix(tmp_path) -> None:
    from mt_photos_triton.pipelines.clip import TextTokenizer
    from mt_photos_triton.reference.clip_standins import build_tokenizer

    build_tokenizer(tmp_path)
    path = tmp_path / "tokenizer.json"
    nllb = TextTokenizer(path, 16, "<pad>", canonicalize=False, language_prefix=True)
    plain = TextTokenizer(path, 16, "<pad>", canonicalize=False)
    with_de, _ = nllb(["a  dog"], ["de"])
    expected, _ = plain(["deu_Latna dog"])
    assert np.array_equal(with_de, expected)
    assert np.array_equal(nllb(["a dog"], [None])[0], plain(["a dog"])[0])
    assert np.array_equal(plain(["a dog"], ["de"])[0], plain(["a dog"])[0]), "not NLLB: the language is ignored"


def test_export_writes_the_language_prefix_for_nllb_models_only() -> None:
    from export import clip as clip_export

    def tokenize_config(name: str):
        contract = clip_export.Contract(
            name=name, image_size=224, mean=[0.5] * 3, std=[0.5] * 3, context_length=77, pad_token="<pad>",
            canonicalize=False, text_inputs=clip_export.SINGLE_TEXT_INPUTS, dim=512,
        )
        configs = clip_export.build_configs(contract, cores=2)
        return configs["clip_tokenize"], configs["clip_text"]

    tokenize, text = tokenize_config("nllb-clip-base-siglip__v1")
    assert tokenize.parameters["language_prefix"].string_value == "true"
    assert [(i.name, i.optional) for i in text.input] == [("text", False), ("language", True)]
    assert tokenize_config("ViT-B-32__openai")[0].parameters["language_prefix"].string_value == "false"
