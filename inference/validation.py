"""Checks an uploaded ONNX classifier and its label map before anything is stored."""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from inference.preprocessing import PreprocessSpec

# Operator sets that onnxruntime's default build implements. Custom domains would need a
# custom-op library loaded into the worker, which Loupe never does.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
MAX_LABELS = 100_000
MAX_LABEL_LENGTH = 500


class ModelRejected(Exception):
    """The model or label map cannot be used; the message says why, for the uploader."""

    @property
    def job_message(self) -> str:
        """What a validation job that refused the model says (``job_fail``)."""
        return f"Model refused: {self}"


@dataclass(frozen=True)
class CheckedModel:
    input_name: str
    output_name: str
    embedding_output: str
    class_count: int
    opset: int


def label_map_parse(data: bytes | str) -> list[str]:
    """A JSON list of distinct, non-empty class names (an object {"0": name, …} is accepted
    too, when its keys are exactly 0…n-1)."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelRejected(f"the label map is not valid JSON: {exc}") from None
    except RecursionError:
        raise ModelRejected("the label map is nested too deeply to be a list of names") from None
    if isinstance(parsed, dict):
        # Keys are the decimal indices as JSON writes them: "0", "1", … with no sign, padding
        # or spaces, so each index has one spelling.
        if sorted(parsed, key=lambda k: (len(k), k)) != [str(i) for i in range(len(parsed))]:
            raise ModelRejected('label map object keys must be exactly "0", "1", … "n-1"')
        parsed = [parsed[str(i)] for i in range(len(parsed))]
    if not isinstance(parsed, list) or not parsed:
        raise ModelRejected("the label map must be a non-empty JSON list of class names")
    if len(parsed) > MAX_LABELS:
        raise ModelRejected(f"the label map has {len(parsed):,} names; the limit is {MAX_LABELS:,}")
    names: list[str] = []
    for index, name in enumerate(parsed):
        if not isinstance(name, str) or not name.strip():
            raise ModelRejected(f"label {index} is not a non-empty string")
        if len(name) > MAX_LABEL_LENGTH:
            raise ModelRejected(f"label {index} is longer than {MAX_LABEL_LENGTH} characters")
        names.append(name.strip())
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise ModelRejected(f"label {index} ({name!r}) repeats label {seen[name]}")
        seen[name] = index
    return names


def model_size_check(size: int) -> None:
    """Refuse an empty ONNX file or one over ``LOUPE_MAX_MODEL_BYTES``."""
    limit: int = settings.LOUPE_MAX_MODEL_BYTES
    if size == 0:
        raise ModelRejected("the ONNX file is empty")
    if size > limit:
        raise ModelRejected(
            f"the ONNX file is {size:,} bytes; the limit is {limit:,} (LOUPE_MAX_MODEL_BYTES)"
        )


# --- The node cap, read from the wire format ----------------------------------------------
# Protobuf field numbers (onnx.proto3): the graph and the functions of a ModelProto, the nodes
# of a GraphProto and of a FunctionProto.
_MODEL_GRAPH = 7
_MODEL_FUNCTIONS = 25
_GRAPH_NODES = 1
_FUNCTION_NODES = 7
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ModelRejected("not an ONNX model: the file is truncated or not protobuf")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: memoryview) -> Any:
    """(field number, bytes of a length-delimited value or None) of each field of one
    protobuf message, without decoding the values."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ModelRejected("not an ONNX model: the file is not protobuf")
        if wire_type == _VARINT:
            _, at = _varint(data, at)
            yield number, None
        elif wire_type == _FIXED64:
            at += 8
            yield number, None
        elif wire_type == _FIXED32:
            at += 4
            yield number, None
        elif wire_type == _LENGTH_DELIMITED:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise ModelRejected("not an ONNX model: the file is truncated")
            yield number, data[at : at + length]
            at += length
        else:
            raise ModelRejected("not an ONNX model: the file is not ONNX protobuf")
        if at > len(data):
            raise ModelRejected("not an ONNX model: the file is truncated")


