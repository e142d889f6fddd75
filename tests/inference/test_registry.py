from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import onnx
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Job, LabelClass
from inference.models import LabelMatch, ModelVersion
from inference.preprocessing import PreprocessSpec
from inference.services import model_version_activate, model_version_register
from inference.tasks import validate_model
from inference.validation import ModelRejected, label_map_parse
from tests.factories import LabelClassFactory
from tests.inference.onnx_models import channel_means, labels, linear, to_bytes

pytestmark = pytest.mark.django_db

SMALL = PreprocessSpec(input_size=8)
MODELS = "/api/v1/models/"


def register(classes: int = 3, **kwargs: Any) -> ModelVersion:
    names = [f"label {i}" for i in range(classes)]
    return model_version_register(
        onnx_data=to_bytes(linear(classes=classes)),
        labels=labels(*names),
        name="tiny",
        actor=None,
        spec=SMALL,
        **kwargs,
    ).version


def test_versions_are_numbered_one_two_three() -> None:
    assert [register().number for _ in range(3)] == [1, 2, 3]
    version = ModelVersion.objects.get(number=2)
    assert version.input_name == "image"
    assert version.output_name == "logits"
    assert default_storage.exists(f"models/{version.sha256}.onnx")


def test_it_refuses_a_label_map_that_does_not_match_the_output_size() -> None:
    with pytest.raises(ModelRejected, match="gives 3 scores per image but the label map has 4"):
        model_version_register(
            onnx_data=to_bytes(linear(classes=3)),
            labels=labels("a", "b", "c", "d"),
            name="bad",
            actor=None,
            spec=SMALL,
        )
    assert not ModelVersion.objects.exists()
    assert not default_storage.exists("models") or not default_storage.listdir("models")[1]


@pytest.mark.parametrize(
    ("label_map", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'{"a": 1}', 'keys must be exactly "0", "1"'),
        (b'{"00": "a", "1": "b", "2": "c"}', 'keys must be exactly "0", "1"'),
        (b'{"1": "b", "2": "c"}', 'keys must be exactly "0", "1"'),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[]", "non-empty JSON list"),
        (b'["a", "a", "b"]', "label 1 ('a') repeats label 0"),
        (b'["a", 3, "b"]', "label 1 is not a non-empty string"),
    ],
)
def test_it_explains_what_is_wrong_with_a_label_map(label_map: bytes, message: str) -> None:
    with pytest.raises(ModelRejected, match=re.escape(message)):
        model_version_register(
            onnx_data=to_bytes(linear(classes=3)),
            labels=label_map,
            name="x",
            actor=None,
            spec=SMALL,
        )


