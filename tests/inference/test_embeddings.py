from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.management import call_command

from curation.models import Job, JobStatus
from curation.services.images import image_trash
from inference.embeddings import (
    EMBEDDINGS_KIND,
    EmbeddingError,
    embedding_matrix,
    embedding_version,
    embeddings_compute,
    embeddings_for_new_images,
)
from inference.models import ImageEmbedding, ModelVersion
from tests.factories import SubClassFactory
from tests.inference.photos import backbone, store_photo

pytestmark = pytest.mark.django_db
__all__ = ["backbone"]


def test_embeddings_are_computed_once_for_every_active_image(backbone: ModelVersion) -> None:
    images = [store_photo(name) for name in ("chelsea", "coffee", "astronaut")]
    trashed = store_photo("rocket")
    image_trash(image_id=trashed.pk, actor=None, note="not wanted")

    first = embeddings_compute()
    assert first["written"] == 3 and first["model_version"] == 1
    assert ImageEmbedding.objects.filter(model_version=backbone).count() == 3
    assert not ImageEmbedding.objects.filter(image=trashed).exists()

    again = embeddings_compute()
    assert again["images"] == 0 and again["written"] == 0
    assert ImageEmbedding.objects.count() == 3

    ids, matrix = embedding_matrix()
    assert ids.tolist() == sorted(image.pk for image in images)
    assert ids.dtype == np.int64 and matrix.dtype == np.float32
    assert matrix.shape == (3, 1280)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-3)


def test_embedding_matrix_returns_only_the_asked_images_that_have_one(
    backbone: ModelVersion,
) -> None:
    cat, coffee = store_photo("chelsea"), store_photo("coffee")
    embeddings_for_new_images(image_ids=[cat.pk])
    ids, matrix = embedding_matrix(image_ids=[coffee.pk, cat.pk], model_version=backbone)
    assert ids.tolist() == [cat.pk]
    assert matrix.shape == (1, 1280)
    # The same photo embeds the same way twice; two photos differ.
    embeddings_for_new_images(image_ids=[coffee.pk])
    _, both = embedding_matrix(image_ids=[cat.pk, coffee.pk])
    assert float(both[0] @ both[1]) < 0.8


def test_new_images_get_their_embedding_and_ood_score_on_import(backbone: ModelVersion) -> None:
    cats = SubClassFactory()
    for name in ("chelsea", "coffee", "astronaut"):
        store_photo(name, cats)
    embeddings_compute()
    new = store_photo("rocket")
    assert embeddings_for_new_images(image_ids=[new.pk]) == 1
    row = ImageEmbedding.objects.get(image=new)
    assert row.ood_score is not None and 0.0 < row.ood_score < 2.0


def test_the_embedding_model_is_the_setting_or_the_lowest_version_with_embeddings(
    backbone: ModelVersion, settings: object
) -> None:
    assert embedding_version() == backbone
    settings.LOUPE_EMBEDDING_MODEL = 7  # type: ignore[attr-defined]
    with pytest.raises(EmbeddingError, match="v7"):
        embedding_version()


def test_compute_embeddings_command_records_a_job_and_reports_json(
    backbone: ModelVersion,
) -> None:
    store_photo("chelsea")
    out = io.StringIO()
    call_command("compute_embeddings", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["written"] == 1 and summary["indexed"] == 1
    job = Job.objects.get(pk=summary["job"])
    assert job.kind == EMBEDDINGS_KIND and job.status == JobStatus.SUCCEEDED
