"""Hostile model uploads: through POST /api/v1/models/, the models page and ``register_model``,
each is refused with the reason before anything is stored, and nothing in it is ever opened
(external data paths) or unpickled (label maps)."""

from __future__ import annotations

import io
import pickle
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import Client
from onnx import TensorProto, external_data_helper, helper, numpy_helper
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Job
from inference.models import ModelVersion
from inference.tasks import validate_model
from inference.validation import ModelRejected
from tests.inference.onnx_models import channel_means, labels, linear, to_bytes

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/models/"
RGB = labels("r", "g", "b")
# Where the hostile pickles below would leave a mark if they were ever unpickled (one path per
# test process).
UNPICKLED_MARKER = Path(tempfile.gettempdir()) / f"loupe-unpickled-{uuid.uuid4().hex}"


# --- Hostile models ---------------------------------------------------------------------------


def point_outside(tensor: TensorProto, location: str) -> None:
    """Move the tensor's bytes to an 'external data' file at ``location``, as onnx does when
    it saves a large model, so a loader would read that path."""
    external_data_helper.set_external_data(
        tensor, location=location, offset=0, length=len(tensor.raw_data)
    )
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")


def external_initializers(location: str) -> bytes:
    model = linear(classes=3)
    for tensor in model.graph.initializer:
        point_outside(tensor, location)
    return to_bytes(model)


def external_constant_in_a_local_function() -> bytes:
    model = linear(classes=3)
    weight = numpy_helper.from_array(np.ones(3, np.float32), "w")
    point_outside(weight, "../../etc/passwd")
    body = [
        helper.make_node("Constant", [], ["w"], value=weight),
        helper.make_node("Add", ["x", "w"], ["y"]),
    ]
    model.functions.append(
        helper.make_function("local.fn", "AddW", ["x"], ["y"], body, [helper.make_opsetid("", 17)])
    )
    return to_bytes(model)


def external_sparse_initializer() -> bytes:
    model = linear(classes=3)
    values = numpy_helper.from_array(np.ones(2, np.float32), "sparse_values")
    point_outside(values, "/etc/shadow")
    indices = numpy_helper.from_array(np.array([0, 2], np.int64), "sparse_indices")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [3]))
    return to_bytes(model)


def external_initializer_two_subgraphs_deep() -> bytes:
    model = linear(classes=3)
    hidden = numpy_helper.from_array(np.ones(3, np.float32), "hidden")
    point_outside(hidden, "../../../root/.ssh/id_rsa")
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])
    inner = helper.make_graph(
        [helper.make_node("Identity", ["hidden"], ["out"])], "inner", [], [out], [hidden]
    )
    middle = helper.make_graph(
        [helper.make_node("If", ["flag"], ["out"], then_branch=inner, else_branch=inner)],
        "middle",
        [],
        [out],
    )
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "flag"))
    model.graph.node.append(
        helper.make_node("If", ["flag"], ["unused"], then_branch=middle, else_branch=middle)
    )
    return to_bytes(model)


def custom_domain_inside_a_subgraph() -> bytes:
    model = channel_means()
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])
    branch = helper.make_graph(
        [helper.make_node("Run", ["scores"], ["out"], domain="ai.onnx.contrib")],
        "branch",
        [],
        [out],
    )
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "flag"))
    model.graph.node.append(
        helper.make_node("If", ["flag"], ["unused"], then_branch=branch, else_branch=branch)
    )
    return to_bytes(model)


