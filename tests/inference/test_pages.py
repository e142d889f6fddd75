from __future__ import annotations

import io

import pytest
from django.test import Client

from accounts.models import User
from curation.models import Job
from inference.models import ModelVersion
from inference.preprocessing import PreprocessSpec
from inference.services import model_version_register
from inference.tasks import validate_model
from inference.validation import ModelRejected
from tests.inference.onnx_models import labels, linear, to_bytes

pytestmark = [pytest.mark.django_db]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def register(number_of_classes: int = 2) -> ModelVersion:
    return model_version_register(
        onnx_data=to_bytes(linear(classes=number_of_classes)),
        labels=labels(*[f"kind {i}" for i in range(number_of_classes)]),
        name="tiny",
        actor=None,
        spec=PreprocessSpec(input_size=8),
        notes="trained on the spring set",
    ).version


def test_the_models_page_lists_versions_with_notes_and_unmatched_counts(labeller: User) -> None:
    register()
    page = signed_in(labeller).get("/models/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "v1" in text and "trained on the spring set" in text
    assert "2 unmatched" in text
    assert "Upload a model" not in text  # labellers only read


def test_a_reviewer_uploads_activates_and_annotates_a_model(reviewer: User) -> None:
    client = signed_in(reviewer)
    onnx_file = io.BytesIO(to_bytes(linear(classes=2)))
    onnx_file.name = "flowers.onnx"
    label_file = io.BytesIO(labels("rose", "tulip"))
    label_file.name = "labels.json"
    response = client.post(
        "/models/upload/",
        {"onnx": onnx_file, "labels": label_file, "input_size": "8", "scale": "1", "mean": ""},
        follow=True,
    )
    assert "The worker is validating it" in response.content.decode()
    validate_model(Job.objects.get(kind="inference.validate_model").pk)
    assert "Registered model v1 (2 classes)" in client.get("/models/").content.decode()
    version = ModelVersion.objects.get(number=1)
    assert version.name == "flowers" and version.uploaded_by == reviewer

    client.post("/models/v1/activate/")
    client.post("/models/v1/edit/", {"name": "flowers", "notes": "good on roses"})
    version.refresh_from_db()
    assert version.is_active and version.notes == "good on roses"


def test_a_refused_upload_shows_the_reason(reviewer: User) -> None:
    onnx_file = io.BytesIO(to_bytes(linear(classes=2)))
    onnx_file.name = "m.onnx"
    label_file = io.BytesIO(labels("only one"))
    label_file.name = "labels.json"
    client = signed_in(reviewer)
    client.post("/models/upload/", {"onnx": onnx_file, "labels": label_file, "input_size": "8"})
    with pytest.raises(ModelRejected):
        validate_model(Job.objects.get(kind="inference.validate_model").pk)
    html = client.get("/models/").content.decode()
    assert "Model refused: the model gives 2 scores per image but the label map has 1 names" in html
    assert not ModelVersion.objects.exists()


def test_labellers_cannot_activate_models(labeller: User) -> None:
    register()
    assert signed_in(labeller).post("/models/v1/activate/").status_code == 403
    assert not ModelVersion.objects.get(number=1).is_active