def test_it_refuses_weights_kept_in_external_data(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save_model(
        linear(classes=3),
        str(path),
        save_as_external_data=True,
        size_threshold=0,
        location="weights.bin",
    )
    with pytest.raises(ModelRejected, match="external data"):
        model_version_register(
            onnx_data=path.read_bytes(),
            labels=labels("a", "b", "c"),
            name="x",
            actor=None,
            spec=SMALL,
        )


def test_it_refuses_operators_from_an_unknown_domain() -> None:
    with pytest.raises(ModelRejected, match=r"non-standard domains: com\.example\.custom"):
        model_version_register(
            onnx_data=to_bytes(channel_means(domain="com.example.custom")),
            labels=labels("r", "g", "b"),
            name="x",
            actor=None,
            spec=SMALL,
        )


def test_it_refuses_bytes_that_are_not_onnx() -> None:
    with pytest.raises(ModelRejected, match="not an ONNX model"):
        model_version_register(
            onnx_data=b"\x00garbage" * 50, labels=labels("a"), name="x", actor=None, spec=SMALL
        )


def test_it_refuses_an_input_size_the_model_does_not_take() -> None:
    with pytest.raises(ModelRejected, match=r"input is \(N, 3, 8, 8\) but the preprocessing"):
        model_version_register(
            onnx_data=to_bytes(linear(classes=3)),
            labels=labels("a", "b", "c"),
            name="x",
            actor=None,
            spec=PreprocessSpec(input_size=16),
        )


def test_it_refuses_a_model_the_checker_rejects() -> None:
    model = linear(classes=3)
    model.graph.node[2].input[1] = "no_such_tensor"
    with pytest.raises(ModelRejected, match=r"checker refused|cannot load"):
        model_version_register(
            onnx_data=to_bytes(model),
            labels=labels("a", "b", "c"),
            name="x",
            actor=None,
            spec=SMALL,
        )


def test_label_names_are_matched_to_classes_and_unmatched_ones_listed() -> None:
    LabelClassFactory(name="Robin")
    registration = model_version_register(
        onnx_data=to_bytes(linear(classes=3)),
        labels=labels("robin", "Wren", "Blue  tit"),
        name="birds",
        actor=None,
        spec=SMALL,
    )
    assert registration.unmatched == ["Wren", "Blue  tit"]
    match = LabelMatch.objects.get(model_version=registration.version, index=0)
    assert match.label_class is not None and match.label_class.name == "Robin"


def test_unmatched_labels_become_classes_on_request() -> None:
    LabelClassFactory(name="Robin")
    registration = model_version_register(
        onnx_data=to_bytes(linear(classes=3)),
        labels=labels("Robin", "Wren", "Blue tit"),
        name="birds",
        actor=None,
        spec=SMALL,
        create_classes=True,
    )
    assert registration.created_classes == ["Wren", "Blue tit"]
    assert registration.unmatched == []
    assert set(LabelClass.objects.values_list("name", flat=True)) == {"Robin", "Wren", "Blue tit"}


def test_only_one_version_is_active_at_a_time() -> None:
    first, second = register(), register()
    model_version_activate(version=first, actor=None)
    model_version_activate(version=second, actor=None)
    assert list(ModelVersion.objects.filter(is_active=True)) == [second]


def test_register_model_command_prints_json(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(to_bytes(linear(classes=2)))
    (tmp_path / "labels.json").write_bytes(labels("cat", "dog"))
    out = io.StringIO()
    call_command(
        "register_model",
        "--onnx",
        str(tmp_path / "m.onnx"),
        "--labels",
        str(tmp_path / "labels.json"),
        "--input-size",
        "8",
        "--activate",
        "--json",
        stdout=out,
    )
    summary = json.loads(out.getvalue())
    assert summary["number"] == 1 and summary["active"] is True
    assert summary["unmatched_labels"] == ["cat", "dog"]


def test_register_model_command_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(to_bytes(linear(classes=2)))
    (tmp_path / "labels.json").write_bytes(labels("cat"))
    with pytest.raises(CommandError, match="label map has 1 names"):
        call_command(
            "register_model",
            "--onnx",
            str(tmp_path / "m.onnx"),
            "--labels",
            str(tmp_path / "labels.json"),
            "--input-size",
            "8",
        )


def upload(
    client: APIClient, classes: int = 3, label_count: int | None = None, **extra: Any
) -> Any:
    names = [f"label {i}" for i in range(label_count or classes)]
    onnx_file = io.BytesIO(to_bytes(linear(classes=classes)))
    onnx_file.name = "tiny.onnx"
    label_file = io.BytesIO(labels(*names))
    label_file.name = "labels.json"
    return client.post(
        MODELS,
        {"onnx": onnx_file, "labels": label_file, "input_size": 8, **extra},
        format="multipart",
    )


def validated(client: APIClient, response: Any) -> Job:
    """The upload's job, after the worker ran it."""
    assert response.status_code == 202, response.json()
    with contextlib.suppress(ModelRejected):  # a refusal fails the task too
        validate_model(response.json()["id"])
    return Job.objects.get(pk=response.json()["id"])


def uploaded(client: APIClient, **kwargs: Any) -> dict[str, Any]:
    """Upload, validate, and the new version as the API gives it."""
    job = validated(client, upload(client, **kwargs))
    assert job.status == "succeeded", job.message
    return client.get(f"{MODELS}{job.result['model_version_id']}/").json()


def test_reviewers_upload_models_through_the_api(reviewer_api: APIClient, reviewer: User) -> None:
    response = upload(reviewer_api, notes="first try")
    assert response.status_code == 202, response.json()
    assert response.json()["kind"] == "inference.validate_model"
    assert response["Location"] == f"/api/v1/jobs/{response.json()['id']}/"
    assert not ModelVersion.objects.exists()  # nothing usable before the job validates it
    job = validated(reviewer_api, response)
    assert job.status == "succeeded", job.message
    assert job.result["model_version"] == 1
    assert job.message.startswith("Registered model v1 (3 classes).")
    body = reviewer_api.get(f"{MODELS}{job.result['model_version_id']}/").json()
    assert body["number"] == 1
    assert body["name"] == "tiny"
    assert body["uploaded_by"] == reviewer.username
    assert body["unmatched_labels"] == ["label 0", "label 1", "label 2"]
    assert reviewer_api.get(MODELS).json()[0]["notes"] == "first try"


def test_an_index_keyed_label_map_is_read_in_index_order() -> None:
    assert label_map_parse(
        b'{"1": "dog", "0": "cat", "10": "yak", '
        + b", ".join(f'"{i}": "n{i}"'.encode() for i in range(2, 10))
        + b"}"
    ) == ["cat", "dog", *(f"n{i}" for i in range(2, 10)), "yak"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"std": "-0.2,-0.2,-0.2"}, "std values must be above zero"),
        ({"std": "0"}, "std values must be above zero"),
        ({"scale": "-1"}, "scale must be a finite number above zero"),
        ({"mean": "0.5,0.5"}, "mean must have 1 or 3 values"),
        ({"std": "abc"}, "std: item 0: A valid number is required."),
        ({"layout": "NXYZ"}, "layout: "),
    ],
)
def test_an_api_upload_with_a_wrong_preprocessing_value_is_refused_with_the_reason(
    reviewer_api: APIClient, fields: dict[str, str], message: str
) -> None:
    response = upload(reviewer_api, **fields)
    assert response.status_code == 400, response.json()
    assert message in response.json()["detail"]
    assert "ErrorDetail" not in response.json()["detail"]
    assert not ModelVersion.objects.exists()


