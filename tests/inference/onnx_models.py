"""Tiny ONNX classifiers with outputs known in advance, built with the onnx helper API."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def channel_means(
    *, size: int = 8, layout: str = "NCHW", domain: str = "", opset: int = 18
) -> onnx.ModelProto:
    """Outputs the mean of each input channel: three "class scores" that reveal exactly what
    the preprocessing fed the model."""
    shape = ["N", 3, size, size] if layout == "NCHW" else ["N", size, size, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    axes_tensor = numpy_helper.from_array(np.array(axes, np.int64), "axes")
    node = helper.make_node("ReduceMean", ["image", "axes"], ["scores"], keepdims=0)
    if domain:
        node = helper.make_node("ChannelMean", ["image", "axes"], ["scores"], domain=domain)
    graph = helper.make_graph(
        [node],
        "channel_means",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])],
        initializer=[axes_tensor],
    )
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def linear(*, classes: int, size: int = 8, seed: int = 0) -> onnx.ModelProto:
    """Global average pool then a fixed linear layer to ``classes`` logits, and the pooled
    vector as an "embedding" output."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(size=(3, classes)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(rng.normal(size=(classes,)).astype(np.float32), "bias")
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled4"]),
        helper.make_node("Flatten", ["pooled4"], ["embedding"]),
        helper.make_node("Gemm", ["embedding", "weight", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3]),
        ],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def to_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def labels(*names: str) -> bytes:
    return json.dumps(list(names)).encode()


def tiny_embedder() -> Any:
    """A registered model version whose 3-d "embedding" output is the mean colour (``linear``
    with three classes a, b, c)."""
    from inference.preprocessing import PreprocessSpec
    from inference.services import model_version_register

    return model_version_register(
        onnx_data=to_bytes(linear(classes=3)),
        labels=labels("a", "b", "c"),
        name="tiny embedder",
        actor=None,
        spec=PreprocessSpec(input_size=8),
        embedding_output="embedding",
    ).version
