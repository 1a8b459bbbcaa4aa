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
  run; `nice` ("0" to "19"; ours: the native backend has no process of its own to lower) lowers the CPU
  priority of the session's threads, so that under load they yield the cores to the models and the adapter
  ahead of them (clip_visual: export/clip_configs.py); `instance_group` count is honoured by Triton itself
  (one stub process per instance, each with its own session and its own copy of the weights: docs/memory.md);
- memory as the native backend's parameters set it: `enable_mem_arena` / `enable_mem_pattern` ("0" or "1";
  onnxruntime's defaults, both on, where absent) and `memory.enable_memory_arena_shrinkage` ("cpu:0": the CPU
  arena gives back, at the end of each run, the regions that run no longer uses, so a large batch's peak is not
  kept); after the session is made, the heap that loading freed (the parsed model file) goes back to the system;
- a malformed request gets its own error response (invalid_input) and the rest of the batch is still served;
  a failed run answers its requests with a generic error (the traceback goes to the log);
- a GPU instance (a `configs/gpu*.pbtxt` variant) runs on the TensorRT or CUDA provider as its
  `gpu_execution_accelerator` says, where onnxruntime-gpu is installed (runtime/providers.py); otherwise on CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections import defaultdict
from typing import Any

import numpy as np

from mt_photos_triton.errors import INVALID_INPUT, PipelineError
from mt_photos_triton.runtime.providers import session_providers
from mt_photos_triton.triton.answers import Answers, split_outputs
from mt_photos_triton.triton.parameters import ConfigError, ModelConfig
from mt_photos_triton.triton.python_backend import input_array, numpy_dtype, respond

DEFAULT_MODEL_FILENAME = "model.onnx"
THREAD_PARAMETERS = {"intra_op_thread_count": "intra_op_num_threads", "inter_op_thread_count": "inter_op_num_threads"}
# the native backend's memory parameters (onnxruntime_backend README, "Model Config Options") and the
# SessionOptions attribute each sets
MEMORY_PARAMETERS = {"enable_mem_arena": "enable_cpu_mem_arena", "enable_mem_pattern": "enable_mem_pattern"}
ARENA_SHRINKAGE = "memory.enable_memory_arena_shrinkage"
MAX_NICE = 19


def release_freed_heap() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim; nothing where the C library lacks it).

    Making a session parses the whole model file and copies each initializer out of it; the parsed copy is freed
    afterwards, but glibc keeps freed heap pages mapped: a 174 MB IResNet-50 left its stub at 488 MiB, 175 MiB
    after malloc_trim(0) (measured with onnxruntime 1.32). Called once, after loading: no cost per request."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return
    if trim is not None:
        trim(0)


