"""`mt-photos-triton export clip` on small stand-ins: sources, batch rewrite, fallback, idempotency, configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import export.clip as clip_export
from export import record
from export.batch_layout import Batched, free_folded_batch, locate_batch
from export.batching import BatchRewriteError
from export.common import ExportError
from export.sources import sha256_file
from mt_photos_triton.reference.clip_standins import (
    TORCH_MHA,
    StandInSpec,
    TowerSize,
    _GraphBuilder,
    build_visual,
    write_immich_layout,
)
from mt_photos_triton.repository import read_config, scan

SMALL = StandInSpec()
# open_clip's visual attention as torch traces it: the batch folded into [seq, batch*heads, head_dim] and co.
TORCH_MHA_SPEC = StandInSpec(visual=TowerSize(32, 2, 4, TORCH_MHA))
COMMITTED_FOR_CORES = 2  # model_repository/ holds what export writes for the default model on a 2-core machine


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_immich_layout(tmp_path_factory.mktemp("clip") / "stand-in", SMALL)


def test_model_table_is_immichs() -> None:
    assert len(clip_export.MODEL_DIMS) == 58
    assert set(clip_export.MODEL_DIMS.values()) == {512, 640, 768, 1024, 1152, 1536}
    assert clip_export.MODEL_DIMS[clip_export.DEFAULT_MODEL] == 512
    assert clip_export.MCLIP_MODELS <= set(clip_export.MODEL_DIMS)


def test_static_batch_graph_gets_a_verified_batch_axis(layout: Path) -> None:
    original = onnx.load(str(layout / "visual" / "model.onnx"))
    feeds = {"image": np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)}
    with pytest.raises(Exception):  # as immich ships it, the graph refuses a batch
        ort.InferenceSession(original.SerializeToString()).run(None, feeds)
    batched, line = clip_export.make_batchable(original, feeds, "visual")
    print(f"\n{line}")
    assert batched is not None and "batch axis added" in line
    session = ort.InferenceSession(batched.SerializeToString())
    together = session.run(None, feeds)[0]
    single = ort.InferenceSession(original.SerializeToString())
    alone = np.concatenate([single.run(None, {"image": feeds["image"][i : i + 1]})[0] for i in range(3)])
    assert np.abs(together - alone).max() <= 1e-5
    assert batched.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def _batch_one_runs(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    single = ort.InferenceSession(model.SerializeToString())
    name = single.get_inputs()[0].name
    return np.concatenate([single.run(None, {name: images[i : i + 1]})[0] for i in range(len(images))])


def _class_token_folded(model: onnx.ModelProto) -> None:
    """The class token's Expand computed once into a [1, 1, width] constant (an exporter's constant folding)."""
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    expand = next(n for n in model.graph.node if n.op_type == "Expand")
    token = np.broadcast_to(constants[expand.input[0]], constants[expand.input[1]]).copy()
    model.graph.initializer.append(numpy_helper.from_array(token, expand.output[0]))
    model.graph.node.remove(expand)


def packed_attention_visual(path: Path, width: int = 32, heads: int = 4, layers: int = 2) -> None:
    """A ViT written the way torch 2's exporter writes open_clip's (F.multi_head_attention_forward with a packed
    in-projection, scaled_dot_product_attention's scale read from Shape, the out-projection a Gemm on
    [seq*batch, width]; LayerNorm and GELU decomposed), batch frozen to 1: more operators for the layout rules
    than the stand-in's attention."""
    g = _GraphBuilder(np.random.default_rng(0))
    image, patch, tokens, head_dim = 32, 8, 17, width // heads

    def norm(x: str) -> str:
        centred = g.op("Sub", [x, g.op("ReduceMean", [x], axes=[-1], keepdims=1)])
        variance = g.op("ReduceMean", [g.op("Pow", [centred, g.const(np.array(2.0, np.float32))])], axes=[-1])
        root = g.op("Sqrt", [g.op("Add", [variance, g.const(np.array(1e-5, np.float32))])])
        return g.op("Add", [g.op("Mul", [g.op("Div", [centred, root]), g.weight(width, scale=1.0)]), g.weight(width)])

    x = g.op("Conv", ["image", g.weight(width, 3, patch, patch)], strides=[patch] * 2)
    x = g.op("Transpose", [g.op("Reshape", [x, g.shape(1, width, tokens - 1)])], perm=[0, 2, 1])
    token = g.op("Expand", [g.op("Reshape", [g.weight(width), g.shape(1, 1, -1)]), g.shape(1, 1, 1)])
    x = g.op("Transpose", [norm(g.op("Add", [g.op("Concat", [token, x], axis=1), g.weight(tokens, width)]))],
             perm=[1, 0, 2])
    for _ in range(layers):
        packed = g.op("Reshape", [g.linear(norm(x), width, 3 * width), g.shape(tokens, 1, 3, width)])
        packed = g.op("Unsqueeze", [packed, g.const(np.array([0], np.int64))])
        packed = g.op("Transpose", [packed], perm=[3, 1, 2, 0, 4])
        packed = g.op("Squeeze", [packed, g.const(np.array([-2], np.int64))])  # [3, seq, batch, width]
        q, k, v = (g.op("Reshape", [g.op("Transpose", [g.op("Reshape", [
            g.op("Gather", [packed, g.const(np.array(i, np.int64))], axis=0), g.shape(tokens, heads, head_dim)])],
            perm=[1, 0, 2]), g.shape(1, heads, tokens, head_dim)]) for i in range(3))
        last = g.op("Slice", [g.op("Shape", [q]), g.const(np.array([-1], np.int64)),
                              g.const(np.array([2**63 - 1], np.int64))])
        root = g.op("Sqrt", [g.op("Div", [g.const(np.array([1.0], np.float32)),
                                          g.op("Sqrt", [g.op("Cast", [last], to=TensorProto.FLOAT)])])])
        k = g.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = g.op("MatMul", [g.op("Mul", [q, root]), g.op("Mul", [k, root])])
        out = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        out = g.op("Reshape", [g.op("Transpose", [out], perm=[2, 0, 1, 3]), g.shape(tokens, width)])
        out = g.op("Gemm", [out, g.weight(width, width), g.weight(width)], transB=1)
        x = g.op("Add", [x, g.op("Reshape", [out, g.shape(tokens, 1, width)])])
        h = g.linear(norm(x), width, 4 * width)
        erf = g.op("Erf", [g.op("Div", [h, g.const(np.array(2**0.5, np.float32))])])
        gelu = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.const(np.array(1.0, np.float32))])]),
                            g.const(np.array(0.5, np.float32))])
        x = g.op("Add", [x, g.linear(gelu, 4 * width, width)])
    pooled = norm(g.op("Gather", [g.op("Transpose", [x], perm=[1, 0, 2]), g.const(np.array(0, np.int64))], axis=1))
    g.op("MatMul", [pooled, g.weight(width, TORCH_MHA_SPEC.embed_dim)], output="embedding")
    g.save(path, [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, image, image])],
           [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, TORCH_MHA_SPEC.embed_dim])], "packed")


