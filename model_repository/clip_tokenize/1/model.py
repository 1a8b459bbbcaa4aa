"""clip_tokenize: query strings -> int32 token ids [context_length] (and M-CLIP's attention mask).

Thin: tensors in, mt_photos_triton.pipelines.clip.TextTokenizer, tensors out. The tokenizer file, context
length, pad token, text cleaning and output names come from the config parameters that export wrote from
the model's config.json and textual/tokenizer*.json.
"""

from __future__ import annotations

import json
import os
from typing import Any

import triton_python_backend_utils as pb_utils

from mt_photos_triton.errors import INVALID_INPUT, PipelineError
from mt_photos_triton.pipelines.clip import TextTokenizer

# what each output name carries: the ids (immich's single-input `text`, M-CLIP's `input_ids`) or the mask
_IDS_OUTPUTS = ("text", "input_ids")
_MASK_OUTPUT = "attention_mask"


def _error(message: str) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = TextTokenizer(
            tokenizer_file=os.path.join(version_dir, parameters["tokenizer_file"]),
            context_length=int(parameters["context_length"]),
            pad_token=parameters["pad_token"],
            canonicalize=parameters["canonicalize"] == "true",
        )
        self.outputs = [name.strip() for name in parameters["outputs"].split(",")]
        unknown = [n for n in self.outputs if n not in (*_IDS_OUTPUTS, _MASK_OUTPUT)]
        if unknown:
            raise pb_utils.TritonModelException(f"clip_tokenize: unknown outputs {unknown}")

    def _decode(self, request: Any) -> list[str]:
        tensor = pb_utils.get_input_tensor_by_name(request, "query")
        if tensor is None:
            raise ValueError("input 'query' is missing")
        items = tensor.as_numpy().reshape(-1)
        return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in items]

    def execute(self, requests: list[Any]) -> list[Any]:
        texts: list[list[str] | None] = []
        responses: list[Any] = [None] * len(requests)
        for index, request in enumerate(requests):
            try:
                texts.append(self._decode(request))
            except (ValueError, UnicodeDecodeError) as error:
                texts.append(None)
                responses[index] = _error(str(PipelineError(INVALID_INPUT, str(error))))
        # one tokenizer call for the whole execution, split back per request
        flat = [text for batch in texts if batch is not None for text in batch]
        ids, mask = self.tokenizer(flat)
        start = 0
        for index, batch in enumerate(texts):
            if batch is None:
                continue
            end = start + len(batch)
            arrays = {name: ids[start:end] for name in _IDS_OUTPUTS} | {_MASK_OUTPUT: mask[start:end]}
            tensors = [pb_utils.Tensor(name, arrays[name]) for name in self.outputs]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
            start = end
        return responses
