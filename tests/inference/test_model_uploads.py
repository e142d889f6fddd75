"""Model uploads are validated by the worker as a job: the request refuses only what is cheap to
see (a model over the node cap among it, before the graph is loaded) and answers 202 with the
job; the job runs the checker and the dry run in a child process limited in memory and time,
and the version exists only once it passed."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from onnx import TensorProto, helper, numpy_helper
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Job
from inference.models import ModelVersion
from inference.tasks import validate_model
from inference.validation import ModelRejected, node_count_check
from tests.inference.onnx_models import labels, linear, to_bytes

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/models/"
RGB = labels("r", "g", "b")


def chained(nodes: int) -> bytes:
    """``linear`` with its logits passed through a chain of Relu nodes: ``nodes`` in all."""
    model = linear(classes=3)
    model.graph.node[-1].output[0] = "chain0"
    for i in range(nodes - 4):
        model.graph.node.append(helper.make_node("Relu", [f"chain{i}"], [f"chain{i + 1}"]))
    model.graph.node.append(helper.make_node("Identity", [f"chain{nodes - 4}"], ["logits"]))
    return to_bytes(model)


def nodes_hidden_in_a_subgraph(count: int) -> bytes:
    """Four nodes in the main graph; ``count`` more in each branch of an If."""
    model = linear(classes=3)
    seed = numpy_helper.from_array(np.ones(3, np.float32), "seed")
    body = [helper.make_node("Identity", ["seed"], ["b1"])]
    for i in range(1, count):
        body.append(helper.make_node("Relu", [f"b{i}"], [f"b{i + 1}"]))
    out = helper.make_tensor_value_info(f"b{count}", TensorProto.FLOAT, [3])
    branch = helper.make_graph(body, "branch", [], [out], [seed])
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "flag"))
    model.graph.node.append(
        helper.make_node("If", ["flag"], ["unused"], then_branch=branch, else_branch=branch)
    )
    return to_bytes(model)


def heavy(floats: int) -> bytes:
    """Mean colour through two large dense layers: ``8 * 3 * floats`` bytes of weights."""
    first = numpy_helper.from_array(np.full((3, floats), 1e-3, np.float32), "first")
    second = numpy_helper.from_array(np.full((floats, 3), 1e-3, np.float32), "second")
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["mean"]),
        helper.make_node("MatMul", ["mean", "first"], ["wide"]),
        helper.make_node("MatMul", ["wide", "second"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "heavy",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[first, second],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return to_bytes(model)


def named(data: bytes, name: str) -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name
    return stream


def post(client: APIClient, model: bytes, label_map: bytes = RGB, **extra: Any) -> Any:
    return client.post(
        MODELS,
        {
            "onnx": named(model, "model.onnx"),
            "labels": named(label_map, "labels.json"),
            "input_size": 8,
            **extra,
        },
        format="multipart",
    )


def run_job(response: Any) -> Job:
    """Run the upload's job as the worker would (a refusal fails the task too)."""
    assert response.status_code == 202, response.json()
    with contextlib.suppress(ModelRejected):
        validate_model(response.json()["id"])
    return Job.objects.get(pk=response.json()["id"])


def nothing_pending() -> bool:
    return not default_storage.exists("models/pending") or default_storage.listdir(
        "models/pending"
    ) == ([], [])


# --- The node cap ---------------------------------------------------------------------------


def test_the_wire_format_count_is_the_node_count_onnx_sees() -> None:
    for nodes in (3, 4, 57, 1000):
        data = to_bytes(linear(classes=3)) if nodes == 3 else chained(nodes)
        assert node_count_check(data, limit=10_000) == nodes
        assert len(onnx.load_from_string(data).graph.node) == nodes


def test_a_model_over_the_node_cap_is_refused_in_the_request_without_loading_it(
    reviewer_api: APIClient, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.LOUPE_MAX_MODEL_NODES = 50

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the request loaded the graph")

    monkeypatch.setattr(onnx, "load_model_from_string", never)
    monkeypatch.setattr(onnx, "load_from_string", never)
    response = post(reviewer_api, chained(60))

    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Model refused: the model has more than 50 nodes; the limit is 50 "
        "(LOUPE_MAX_MODEL_NODES). Image classifiers have a few hundred to a few thousand"
    )
    assert not Job.objects.exists() and not ModelVersion.objects.exists()
    assert nothing_pending()


def test_a_model_at_the_node_cap_is_accepted(reviewer_api: APIClient, settings: Any) -> None:
    settings.LOUPE_MAX_MODEL_NODES = 50
    job = run_job(post(reviewer_api, chained(50)))
    assert job.status == "succeeded", job.message
    assert job.params["nodes"] == 50


