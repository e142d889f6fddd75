"""The quick trainer's classifier head: a multinomial logistic regression on embeddings, and its
ONNX form appended to the embedding model's graph.

A head is fitted on L2-normalised embeddings (the form ``inference.embeddings`` stores) after
standardising each dimension; the standardisation is folded into the weights, so the head is
one affine map ``logits = x W^T + b`` followed by a softmax. Its ONNX form repeats the L2
normalisation on the model's raw ``embedding`` output, so the composed model scores an image
exactly as scikit-learn scores that image's stored embedding (up to float16 storage).

The head is written with ``onnx.helper`` (six standard operators) rather than converted with
skl2onnx: the graph is small enough to state directly, it needs no extra dependency, and the
folded weights are the single source of truth for both numpy and ONNX scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

HEAD_OUTPUT = "probabilities"
# Below this the embedding is treated as zero length (it never is for a real image): the
# normalisation divides by at least this instead of producing NaN.
NORM_EPSILON = 1e-12
PREFIX = "loupe_head"


class HeadError(Exception):
    """The head cannot be fitted or exported as asked; the message says why."""


@dataclass(frozen=True)
class Head:
    """A fitted head: ``softmax(x W^T + b)`` on L2-normalised embeddings ``x``.

    ``weight`` is (classes, dims) and ``bias`` (classes,), float64, standardisation folded in.
    ``classes`` are the output indices the labels were given as, in output order.
    """

    weight: np.ndarray
    bias: np.ndarray
    iterations: int = 0
    converged: bool = True

    @property
    def class_count(self) -> int:
        return int(self.weight.shape[0])

    @property
    def dims(self) -> int:
        return int(self.weight.shape[1])

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.weight.T + self.bias

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = self.logits(features)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


def l2_normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.sqrt((features.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
    return (features / np.maximum(norms, NORM_EPSILON)).astype(np.float32)


def pipeline_make(*, C: float, max_iter: int) -> Any:
    """The scikit-learn estimator a head is fitted as (kept for parity checks)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # lbfgs fits the multinomial (softmax) loss whenever there are three or more classes.
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, tol=1e-4))