@pytest.mark.parametrize("graph", ["stand-in", "constant-class-token", "packed-projection"])
def test_torch_attention_graph_gets_a_true_batch_axis(tmp_path: Path, graph: str) -> None:
    path = tmp_path / "visual.onnx"
    if graph == "packed-projection":
        packed_attention_visual(path)
    else:
        build_visual(path, TORCH_MHA_SPEC)
    original = onnx.load(str(path))
    if graph == "constant-class-token":
        _class_token_folded(original)
    shipped = onnx.ModelProto()
    shipped.CopyFrom(original)
    images = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    batched, line = clip_export.make_batchable(original, {"image": images}, "visual")
    print(f"\n{line}")
    assert batched is not None and "batch axis added (Reshape targets follow the batch" in line
    assert not any(n.op_type == "Scan" for n in batched.graph.node)
    session = ort.InferenceSession(batched.SerializeToString())
    for count in (3, 2, 1):
        fresh = np.random.default_rng(count).normal(size=(count, 3, 32, 32)).astype(np.float32)
        for feed in (images[:count], fresh):
            together = session.run(None, {"image": feed})[0]
            assert together.shape == (count, TORCH_MHA_SPEC.embed_dim)
            assert np.abs(together - _batch_one_runs(shipped, feed)).max() <= 1e-5