def test_nodes_hidden_in_a_subgraph_are_counted_by_the_job(
    reviewer_api: APIClient, settings: Any
) -> None:
    settings.LOUPE_MAX_MODEL_NODES = 50
    data = nodes_hidden_in_a_subgraph(120)
    assert node_count_check(data, limit=50) == 4  # what the request can see
    job = run_job(post(reviewer_api, data))
    assert job.status == "failed"
    assert job.message.startswith(
        "Model refused: the model has 244 nodes; the limit is 50 (LOUPE_MAX_MODEL_NODES)"
    )
    assert not ModelVersion.objects.exists() and nothing_pending()


def test_register_model_applies_the_node_cap_too(settings: Any, tmp_path: Any) -> None:
    settings.LOUPE_MAX_MODEL_NODES = 50
    (tmp_path / "m.onnx").write_bytes(chained(51))
    (tmp_path / "l.json").write_bytes(RGB)
    with pytest.raises(Exception, match="more than 50 nodes"):
        call_command(
            "register_model", "--onnx", str(tmp_path / "m.onnx"), "--labels",
            str(tmp_path / "l.json"), "--input-size", "8",
        )  # fmt: skip


# --- Validation in the job ------------------------------------------------------------------


def test_the_upload_answers_with_the_job_and_the_version_exists_only_after_it(
    reviewer_api: APIClient, reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither the checker nor onnxruntime may run in this process (the web worker's, or the
    # worker's): the job validates in a child process, which these patches do not reach.
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validated in the calling process")

    monkeypatch.setattr(onnx.checker, "check_model", never)
    monkeypatch.setattr(onnxruntime, "InferenceSession", never)

    response = post(reviewer_api, to_bytes(linear(classes=3)), activate="true")
    body = response.json()
    assert response.status_code == 202
    assert body["kind"] == "inference.validate_model" and body["status"] == "queued"
    assert body["params"]["nodes"] == 3 and body["params"]["classes"] == 3
    assert reviewer_api.get(MODELS).json() == []

    job = run_job(response)
    assert job.status == "succeeded", job.message
    listed = reviewer_api.get(MODELS).json()
    assert [v["number"] for v in listed] == [job.result["model_version"]] == [1]
    assert listed[0]["is_active"] and job.result["activated"]
    assert ModelVersion.objects.get().uploaded_by == reviewer
    assert nothing_pending()


def test_a_model_that_needs_more_memory_than_the_cap_is_refused_by_its_job(
    reviewer_api: APIClient, settings: Any
) -> None:
    # A tiny model validates within about 250 MiB here, one with 77 MB of weights needs
    # 500 to 600 MiB.
    settings.LOUPE_MODEL_VALIDATION_MEMORY = 384 * 1024**2
    small = run_job(post(reviewer_api, to_bytes(linear(classes=3))))
    assert small.status == "succeeded", small.message  # the cap leaves room for a model

    job = run_job(post(reviewer_api, heavy(3_200_000)))

    assert job.status == "failed"
    assert job.message == (
        "Model refused: validating the model needs more than 384 MiB of memory "
        "(LOUPE_MODEL_VALIDATION_MEMORY)"
    )
    assert ModelVersion.objects.count() == 1 and nothing_pending()


def test_a_validation_over_its_time_limit_is_refused_by_its_job(
    reviewer_api: APIClient, settings: Any
) -> None:
    settings.LOUPE_MODEL_VALIDATION_SECONDS = 1  # less than the child takes to start
    job = run_job(post(reviewer_api, to_bytes(linear(classes=3))))
    assert job.status == "failed"
    assert job.message == (
        "Model refused: validating the model took longer than 1 s (LOUPE_MODEL_VALIDATION_SECONDS)"
    )
    assert not ModelVersion.objects.exists() and nothing_pending()


def test_the_models_page_lists_an_upload_while_it_waits_and_once_it_passed(
    reviewer: User,
) -> None:
    page = Client()
    page.force_login(reviewer)
    response = page.post(
        "/models/upload/",
        {
            "onnx": named(to_bytes(linear(classes=2)), "flowers.onnx"),
            "labels": named(labels("rose", "tulip"), "labels.json"),
            "input_size": "8",
        },
        follow=True,
    )
    html = response.content.decode()
    job = Job.objects.get(kind="inference.validate_model")
    assert f"Received flowers (3 nodes). The worker is validating it (job {job.pk})" in html
    assert 'id="model-uploads"' in html and 'data-live="1"' in html
    assert "waiting for a worker" in html
    assert not ModelVersion.objects.exists()

    validate_model(job.pk)
    html = page.get("/models/").content.decode()
    assert 'data-live="1"' not in html
    assert ">passed<" in html and 'href="#v1"' in html
    assert ModelVersion.objects.get().name == "flowers"
