"""A python-based Triton backend named `onnxruntime` for servers that lack the native one.

The `tritonserver` bundled in the `nvidia-pytriton` wheel has only the python backend. Placed at
`<backend-directory>/onnxruntime/model.py`, this file makes every `backend: "onnxruntime"` model of the
repository load unchanged, as the native backend of the NGC container would serve it:

- the model file is `<model>/<version>/<default_model_filename or model.onnx>`;
- input and output names and data types come from the model config and must equal the graph's;
- with `max_batch_size > 0` the first axis is the batch: requests of one execute (the dynamic batcher's
  batch) that share their other dims are concatenated into one onnxruntime run, then split again;
- `intra_op_thread_count` / `inter_op_thread_count` parameters set the session's thread pools, as the native
  backend reads them; pool threads spin between operators only when `allow_spinning` is "1", and never after a
  run; `instance_group` count is honoured by Triton itself (one stub process per instance);
- a malformed request gets its own error response and the rest of the batch is still served.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

DEFAULT_MODEL_FILENAME = "model.onnx"
THREAD_PARAMETERS = {"intra_op_thread_count": "intra_op_num_threads", "inter_op_thread_count": "inter_op_num_threads"}


def _parameter(config: dict[str, Any], key: str) -> str | None:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return value if value not in (None, "") else None


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        filename = config.get("default_model_filename") or DEFAULT_MODEL_FILENAME
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.name}: model file {path} not found")

        options = ort.SessionOptions()
        for parameter, attribute in THREAD_PARAMETERS.items():
            value = _parameter(config, parameter)
            if value is not None:
                setattr(options, attribute, int(value))
        # Pool threads spin between operators and, by default, on after a run too; with several model processes
        # sharing few cores (the embedded server's case) that idle spinning burns the cores the busy model needs.
        # So they do not spin unless `allow_spinning` is "1", and then only during a run (force_spinning_stop):
        # a ViT-B/32 run followed by 40 ms of idle costs 153 ms of CPU when the threads spin on, 116 ms when they
        # stop. (With onnxruntime 1.31 a run alone takes as long without spinning: 54.3 vs 53.6 ms, 2 threads.)
        spinning = _parameter(config, "allow_spinning") or "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

        graph_inputs = {i.name for i in self.session.get_inputs()}
        graph_outputs = {o.name for o in self.session.get_outputs()}
        self.inputs = [
            (i["name"], pb_utils.triton_string_to_numpy(i["data_type"]), [int(d) for d in i["dims"]])
            for i in config["input"]
        ]
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]]
        missing = [n for n, *_ in self.inputs if n not in graph_inputs] + [
            n for n, _ in self.outputs if n not in graph_outputs
        ]
        if missing:
            raise pb_utils.TritonModelException(
                f"{self.name}: config names {missing} are not in the graph "
                f"(inputs {sorted(graph_inputs)}, outputs {sorted(graph_outputs)})"
            )

    def _check(self, request: Any) -> dict[str, np.ndarray]:
        """This request's inputs as arrays, or ValueError saying what is wrong with them."""
        arrays = {}
        batched = self.max_batch_size > 0
        for name, dtype, dims in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input '{name}' is missing")
            array = tensor.as_numpy()
            if array.dtype != dtype:
                raise ValueError(f"input '{name}' has dtype {array.dtype}, expected {np.dtype(dtype)}")
            shape = array.shape[1:] if batched else array.shape
            if len(shape) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, shape)):
                raise ValueError(f"input '{name}' has shape {list(array.shape)}, expected dims {dims}")
            if batched and not 0 < array.shape[0] <= self.max_batch_size:
                raise ValueError(f"input '{name}' has batch {array.shape[0]}, allowed 1..{self.max_batch_size}")
            arrays[name] = array
        return arrays

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        names = [name for name, _ in self.outputs]
        results = self.session.run(names, feeds)
        return [np.ascontiguousarray(r, dtype=dtype) for r, (_, dtype) in zip(results, self.outputs)]

    def _respond(self, outputs: list[np.ndarray]) -> Any:
        tensors = [pb_utils.Tensor(name, array) for (name, _), array in zip(self.outputs, outputs)]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, dict[str, np.ndarray]]]] = defaultdict(list)
        for index, request in enumerate(requests):
            try:
                arrays = self._check(request)
            except ValueError as error:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.name}: {error}"))
                continue
            if self.max_batch_size > 0:
                # requests whose non-batch dims agree share one run
                signature = tuple((name, a.shape[1:]) for name, a in arrays.items())
            else:
                signature = ("request", index)
            groups[signature].append((index, arrays))

        for members in groups.values():
            try:
                if len(members) == 1:
                    index, arrays = members[0]
                    responses[index] = self._respond(self._run(arrays))
                    continue
                feeds = {name: np.concatenate([a[name] for _, a in members]) for name, *_ in self.inputs}
                outputs = self._run(feeds)
                start = 0
                for index, arrays in members:
                    size = next(iter(arrays.values())).shape[0]
                    responses[index] = self._respond([o[start : start + size] for o in outputs])
                    start += size
            except Exception as error:  # noqa: BLE001 - an ORT failure is the error of these requests only
                message = f"{self.name}: inference failed: {type(error).__name__}"
                for index, _ in members:
                    responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
        return responses