def node_count_check(data: bytes | mmap.mmap, *, limit: int | None = None) -> int:
    """Count the nodes of the main graph and of the model-local functions straight from the
    protobuf wire format, without building the model, and refuse a model over the cap.

    Costs one pass over the file's top-level fields and at most ``limit`` node headers (a
    fraction of a second at the default cap), so the web request can refuse a
    million-node model before anything loads it. Nodes nested in subgraphs (If, Loop, Scan)
    are counted by ``onnx_check`` once the model is loaded."""
    cap: int = settings.LOUPE_MAX_MODEL_NODES if limit is None else limit
    count, refusal = _node_count(data, cap)
    # Raised here, where no frame holds a view of ``data``: a memory-mapped upload can close.
    if refusal:
        raise ModelRejected(refusal)
    return count


def _node_count(data: bytes | mmap.mmap, cap: int) -> tuple[int, str]:
    count = 0
    graphs = 0
    try:
        for number, value in _fields(memoryview(data)):
            if value is None or number not in (_MODEL_GRAPH, _MODEL_FUNCTIONS):
                continue
            graphs += number == _MODEL_GRAPH
            wanted = _GRAPH_NODES if number == _MODEL_GRAPH else _FUNCTION_NODES
            for inner, _ in _fields(value):
                if inner == wanted:
                    count += 1
                    if count > cap:
                        return count, node_cap_message(f"more than {cap:,}", cap)
    except ModelRejected as exc:
        return count, str(exc)
    if not graphs:
        # Other bytes can read as protobuf by chance (a pickle does); an ONNX model has a graph.
        return count, "not an ONNX model: the file has no graph"
    return count, ""


def node_cap_message(count: str, cap: int) -> str:
    return (
        f"the model has {count} nodes; the limit is {cap:,} (LOUPE_MAX_MODEL_NODES). "
        "Image classifiers have a few hundred to a few thousand"
    )


def _static_dims(value_info: Any) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def onnx_check(
    *,
    data: bytes,
    labels: list[str],
    spec: PreprocessSpec,
    embedding_output: str = "",
    max_nodes: int | None = None,
) -> CheckedModel:
    """Validate a self-contained ONNX classifier against its label map and preprocessing.

    Refuses a model over the node cap (``max_nodes``, default ``LOUPE_MAX_MODEL_NODES``),
    runs the onnx checker, refuses external data and non-standard operator domains, checks the
    input shape against the spec, then runs one sample through onnxruntime and checks the
    output has one score per label. Runs in this process: for a file from outside Loupe, use
    ``onnx_check_isolated``, which bounds the memory and time it may take.
    """
    import onnx
    import onnxruntime as ort
    from onnx.external_data_helper import uses_external_data

    try:
        spec.check()
    except ValueError as exc:
        raise ModelRejected(f"preprocessing: {exc}") from None
    cap: int = settings.LOUPE_MAX_MODEL_NODES if max_nodes is None else max_nodes
    node_count_check(data, limit=cap)
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise ModelRejected(f"not an ONNX model: {exc}") from None
    nodes = _all_nodes(model)
    if len(nodes) > cap:
        raise ModelRejected(node_cap_message(f"{len(nodes):,}", cap))

    external = list(dict.fromkeys(t.name for t in _all_tensors(model) if uses_external_data(t)))
    if external:
        raise ModelRejected(
            "the model keeps weights in external data files "
            f"({', '.join(external[:3])}{' …' if len(external) > 3 else ''}); "
            "upload a self-contained .onnx file"
        )
    domains = {op.domain for op in model.opset_import} | {node.domain for node in nodes}
    unknown = sorted(d for d in domains if d not in STANDARD_DOMAINS)
    if unknown:
        raise ModelRejected(
            f"the model uses operators from non-standard domains: {', '.join(unknown)}"
        )
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise ModelRejected(f"the ONNX checker refused the model: {first_line}") from None

    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelRejected(f"the model must take exactly one image input, not {len(inputs)}")
    image_input = inputs[0]
    input_name = image_input.name
    elem = image_input.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise ModelRejected("the model input must be a float32 tensor")
    dims = _static_dims(image_input)
    if len(dims) != 4:
        raise ModelRejected(f"the model input must have 4 dimensions, not {len(dims)}")
    size = spec.input_size
    sample_dims = [3, size, size] if spec.layout == "NCHW" else [size, size, 3]
    expected: list[int | None] = [None, *sample_dims]
    for axis, (have, want) in enumerate(zip(dims, expected, strict=True)):
        if axis and have is not None and have != want:
            raise ModelRejected(
                f"the model input is {_shape_text(dims)} but the preprocessing gives "
                f"{spec.layout} {_shape_text(expected)}"
            )

    outputs = [o.name for o in model.graph.output]
    if not outputs:
        raise ModelRejected("the model has no outputs")
    if embedding_output and embedding_output not in outputs:
        raise ModelRejected(f"the model has no output named {embedding_output!r}")
    output_name = next(o for o in outputs if o != embedding_output) if len(outputs) > 1 else ""
    output_name = output_name or outputs[0]

    opset = max(
        (op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), default=0
    )
    # The parsed graph is not needed any more: free it before onnxruntime builds its own (a
    # message taken from it would keep all of it alive).
    del model, nodes, inputs, image_input
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelRejected(f"onnxruntime cannot load the model: {_short(exc)}") from None
    batch = 1 if dims[0] is None or dims[0] == 1 else dims[0]
    sample = np.zeros([batch, *sample_dims], np.float32)
    wanted = [output_name] + ([embedding_output] if embedding_output else [])
    try:
        results = session.run(wanted, {input_name: sample})
    except Exception as exc:
        raise ModelRejected(f"the dry run failed: {_short(exc)}") from None
    scores = np.asarray(results[0])
    if scores.ndim != 2 or scores.shape[0] != batch:
        raise ModelRejected(
            f"output {output_name!r} must be (batch, classes); the dry run gave {scores.shape}"
        )
    if scores.shape[1] != len(labels):
        raise ModelRejected(
            f"the model gives {scores.shape[1]} scores per image but the label map has "
            f"{len(labels)} names"
        )
    if not np.all(np.isfinite(scores)):
        raise ModelRejected("the dry run gave non-finite scores (NaN or infinity)")
    return CheckedModel(
        input_name=input_name,
        output_name=output_name,
        embedding_output=embedding_output,
        class_count=len(labels),
        opset=opset,
    )


