"""clip_tokenize: query strings -> token ids [context_length] (and M-CLIP's attention mask).

Thin: tensors in, mt_photos_triton.pipelines.clip.text_tokenizer, tensors out. The tokenizer file, context
length, pad token, text cleaning and output names come from the config parameters that export wrote from
the model's config.json and textual/tokenizer*.json; which tokeniser from the CLIP profile recorded there
(pipelines/clip_profile.py), the ids' integer type from the config's outputs. One tokenizer call takes every
query of the execution.
An optional `language` input (one per query, or one for all of a request's) is read by NLLB models only
(`language_prefix`: the FLORES-200 code goes before the query, as immich-ml does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mt_photos_triton.errors import INVALID_INPUT, PipelineError
from mt_photos_triton.pipelines.clip import text_tokenizer
from mt_photos_triton.pipelines.clip_profile import read_profile
from mt_photos_triton.triton.answers import Answers, split_outputs
from mt_photos_triton.triton.parameters import ConfigError, ModelConfig
from mt_photos_triton.triton.python_backend import input_array, optional_input, respond

# what each output name carries: the ids (immich's single-input `text`, M-CLIP's `input_ids`) or the mask
_IDS_OUTPUTS = ("text", "input_ids")
_MASK_OUTPUT = "attention_mask"
_ID_TYPES = {"TYPE_INT32": np.int32, "TYPE_INT64": np.int64}


def _strings(items: Any, name: str) -> list[str]:
    strings = []
    for item in items.reshape(-1):
        try:
            strings.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
        except UnicodeDecodeError:
            raise PipelineError(INVALID_INPUT, f"{name} {len(strings)} is not UTF-8") from None
    return strings


def _queries(request: Any) -> list[tuple[str, str | None]]:
    """(text, language or None) per query of the request."""
    texts = _strings(input_array(request, "query"), "query")
    given = optional_input(request, "language")
    if given is None:
        return [(text, None) for text in texts]
    languages = _strings(given, "language")
    if len(languages) not in (1, len(texts)):
        raise PipelineError(INVALID_INPUT, f"{len(texts)} queries but {len(languages)} languages")
    return list(zip(texts, languages if len(languages) == len(texts) else languages * len(texts)))


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = ModelConfig.from_args(args)
        self.name = config.name
        self.tokenizer = text_tokenizer(
            read_profile(config.parameters),
            tokenizer_file=config.file("tokenizer_file"),
            context_length=config.integer("context_length"),
            pad_token=config.text("pad_token"),
            canonicalize=config.flag("canonicalize"),
            language_prefix=config.flag("language_prefix"),
        )
        self.outputs = config.names("outputs")
        unknown = [n for n in self.outputs if n not in (*_IDS_OUTPUTS, _MASK_OUTPUT)]
        if unknown:
            raise ConfigError(f"{self.name}: unknown outputs {unknown}")
        declared = {output["name"]: output["data_type"] for output in config.config.get("output", [])}
        wrong = {name: declared.get(name) for name in self.outputs if declared.get(name) not in _ID_TYPES}
        if wrong:
            raise ConfigError(f"{self.name}: outputs {wrong} are not TYPE_INT32 or TYPE_INT64")
        self.types = {name: _ID_TYPES[declared[name]] for name in self.outputs}

    def execute(self, requests: list[Any]) -> list[Any]:
        answers = Answers(self.name, len(requests))
        texts = answers.read(requests, _queries)
        with answers.guard(texts):
            queries = [query for request_queries in texts.values() for query in request_queries]
            ids, mask = self.tokenizer([text for text, _ in queries], [language for _, language in queries])
            arrays = {name: ids for name in _IDS_OUTPUTS} | {_MASK_OUTPUT: mask}
            typed = {name: arrays[name].astype(self.types[name], copy=False) for name in self.outputs}
            pieces = split_outputs(typed, [len(q) for q in texts.values()])
            for index, outputs in zip(texts, pieces):
                answers.give(index, outputs)
        return respond(answers)