def test_labellers_cannot_upload_models(api: APIClient) -> None:
    assert upload(api).status_code == 403


def test_an_api_upload_with_a_wrong_label_map_is_refused_by_its_job_with_the_reason(
    reviewer_api: APIClient,
) -> None:
    job = validated(reviewer_api, upload(reviewer_api, classes=3, label_count=5))
    assert job.status == "failed"
    assert job.message == (
        "Model refused: the model gives 3 scores per image but the label map has 5 names"
    )
    assert reviewer_api.get(f"/api/v1/jobs/{job.pk}/").json()["message"] == job.message
    assert not ModelVersion.objects.exists()
    assert default_storage.listdir("models/pending") == ([], [])


def test_activating_through_the_api_starts_a_recompute_job(reviewer_api: APIClient) -> None:
    number = uploaded(reviewer_api)["id"]
    response = reviewer_api.post(f"{MODELS}{number}/activate/")
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"]["is_active"] is True
    assert Job.objects.get(pk=body["job"]["id"]).kind == "inference.recompute_predictions"


def test_unmatched_labels_can_be_created_through_the_api(reviewer_api: APIClient) -> None:
    version_id = uploaded(reviewer_api, classes=2)["id"]
    response = reviewer_api.post(f"{MODELS}{version_id}/create-classes/")
    assert response.json()["created_classes"] == ["label 0", "label 1"]
    assert response.json()["model_version"]["unmatched_labels"] == []