class LeavesAMark:
    """Unpickling this creates UNPICKLED_MARKER: what an attacker's pickle would do instead."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (UNPICKLED_MARKER,))


def pickled_labels(protocol: int) -> bytes:
    return pickle.dumps([LeavesAMark(), "r", "g", "b"], protocol=protocol)


def pytorch_style_pickle() -> bytes:
    return pickle.dumps({"state_dict": LeavesAMark()}, protocol=2)


# Where a refusal happens: in the request, from what is cheap to read (the label map, the size,
# the node count and whether the bytes are protobuf with a graph), or in the validation job.
REQUEST, JOB = "request", "job"
# (model bytes, label map bytes, what the refusal must say, where)
HOSTILE_MODELS = [
    pytest.param(external_initializers("weights.bin"), labels("a", "b", "c"),
                 "keeps weights in external data files", JOB, id="external-data"),
    pytest.param(external_initializers("../../etc/passwd"), labels("a", "b", "c"),
                 "keeps weights in external data files", JOB, id="external-data-traversal"),
    pytest.param(external_initializers("/etc/passwd"), labels("a", "b", "c"),
                 "keeps weights in external data files", JOB, id="external-data-absolute"),
    pytest.param(external_constant_in_a_local_function(), labels("a", "b", "c"),
                 "external data files (w)", JOB, id="external-data-in-a-function"),
    pytest.param(external_sparse_initializer(), labels("a", "b", "c"),
                 "external data files (sparse_values)", JOB, id="external-sparse-initializer"),
    pytest.param(external_initializer_two_subgraphs_deep(), labels("a", "b", "c"),
                 "external data files (hidden)", JOB, id="external-data-in-a-nested-subgraph"),
    pytest.param(to_bytes(channel_means(domain="com.example.custom")), RGB,
                 "operators from non-standard domains: com.example.custom", JOB,
                 id="unknown-domain"),
    pytest.param(custom_domain_inside_a_subgraph(), RGB,
                 "operators from non-standard domains: ai.onnx.contrib",
                 JOB, id="unknown-domain-in-a-subgraph"),
    pytest.param(to_bytes(linear(classes=3)), labels("a", "b"),
                 "the model gives 3 scores per image but the label map has 2 names",
                 JOB, id="output-size-mismatch"),
    pytest.param(to_bytes(linear(classes=3)), pickled_labels(0),
                 "the label map is not valid JSON", REQUEST, id="pickled-labels-text"),
    pytest.param(to_bytes(linear(classes=3)), pickled_labels(pickle.HIGHEST_PROTOCOL),
                 "the label map is not valid JSON", REQUEST, id="pickled-labels-binary"),
    pytest.param(pytorch_style_pickle(), labels("a", "b", "c"), "not an ONNX model",
                 REQUEST, id="pickle-named-onnx"),
    pytest.param(b"", labels("a", "b", "c"), "The submitted file is empty", REQUEST,
                 id="empty-model"),
]  # fmt: skip


@pytest.fixture(autouse=True)
def no_unpickling_mark() -> Any:
    UNPICKLED_MARKER.unlink(missing_ok=True)
    yield
    assert not UNPICKLED_MARKER.exists(), "a label map or model was unpickled"


def test_the_hostile_pickles_do_leave_a_mark_when_unpickled() -> None:
    pickle.loads(pickled_labels(0))  # noqa: S301 - proves the marker works
    assert UNPICKLED_MARKER.exists()
    UNPICKLED_MARKER.unlink()


def named(data: bytes, name: str) -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name
    return stream


def post_model(client: APIClient | Client, url: str, model: bytes, label_map: bytes) -> Any:
    return client.post(
        url,
        {
            "onnx": named(model, "model.onnx"),
            "labels": named(label_map, "labels.json"),
            "input_size": 8,
        },
        **({"format": "multipart"} if isinstance(client, APIClient) else {}),
    )


def refused_by_the_job(response: Any) -> Job:
    """The validation job of an accepted upload, run as the worker would, refusing it."""
    assert response.status_code == 202, response.json()
    with pytest.raises(ModelRejected):  # the task fails as well as its job
        validate_model(response.json()["id"])
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == "failed"
    assert job.message.startswith("Model refused: ")
    return job


@pytest.mark.parametrize(("model", "label_map", "reason", "where"), HOSTILE_MODELS)
def test_a_hostile_model_upload_is_refused_with_the_reason_and_nothing_stored(
    reviewer_api: APIClient,
    nothing_stored: Callable[[], None],
    model: bytes,
    label_map: bytes,
    reason: str,
    where: str,
) -> None:
    response = post_model(reviewer_api, MODELS, model, label_map)

    if where == REQUEST:
        assert response.status_code == 400
        assert response["Content-Type"] == "application/json"
        assert reason in response.json()["detail"]
    else:
        assert reason in refused_by_the_job(response).message
    nothing_stored()


@pytest.mark.parametrize(("model", "label_map", "reason", "where"), HOSTILE_MODELS)
def test_register_model_refuses_the_same_models_with_the_reason(
    tmp_path: Path,
    nothing_stored: Callable[[], None],
    model: bytes,
    label_map: bytes,
    reason: str,
    where: str,
) -> None:
    if not model:
        reason = "the ONNX file is empty"
    (tmp_path / "model.onnx").write_bytes(model)
    (tmp_path / "labels.pkl").write_bytes(label_map)

    with pytest.raises(CommandError, match="Model refused") as refused:
        call_command(
            "register_model",
            "--onnx",
            str(tmp_path / "model.onnx"),
            "--labels",
            str(tmp_path / "labels.pkl"),
            "--input-size",
            "8",
        )

    assert reason in str(refused.value)
    nothing_stored()


@pytest.mark.parametrize(
    ("model", "label_map", "reason", "where"),
    [p for p in HOSTILE_MODELS if p.id in ("external-data-traversal", "pickled-labels-binary")],
)
def test_the_models_page_refuses_them_too(
    reviewer: User,
    nothing_stored: Callable[[], None],
    model: bytes,
    label_map: bytes,
    reason: str,
    where: str,
) -> None:
    page = Client()
    page.force_login(reviewer)

    response = post_model(page, "/models/upload/", model, label_map)

    assert response.status_code == 302
    if where == REQUEST:
        assert any(reason in str(m) for m in get_messages(response.wsgi_request))
    else:
        job = Job.objects.get(kind="inference.validate_model")
        with pytest.raises(ModelRejected):
            validate_model(job.pk)
        html = page.get("/models/").content.decode()
        assert "Model refused: " in html and reason in html
    nothing_stored()


# --- Size caps --------------------------------------------------------------------------------


def test_a_model_over_the_configured_size_cap_is_refused(
    reviewer_api: APIClient, settings: Any, nothing_stored: Callable[[], None]
) -> None:
    data = to_bytes(linear(classes=200))
    settings.LOUPE_MAX_MODEL_BYTES = 2048
    assert len(data) > 2048

    response = post_model(reviewer_api, MODELS, data, labels(*map(str, range(200))))

    assert response.status_code == 400
    assert (
        f"the ONNX file is {len(data):,} bytes; the limit is 2,048 (LOUPE_MAX_MODEL_BYTES)"
        in response.json()["detail"]
    )
    nothing_stored()


def test_a_model_may_be_larger_than_the_general_upload_cap(
    reviewer_api: APIClient, settings: Any
) -> None:
    data = to_bytes(linear(classes=200))
    settings.LOUPE_MAX_UPLOAD_BYTES = len(data) // 2

    response = post_model(reviewer_api, MODELS, data, labels(*map(str, range(200))))

    assert response.status_code == 202, response.json()


def test_a_model_body_over_the_model_cap_is_a_json_413_before_it_is_read(
    reviewer_api: APIClient, nothing_stored: Callable[[], None]
) -> None:
    response = reviewer_api.generic(
        "POST",
        MODELS,
        b"--x\r\n",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(2 * 1024**3),
    )

    assert response.status_code == 413
    assert "LOUPE_MAX_MODEL_BYTES" in response.json()["detail"]
    nothing_stored()


def test_a_well_formed_model_still_registers(reviewer_api: APIClient) -> None:
    response = post_model(reviewer_api, MODELS, to_bytes(linear(classes=3)), RGB)

    assert response.status_code == 202, response.json()
    validate_model(response.json()["id"])
    assert Job.objects.get(pk=response.json()["id"]).status == "succeeded"
    assert ModelVersion.objects.count() == 1