def flag(model: str, parameter: str, value: str) -> bool:
    """A "0"/"1" parameter, as the native backend reads it."""
    if value not in ("0", "1"):
        raise ConfigError(f"{model}: parameter {parameter} is {value!r}, expected \"0\" or \"1\"")
    return value == "1"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime as ort

        model = ModelConfig.from_args(args)
        config = model.config
        self.name = model.name
        self.max_batch_size = int(config.get("max_batch_size", 0))
        path = model.version_dir / (config.get("default_model_filename") or DEFAULT_MODEL_FILENAME)
        if not path.is_file():
            raise ConfigError(f"{self.name}: model file {path} not found")

        options = ort.SessionOptions()
        for parameter, attribute in THREAD_PARAMETERS.items():
            value = model.optional(parameter)
            if value is not None:
                setattr(options, attribute, int(value))
        for parameter, attribute in MEMORY_PARAMETERS.items():
            value = model.optional(parameter)
            if value is not None:
                setattr(options, attribute, flag(self.name, parameter, value))
        self.run_options = None
        shrinkage = model.optional(ARENA_SHRINKAGE)
        if shrinkage:
            self.run_options = ort.RunOptions()
            self.run_options.add_run_config_entry(ARENA_SHRINKAGE, shrinkage)
        niceness = model.optional("nice")
        if niceness:
            if not niceness.isdigit() or not 0 <= int(niceness) <= MAX_NICE:
                raise ConfigError(f"{self.name}: parameter nice is {niceness!r}, expected 0 to {MAX_NICE}")
            os.nice(int(niceness))  # before the session: its pool threads inherit the calling thread's niceness
        # Pool threads spin between operators and, by default, on after a run too; with several model processes
        # sharing few cores (the embedded server's case) that idle spinning burns the cores the busy model needs.
        # So they do not spin unless `allow_spinning` is "1", and then only during a run (force_spinning_stop):
        # a ViT-B/32 run followed by 40 ms of idle costs 153 ms of CPU when the threads spin on, 116 ms when they
        # stop. (A lone run is faster spinning with onnxruntime 1.32, 44 vs 56 ms for ViT-B/32 on 2 threads; with
        # 1.31 it took as long either way: export/clip_configs.py.)
        spinning = model.optional("allow_spinning") or "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        options.add_session_config_entry("session.force_spinning_stop", "1")
        providers = session_providers(
            config,
            args.get("model_instance_kind", "CPU"),
            int(args.get("model_instance_device_id", 0) or 0),
            ort.get_available_providers(),
        )
        self.session = ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=[name for name, _ in providers],
            provider_options=[opts for _, opts in providers],
        )
        release_freed_heap()

        graph_inputs = {i.name for i in self.session.get_inputs()}
        graph_outputs = {o.name for o in self.session.get_outputs()}
        self.inputs = [(i["name"], numpy_dtype(i["data_type"]), [int(d) for d in i["dims"]]) for i in config["input"]]
        self.outputs = [(o["name"], numpy_dtype(o["data_type"])) for o in config["output"]]
        missing = [n for n, *_ in self.inputs if n not in graph_inputs] + [
            n for n, _ in self.outputs if n not in graph_outputs
        ]
        if missing:
            raise ConfigError(
                f"{self.name}: config names {missing} are not in the graph "
                f"(inputs {sorted(graph_inputs)}, outputs {sorted(graph_outputs)})"
            )

    def _check(self, request: Any) -> dict[str, np.ndarray]:
        """This request's inputs as arrays, or PipelineError (invalid_input) saying what is wrong with them."""
        arrays = {}
        batched = self.max_batch_size > 0
        for name, dtype, dims in self.inputs:
            array = input_array(request, name)
            if array.dtype != dtype:
                raise PipelineError(INVALID_INPUT, f"input '{name}' has dtype {array.dtype}, expected {dtype}")
            shape = array.shape[1:] if batched else array.shape
            if len(shape) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, shape)):
                detail = f"input '{name}' has shape {list(array.shape)}, expected dims {dims}"
                raise PipelineError(INVALID_INPUT, detail)
            if batched and not 0 < array.shape[0] <= self.max_batch_size:
                raise PipelineError(
                    INVALID_INPUT, f"input '{name}' has batch {array.shape[0]}, allowed 1..{self.max_batch_size}"
                )
            arrays[name] = array
        return arrays

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [name for name, _ in self.outputs]
        results = self.session.run(names, feeds, self.run_options)
        return {name: np.ascontiguousarray(r, dtype=dtype) for r, (name, dtype) in zip(results, self.outputs)}

    def _signature(self, index: int, arrays: dict[str, np.ndarray]) -> tuple:
        """Requests of one signature share a run: with a batch axis, those whose other dims agree."""
        if self.max_batch_size > 0:
            return tuple((name, array.shape[1:]) for name, array in arrays.items())
        return ("request", index)

    def execute(self, requests: list[Any]) -> list[Any]:
        answers = Answers(self.name, len(requests))
        checked = answers.read(requests, self._check)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, arrays in checked.items():
            groups[self._signature(index, arrays)].append(index)
        for members in groups.values():
            with answers.guard(members):
                if len(members) == 1:
                    answers.give(members[0], self._run(checked[members[0]]))
                    continue
                feeds = {name: np.concatenate([checked[i][name] for i in members]) for name, *_ in self.inputs}
                sizes = [len(next(iter(checked[i].values()))) for i in members]
                for index, outputs in zip(members, split_outputs(self._run(feeds), sizes)):
                    answers.give(index, outputs)
        return respond(answers)