def _shape_text(dims: list[int | None]) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in dims) + ")"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:300]


def _subgraphs(node: Any) -> list[Any]:
    """The graphs a node carries as attributes (the branches of If, the bodies of Loop, Scan)."""
    graphs = []
    for attribute in node.attribute:
        if attribute.HasField("g"):
            graphs.append(attribute.g)
        graphs.extend(attribute.graphs)
    return graphs


def _all_graphs(model: Any) -> list[Any]:
    """The main graph, every subgraph at any depth (in model-local functions too), and the
    training graphs: everywhere a loader may find nodes or tensors."""
    roots = [model.graph]
    for training in model.training_info:
        roots.extend((training.initialization, training.algorithm))
    graphs: list[Any] = []
    pending_graphs = list(roots)
    pending_nodes = [node for function in model.functions for node in function.node]
    while pending_graphs or pending_nodes:
        if pending_graphs:
            graph = pending_graphs.pop()
            graphs.append(graph)
            pending_nodes.extend(graph.node)
        else:
            pending_graphs.extend(_subgraphs(pending_nodes.pop()))
    return graphs


def _all_nodes(model: Any) -> list[Any]:
    """Every node: in every graph and in the bodies of model-local functions."""
    nodes = [node for graph in _all_graphs(model) for node in graph.node]
    return nodes + [node for function in model.functions for node in function.node]


def _all_tensors(model: Any) -> list[Any]:
    """Every tensor a loader would materialise: initializers (sparse ones included) of every
    graph, and constant tensors held in node attributes."""
    tensors: list[Any] = []
    for graph in _all_graphs(model):
        tensors.extend(graph.initializer)
        for sparse in graph.sparse_initializer:
            tensors.extend((sparse.values, sparse.indices))
    for node in _all_nodes(model):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                tensors.append(attribute.t)
            tensors.extend(attribute.tensors)
            sparse_tensors = list(attribute.sparse_tensors)
            if attribute.HasField("sparse_tensor"):
                sparse_tensors.append(attribute.sparse_tensor)
            for sparse in sparse_tensors:
                tensors.extend((sparse.values, sparse.indices))
    return tensors
