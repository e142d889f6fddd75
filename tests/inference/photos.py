"""Real photographs stored through the import service, for the embedding tests: the bundled
scikit-image photos and edited copies of them (nothing downloaded)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from curation.models import Image, ImportKind, SubClass
from curation.services.images import file_inspect, image_import, import_batch_create
from inference.embeddings import labelled_index_clear
from inference.models import ModelVersion
from tests.curation.duplicate_photos import jpeg, photo


@pytest.fixture
def backbone(db: None, settings: Any, tmp_path: Path) -> ModelVersion:
    """The installed EfficientNet-Lite0 backbone, the embedding model; similarity indexes go to
    the test's own data folder."""
    settings.DATA_DIR = tmp_path / "data"
    labelled_index_clear()  # a worker's cache must not outlive the test's database
    call_command("install_backbone", "--json", stdout=io.StringIO())
    return ModelVersion.objects.get(number=1)


def store(data: bytes, subclass: SubClass | None = None, name: str = "photo.jpg") -> Image:
    batch = import_batch_create(kind=ImportKind.UPLOAD, name="test", actor=None)
    result = image_import(
        inspection=file_inspect(data=data, name=name),
        content=io.BytesIO(data),
        subclass=subclass,
        actor=None,
        batch=batch,
    )
    assert result.image is not None, result.reason
    return result.image


def store_photo(name: str, subclass: SubClass | None = None, quality: int = 90) -> Image:
    return store(jpeg(photo(name), quality=quality), subclass)


def store_pil(image: PILImage.Image, subclass: SubClass | None = None) -> Image:
    return store(jpeg(image), subclass)
