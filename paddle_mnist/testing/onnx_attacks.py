"""Crafted ONNX exports planted in a run directory with a record that matches its weights, as someone handing
over a run could: each is a graph a real export never is (issue 30, case 5).  ``plant`` writes one."""

from __future__ import annotations

import json
from pathlib import Path

from paddle_mnist import engines, rundir
from paddle_mnist.fileio import file_sha256


def _model(nodes, inputs, outputs, initializers=()) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, "attack", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _tensor(name, dims, kind="FLOAT"):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, getattr(TensorProto, kind), dims)


def _ints(name, values):
    from onnx import TensorProto, helper

    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _to_head(source: str, width: int = 10) -> list:
    """Nodes from ``source`` (any float tensor of N rows) to the output ``out`` [N, width]: flatten, then slice."""
    from onnx import helper

    return [
        helper.make_node("Reshape", [source, "flat"], ["flattened"]),
        helper.make_node("Slice", ["flattened", "zero", "width", "axis1"], ["out"]),
    ]


def _head_constants(width: int = 10) -> list:
    return [_ints("flat", [0, -1]), _ints("zero", [0]), _ints("width", [width]), _ints("axis1", [1])]


IMAGE = ("image", ["N", 1, 28, 28])


def endless_loop() -> bytes:
    """A ``Loop`` of 2^62 trips around the image."""
    from onnx import helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["x_in"], ["x_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [_tensor("i", [], "INT64"), _tensor("cond_in", [], "BOOL"), _tensor("x_in", IMAGE[1])],
        [_tensor("cond_out", [], "BOOL"), _tensor("x_out", IMAGE[1])],
    )
    from onnx import TensorProto

    loop = helper.make_node("Loop", ["trips", "go", "image"], ["looped"], body=body)
    constants = [
        helper.make_tensor("trips", TensorProto.INT64, [], [1 << 62]),
        helper.make_tensor("go", TensorProto.BOOL, [], [True]),
    ]
    return _model(
        [loop, *_to_head("looped")], [_tensor(*IMAGE)], [_tensor("out", ["N", 10])], constants + _head_constants()
    )


def constant_of_shape() -> bytes:
    """455 bytes that ask for a 2.2 GB tensor at run time, added to the output."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"]),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Add", ["image", "total"], ["sum"]),
        *_to_head("sum"),
    ]
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [24_000, 24_000])
    return _model(nodes, [_tensor(*IMAGE)], [_tensor("out", ["N", 10])], [shape, *_head_constants()])


def doubling() -> bytes:
    """Only operators a real export has, but the image concatenated with itself 30 times: 2^30 copies."""
    from onnx import helper

    nodes = [helper.make_node("Reshape", ["image", "flat"], ["x0"])]
    nodes += [helper.make_node("Concat", [f"x{i}", f"x{i}"], [f"x{i + 1}"], axis=1) for i in range(30)]
    nodes.append(helper.make_node("Slice", ["x30", "zero", "width", "axis1"], ["out"]))
    return _model(nodes, [_tensor(*IMAGE)], [_tensor("out", ["N", 10])], _head_constants())


def wrong_input() -> bytes:
    """A [N,3,32,32] input (a CIFAR network's)."""
    return _model(
        _to_head("image"), [_tensor("image", ["N", 3, 32, 32])], [_tensor("out", ["N", 10])], _head_constants()
    )


def rank_one_output() -> bytes:
    from onnx import helper

    nodes = [helper.make_node("Reshape", ["image", "all"], ["out"])]
    return _model(nodes, [_tensor(*IMAGE)], [_tensor("out", ["M"])], [_ints("all", [-1])])


def thousand_classes() -> bytes:
    return _model(_to_head("image", 1000), [_tensor(*IMAGE)], [_tensor("out", ["N", 1000])], _head_constants(1000))


def not_a_number() -> bytes:
    """The image plus NaN: every output NaN."""
    from onnx import TensorProto, helper

    nan = helper.make_tensor("nan", TensorProto.FLOAT, [1], [float("nan")])
    nodes = [helper.make_node("Add", ["image", "nan"], ["sum"]), *_to_head("sum")]
    return _model(nodes, [_tensor(*IMAGE)], [_tensor("out", ["N", 10])], [nan, *_head_constants()])


ATTACKS = {
    "a Loop of 2^62 trips": endless_loop,
    "ConstantOfShape of 2.2 GB": constant_of_shape,
    "the image concatenated 2^30 times": doubling,
    "a [N,3,32,32] input": wrong_input,
    "a rank-1 output": rank_one_output,
    "1,000 classes": thousand_classes,
    "NaN outputs": not_a_number,
}


def plant(run_dir: Path, model: bytes) -> Path:
    """``model`` as the run's ONNX export, with a record that matches the run's best weights."""
    info = rundir.read(run_dir)
    model_file = engines.onnx_path(run_dir / rundir.INFERENCE_PREFIX)
    model_file.parent.mkdir(parents=True, exist_ok=True)
    model_file.write_bytes(model)
    record = {
        "weights_sha256": info.files[info.file_names["best"]],
        "model_sha256": file_sha256(model_file),
        "difference": 0.0,
        "paddle_version": "3.3.1",
        "format": engines.RECORD_FORMAT,
    }
    engines.record_path(model_file).write_text(json.dumps(record))
    return model_file