def head_fit(
    *,
    features: np.ndarray,
    labels: np.ndarray,
    class_count: int,
    C: float = 1.0,
    max_iter: int = 300,
) -> tuple[Head, Any]:
    """Fit a head on ``features`` (n x d, L2-normalised) with output indices ``labels``
    (0 … class_count-1). Classes absent from ``labels`` get weight 0 and a bias far below
    the others, so they are never predicted. Returns the head and the fitted pipeline."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels):
        raise HeadError("There are no training images.")
    present = np.unique(labels)
    if len(present) < 2:
        raise HeadError("Training needs images of at least two classes.")
    if not (present[0] >= 0 and present[-1] < class_count):
        raise HeadError("A label is outside the label map.")
    if not C > 0:
        raise HeadError("The regularisation C must be above 0.")
    pipeline = pipeline_make(C=C, max_iter=max_iter)
    # One BLAS thread: the fit's matrices are small, and with the cores shared (decoding,
    # inference, other workers) multi-threaded BLAS spins; measured 5-30x slower under load.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(np.asarray(features, dtype=np.float32), labels)
    scaler, model = pipeline[0], pipeline[-1]
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # two classes: sigmoid(z) is softmax([0, z])
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    # logits = ((x - mean) / scale) . coef + intercept = x . (coef / scale) + folded bias
    folded = coef / np.asarray(scaler.scale_, dtype=np.float64)
    bias = intercept - folded @ np.asarray(scaler.mean_, dtype=np.float64)
    weight = np.zeros((class_count, folded.shape[1]), dtype=np.float64)
    full_bias = np.full(class_count, -1e4, dtype=np.float64)
    weight[present] = folded
    full_bias[present] = bias
    iterations = int(np.max(model.n_iter_))
    return (
        Head(
            weight=weight,
            bias=full_bias,
            iterations=iterations,
            converged=iterations < max_iter,
        ),
        pipeline,
    )


# --- ONNX -----------------------------------------------------------------------------------


def _head_nodes(head: Head, source: str, output: str) -> tuple[list[Any], list[Any]]:
    """Nodes and initialisers: L2-normalise ``source``, then Gemm and Softmax into
    ``output``. Only operators whose meaning is the same in every opset from 13 on."""
    from onnx import helper, numpy_helper

    def name(part: str) -> str:
        return f"{PREFIX}/{part}"

    initializers = [
        numpy_helper.from_array(np.ones((head.dims, 1), np.float32), name("ones")),
        numpy_helper.from_array(np.array(NORM_EPSILON**2, np.float32), name("epsilon")),
        numpy_helper.from_array(head.weight.astype(np.float32), name("weight")),
        numpy_helper.from_array(head.bias.astype(np.float32), name("bias")),
    ]
    nodes = [
        helper.make_node("Mul", [source, source], [name("squares")]),
        helper.make_node("MatMul", [name("squares"), name("ones")], [name("sum_squares")]),
        helper.make_node("Max", [name("sum_squares"), name("epsilon")], [name("clamped")]),
        helper.make_node("Sqrt", [name("clamped")], [name("norm")]),
        helper.make_node("Div", [source, name("norm")], [name("normalised")]),
        helper.make_node(
            "Gemm", [name("normalised"), name("weight"), name("bias")], [name("logits")], transB=1
        ),
        helper.make_node("Softmax", [name("logits")], [output], axis=1),
    ]
    return nodes, initializers


def head_onnx(head: Head, *, opset: int = 13) -> bytes:
    """The head alone: input ``embedding`` (N x dims, raw), output ``probabilities``."""
    import onnx
    from onnx import TensorProto, helper

    nodes, initializers = _head_nodes(head, "embedding", HEAD_OUTPUT)
    graph = helper.make_graph(
        nodes,
        "loupe_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", head.dims])],
        [helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["N", head.class_count])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def compose(*, embedding_model: bytes, embedding_output: str, head: Head, doc: str = "") -> bytes:
    """One ONNX model: the embedding model's graph up to ``embedding_output`` (everything else,
    such as its own classifier, is pruned), the head appended on it. Outputs
    ``probabilities`` (N x classes) first, then the raw embedding under its own name, so the
    result is an embedding model too."""
    import onnx
    from onnx import TensorProto, helper, utils

    model = onnx.load_model_from_string(embedding_model)
    initializer_names = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializer_names]
    if len(inputs) != 1:
        raise HeadError("The embedding model must take exactly one input.")
    if embedding_output not in {o.name for o in model.graph.output}:
        raise HeadError(f"The embedding model has no output named {embedding_output!r}.")
    base = utils.Extractor(model).extract_model(inputs, [embedding_output])
    taken = {name for node in base.graph.node for name in (*node.input, *node.output)}
    if HEAD_OUTPUT in taken or any(name.startswith(f"{PREFIX}/") for name in taken):
        raise HeadError(f"The embedding model already names a tensor {HEAD_OUTPUT!r}.")
    embedding_info = next(o for o in base.graph.output if o.name == embedding_output)
    dims = [
        d.dim_value if d.HasField("dim_value") else None
        for d in embedding_info.type.tensor_type.shape.dim
    ]
    if len(dims) != 2 or (dims[1] is not None and dims[1] != head.dims):
        raise HeadError(
            f"The embedding output has shape {dims}; the head expects (N, {head.dims})."
        )
    opset = next((o.version for o in base.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset < 13:
        raise HeadError(f"The embedding model uses opset {opset}; the head needs 13 or later.")
    nodes, initializers = _head_nodes(head, embedding_output, HEAD_OUTPUT)
    base.graph.node.extend(nodes)
    base.graph.initializer.extend(initializers)
    outputs = [
        helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["N", head.class_count]),
        embedding_info,
    ]
    del base.graph.output[:]
    base.graph.output.extend(outputs)
    base.graph.name = f"{base.graph.name or 'model'}_with_head"
    base.producer_name = "loupe"
    base.doc_string = doc or "Embedding model with a logistic-regression head (Loupe quick trainer)"
    onnx.checker.check_model(base)
    return bytes(base.SerializeToString())


def top_k_accuracy(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray, k: int) -> float:
    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels):
        return 0.0
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())