def test_batch_is_located_where_torch_folds_it(tmp_path: Path) -> None:
    """Each Reshape target of torch's attention gets its batch on the axis torch's own view() puts it."""
    path = tmp_path / "visual.onnx"
    build_visual(path, TORCH_MHA_SPEC)
    model = onnx.load(str(path))
    clip_export.follow_batch_in_expands(model)
    states, shapes = locate_batch(model)
    tokens, heads, width = (TORCH_MHA_SPEC.image_size // TORCH_MHA_SPEC.patch_size) ** 2 + 1, 4, 32
    expected = {  # batch-1 target -> where the batch goes
        (1, width, tokens - 1): Batched(0, 1),  # patches [batch, width, grid*grid]
        (tokens, heads, width // heads): Batched(1, heads),  # [seq, batch*heads, head_dim]
        (1, heads, tokens, width // heads): Batched(0, 1),  # [batch, heads, seq, head_dim]
        (tokens, width): Batched(0, 1),  # [seq*batch, width]
        (tokens, 1, width): Batched(1, 1),  # [seq, batch, width]
    }
    found = {tuple(shapes[n.output[0]]): states[n.output[0]] for n in model.graph.node if n.op_type == "Reshape"}
    assert found == expected


def _folded_batch_model(opset: int) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Reshape", ["input.1", "fold"], ["folded"]),
        helper.make_node("Softmax", ["folded"], ["weights"], axis=0),
        helper.make_node("Mul", ["folded", "weights"], ["weighted"]),
        helper.make_node("ReduceMean", ["weighted"], ["means"], axes=[1], keepdims=0),
        helper.make_node("Reshape", ["means", "row"], ["row_means"]),
        helper.make_node("MatMul", ["row_means", "proj"], ["raw"]),
        helper.make_node("ReduceL2", ["raw"], ["norm"], axes=[-1], keepdims=1),
        helper.make_node("Div", ["raw", "norm"], ["out"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([3, 1024], np.int64), "fold"),
        numpy_helper.from_array(np.array([1, 3], np.int64), "row"),
        numpy_helper.from_array(np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32), "proj"),
    ]
    graph = helper.make_graph(
        nodes, "folded", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def folded_batch_visual(path: Path, opset: int = 17) -> None:
    """A graph whose batch is folded into an axis it then normalises over ([3, 1024] = [batch*3, 1024], a softmax
    across the 3 channels): no rewrite of its constants can give it a batch axis, only the Scan over items."""
    onnx.save(_folded_batch_model(opset), str(path))


def test_layout_rewrite_refuses_a_batch_it_cannot_follow() -> None:
    with pytest.raises(BatchRewriteError, match="Softmax .*normalises over the batch axis"):
        free_folded_batch(_folded_batch_model(17))


def test_folded_batch_graph_is_wrapped_in_a_scan(layout: Path, tmp_path: Path) -> None:
    source = tmp_path / "folded"
    shutil.copytree(layout, source)
    folded_batch_visual(source / "visual" / "model.onnx")
    repository = tmp_path / "repository"
    result = clip_export.export(repository, None, str(source), force=False)
    print("\n" + result.summary())
    assert any("visual: constants pin the batch" in n and "layout: Softmax" in n and "Scan" in n for n in result.notes)
    assert read_config(repository / "clip_visual").max_batch_size == clip_export.MAX_BATCH
    written = ort.InferenceSession(str(repository / "clip_visual" / "1" / "model.onnx"))
    shipped = ort.InferenceSession(str(source / "visual" / "model.onnx"))
    images = np.random.default_rng(2).normal(size=(4, 3, 32, 32)).astype(np.float32)
    together = written.run(None, {"image": images})[0]
    alone = np.concatenate([shipped.run(None, {"input.1": images[i : i + 1]})[0] for i in range(4)])
    assert together.shape == (4, 16) and np.abs(together - alone).max() <= 1e-6


def test_graph_neither_rewrite_handles_is_served_with_a_batch_of_one(layout: Path, tmp_path: Path) -> None:
    source = tmp_path / "folded-old-opset"
    shutil.copytree(layout, source)
    folded_batch_visual(source / "visual" / "model.onnx", opset=11)  # too old for the Scan wrap
    repository = tmp_path / "repository"
    result = clip_export.export(repository, None, str(source), force=False)
    print("\n" + result.summary())
    assert any("visual: no batch axis" in n and "served with a batch of 1" in n for n in result.notes)
    assert read_config(repository / "clip_visual").max_batch_size == 1
    assert read_config(repository / "clip_image").max_batch_size == 1
    assert read_config(repository / "clip_textual").max_batch_size == clip_export.MAX_BATCH
    # graph tensors carry the names the config uses, even when the file is otherwise unchanged
    written = onnx.load(str(repository / "clip_visual" / "1" / "model.onnx"))
    assert [i.name for i in written.graph.input] == ["image"]


def test_local_export_writes_everything_and_is_idempotent(layout: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    result = clip_export.export(repository, None, str(layout), force=False)
    assert not result.skipped and sorted(result.written) == sorted(clip_export.CLIP_MODELS)
    statuses = scan(repository)
    assert all(statuses[name].loadable for name in clip_export.CLIP_MODELS if name in statuses), statuses
    assert list(read_config(repository / "clip_image").output[0].dims) == [SMALL.embed_dim]
    preprocess = read_config(repository / "clip_image_preprocess")
    assert list(preprocess.output[0].dims) == [3, 32, 32]
    assert preprocess.parameters["mean"].string_value == "0.48145466,0.4578275,0.40821073"
    manifest = json.loads(record.record_path(repository, "clip").read_text())
    assert manifest["source_sha256"]["visual/model.onnx"] == sha256_file(layout / "visual" / "model.onnx")

    assert clip_export.export(repository, None, str(layout), force=False).skipped
    (repository / "clip_textual" / "1" / "model.onnx").write_bytes(b"tampered")
    assert not clip_export.export(repository, None, str(layout), force=False).skipped
    assert clip_export.export(repository, None, str(layout), force=True).written


def test_tokenizer_sidecar_makes_the_tokenize_model_loadable(layout: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(Path(__file__).resolve().parents[3] / "model_repository", repository)
    assert "tokenizer.json" in (scan(repository)["clip_tokenize"].missing or "")
    clip_export.export(repository, None, str(layout), force=False)
    assert scan(repository)["clip_tokenize"].loadable and scan(repository)["clip_text"].loadable


def test_known_name_with_other_dimension_is_refused(layout: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="should give 512-d"):
        clip_export.export(tmp_path / "r", "ViT-B-32__openai", str(layout), force=False)


def test_unknown_name_without_source_lists_the_names(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k"):
        clip_export.export(tmp_path / "r", "no-such-model", None, force=False)


class FakeHub:
    """huggingface_hub's HfApi and snapshot_download, serving a local directory; records what it was asked."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, layout: Path) -> None:
        self.layout = layout
        self.calls: list[dict] = []

    def api(self, endpoint: str) -> "FakeHub":
        self.calls.append({"api_endpoint": endpoint})
        return self

    def model_info(self, repo_id: str, revision: str) -> object:
        self.calls.append({"info": repo_id, "revision": revision})
        return type("Info", (), {"sha": self.COMMIT})()

    def snapshot_download(self, repo_id: str, revision: str, allow_patterns: list[str], local_dir: Path, endpoint: str) -> str:
        self.calls.append({"download": repo_id, "revision": revision, "endpoint": endpoint, "patterns": allow_patterns})
        shutil.copytree(self.layout, local_dir, dirs_exist_ok=True)
        return str(local_dir)


def test_hugging_face_source_honours_the_mirror_and_pins_the_commit(
    layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    hub = FakeHub(layout)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda endpoint: hub.api(endpoint))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example")
    monkeypatch.setenv("MT_PHOTOS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(clip_export, "MODEL_DIMS", {**clip_export.MODEL_DIMS, "tiny-test__model": SMALL.embed_dim})
    repository = tmp_path / "repository"
    clip_export.export(repository, "tiny-test__model", None, force=False)
    download = next(c for c in hub.calls if "download" in c)
    assert download["download"] == "immich-app/tiny-test__model"
    assert download["endpoint"] == "https://hf-mirror.example"
    assert download["revision"] == FakeHub.COMMIT
    assert "visual/model.onnx" in download["patterns"] and "textual/tokenizer.json" in download["patterns"]
    assert {"api_endpoint": "https://hf-mirror.example"} in hub.calls
    manifest = json.loads(record.record_path(repository, "clip").read_text())
    assert manifest["details"]["revision"] == FakeHub.COMMIT
    assert manifest["source"] == "https://hf-mirror.example/immich-app/tiny-test__model"
    assert len(manifest["source_sha256"]["textual/model.onnx"]) == 64


def test_unreachable_hub_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def refuse(endpoint: str) -> object:
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "HfApi", refuse)
    with pytest.raises(ExportError, match="HF_ENDPOINT"):
        clip_export.export(tmp_path / "r", clip_export.DEFAULT_MODEL, None, force=False)


def test_committed_configs_are_what_export_writes_for_the_default_model(tmp_path: Path) -> None:
    from mt_photos_triton.reference.clip_standins import CLIP_MEAN, CLIP_STD
    from export.configs import write_config

    committed = Path(__file__).resolve().parents[3] / "model_repository"
    default = clip_export.Contract(
        name=clip_export.DEFAULT_MODEL, image_size=224, mean=list(CLIP_MEAN), std=list(CLIP_STD), context_length=77,
        pad_token="<pad>", canonicalize=False, text_inputs=clip_export.SINGLE_TEXT_INPUTS, dim=512,
    )
    for name, config in clip_export.build_configs(default, cores=COMMITTED_FOR_CORES).items():
        write_config(tmp_path / name, config)
        assert (tmp_path / name / "config.pbtxt").read_text() == (committed / name / "config.pbtxt").read_text(), name
