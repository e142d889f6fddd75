from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image as PILImage
from rest_framework.test import APIClient
from skimage import data as bundled

from inference.models import ModelVersion

pytestmark = pytest.mark.django_db

CATS = {"Egyptian cat", "tabby", "tiger cat"}


def jpeg(pixels: np.ndarray) -> io.BytesIO:
    out = io.BytesIO()
    PILImage.fromarray(pixels).convert("RGB").save(out, format="JPEG", quality=92)
    out.seek(0)
    out.name = "photo.jpg"
    return out


def test_the_installed_backbone_recognises_the_bundled_photos(api: APIClient) -> None:
    out = io.StringIO()
    call_command("install_backbone", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["number"] == 1 and summary["active"] is True and summary["classes"] == 1000
    version = ModelVersion.objects.get(number=1)
    assert version.embedding_output == "embedding"

    cat = api.post("/api/v1/predict/", {"file": jpeg(bundled.chelsea())}, format="multipart")
    assert cat.status_code == 200, cat.json()
    top = cat.json()["predictions"]
    assert top[0]["label"] in CATS
    assert sum(p["score"] for p in top if p["label"] in CATS) > 0.5

    coffee = api.post("/api/v1/predict/", {"file": jpeg(bundled.coffee())}, format="multipart")
    assert coffee.json()["predictions"][0]["label"] == "espresso"

    again = io.StringIO()
    call_command("install_backbone", "--json", stdout=again)
    assert json.loads(again.getvalue())["already_installed"] is True
    assert ModelVersion.objects.count() == 1
