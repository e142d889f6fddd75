from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Image, Job, JobStatus
from curation.services.images import image_trash
from inference.embeddings import (
    EMBEDDINGS_KIND,
    EmbeddingError,
    embedding_matrix,
    embedding_version,
    embeddings_compute,
    embeddings_for_new_images,
    embeddings_make,
    ood_dashboard,
)
from inference.models import ImageEmbedding, ModelVersion, PredictionLog
from inference.production import LogEntry, prediction_log_record
from tests.curation.duplicate_photos import photo
from tests.factories import SubClassFactory
from tests.inference.onnx_models import tiny_embedder
from tests.inference.photos import backbone, store_photo, store_pil

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


def test_a_compute_over_many_pages_embeds_every_image_and_reports_to_the_end(
    make_image: Callable[..., Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.files.storage import default_storage

    monkeypatch.setattr("inference.embeddings.compute.BATCH_SIZE", 2)
    version = tiny_embedder()
    images = [make_image() for _ in range(11)]
    broken = images[5]
    with default_storage.open(broken.storage_name, "wb") as stream:
        stream.write(b"no longer a JPEG")
    embeddings_make(image_ids=[image.pk for image in images[:3]], version=version)
    reports: list[tuple[int, int]] = []

    result = embeddings_compute(
        version=version, progress=lambda done, total: reports.append((done, total)), chunk_size=4
    )

    assert (result["images"], result["written"], result["skipped"]) == (8, 7, 1)
    assert len(reports) >= 2 and reports[-1] == (8, 8)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    embedded = ImageEmbedding.objects.filter(model_version=version).values_list(
        "image_id", flat=True
    )
    assert set(embedded) == {image.pk for image in images} - {broken.pk}


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


# --- Out-of-distribution scores -------------------------------------------------------------


@pytest.fixture
def ood_library(backbone: ModelVersion, settings: Any) -> dict[str, Image]:
    """A labelled library of cats and cups, an inbox cat and an inbox moon, all scored."""
    settings.LOUPE_OOD_NEIGHBOURS = 3
    cats, cups = SubClassFactory(), SubClassFactory()
    cat, coffee = photo("chelsea"), photo("coffee")
    w, h = cat.size
    for image in (cat, cat.rotate(5), cat.crop((20, 10, w, h))):
        store_pil(image, cats)
    for image in (coffee, coffee.rotate(5), coffee.crop((20, 10, coffee.width, coffee.height))):
        store_pil(image, cups)
    like = store_pil(cat.resize((w // 2, h // 2)))
    unlike = store_photo("moon")
    embeddings_compute()
    return {"like": like, "unlike": unlike}


def _ood(image: Image) -> float:
    score = ImageEmbedding.objects.get(image=image).ood_score
    assert score is not None
    return score


def test_an_image_unlike_the_library_scores_higher_than_one_like_it(
    ood_library: dict[str, Image],
) -> None:
    like, unlike = _ood(ood_library["like"]), _ood(ood_library["unlike"])
    assert 0.0 <= like < 0.5 < unlike <= 2.0
    # Labelled images are scored too, without counting themselves among their neighbours.
    labelled = ImageEmbedding.objects.filter(image__subclass__isnull=False)
    assert all(row.ood_score is not None and row.ood_score > 0.005 for row in labelled)


def test_new_images_are_scored_against_the_labelled_set_as_it_is_now(
    ood_library: dict[str, Image],
) -> None:
    from curation.services.images import image_relabel

    moon = photo("moon")
    first = store_pil(moon.rotate(4))
    embeddings_for_new_images(image_ids=[first.pk])
    assert _ood(first) > 0.5  # nothing like it is labelled
    image_relabel(
        image_id=ood_library["unlike"].pk,
        subclass=SubClassFactory(),
        actor=None,
        reason="labelling",
        expected_version=None,
    )
    second = store_pil(moon.crop((10, 10, moon.width, moon.height)))
    embeddings_for_new_images(image_ids=[second.pk])
    assert _ood(second) < _ood(first)


def test_ood_min_filters_the_images_api_and_the_inbox(
    ood_library: dict[str, Image], api: APIClient, client: Client, labeller: User
) -> None:
    unlike = ood_library["unlike"]
    listed = api.get("/api/v1/images/?ood_min=0.5").json()["results"]
    assert [row["id"] for row in listed] == [unlike.pk]
    assert len(api.get("/api/v1/images/?ood_min=0").json()["results"]) == 8

    client.force_login(labeller)
    page = client.get("/inbox/?ood_min=0.5").content.decode()
    assert f'href="/images/{unlike.pk}/"' in page
    assert f'href="/images/{ood_library["like"].pk}/"' not in page
    assert 'name="ood_min"' in page


def test_ood_min_filters_the_identify_results(ood_library: dict[str, Image]) -> None:
    from inference.bulk import ResultFilter, Scope, identification_results
    from inference.services import predictions_make

    version = ModelVersion.objects.get(number=1)
    predictions_make(image_ids=[image.pk for image in ood_library.values()], version=version)
    scope = Scope(labelled=False)
    everything = identification_results(filters=ResultFilter(version=version, scope=scope))
    assert len(everything.rows) == 2
    unlike = identification_results(filters=ResultFilter(version=version, scope=scope, ood_min=0.5))
    assert [row.image.pk for row in unlike.rows] == [ood_library["unlike"].pk]


def _log(image: Image, score: float) -> PredictionLog:
    entry = LogEntry(
        client="app",
        model_version_label="v1",
        class_names=["tabby", "moon"],
        scores=[score, 1 - score],
        image_sha256=image.sha256,
    )
    return prediction_log_record(entry=entry, actor=None).log


def test_production_logs_filter_and_show_their_images_ood_score(
    ood_library: dict[str, Image], reviewer_api: APIClient, client: Client, reviewer: User
) -> None:
    like = _log(ood_library["like"], 0.4)
    unlike = _log(ood_library["unlike"], 0.3)
    api = reviewer_api

    listed = api.get("/api/v1/prediction-logs/?ood_min=0.5").json()["results"]
    assert [row["id"] for row in listed] == [unlike.pk]
    assert listed[0]["ood_score"] == pytest.approx(_ood(ood_library["unlike"]))
    assert len(api.get("/api/v1/prediction-logs/").json()["results"]) == 2
    assert api.get("/api/v1/prediction-logs/?ood_min=far").status_code == 400

    client.force_login(reviewer)
    sad = client.get("/production/review/sad/?ood_min=0.5").content.decode()
    assert f'value="{unlike.pk}"' in sad and "unlike the library</span>" in sad
    assert f'value="{like.pk}"' not in sad

    board = client.get("/production/").content.decode()
    assert "Unlike the library" in board
    assert "2 logs in the range, 2 scored: <strong>50 %</strong>" in board

    # Past the sample size the panel reads logs spread over the range, not all of them.
    now = timezone.now()
    panel = ood_dashboard(start=now - timedelta(days=1), end=now + timedelta(days=1), sample=1)
    assert panel.capped and panel.logs == 1 and panel.scored == 1


def test_the_demo_computes_embeddings_when_the_backbone_is_installed(
    backbone: ModelVersion,
) -> None:
    out = io.StringIO()
    call_command("demo", "--small", "--no-thumbnails", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    embedded = summary["model"]["embeddings"]  # the demo's model stage computes them
    assert embedded["written"] == summary["created"] > 100
    assert ImageEmbedding.objects.filter(ood_score__isnull=False).count() == summary["created"]


def test_reviewers_start_the_embeddings_job_over_the_api_and_the_worker_runs_it(
    backbone: ModelVersion, reviewer_api: APIClient, api: APIClient
) -> None:
    from inference.tasks import compute_embeddings

    image = store_photo("chelsea")
    assert api.post("/api/v1/images/embeddings/").status_code == 403
    started = reviewer_api.post("/api/v1/images/embeddings/")
    assert started.status_code == 202 and started.json()["kind"] == EMBEDDINGS_KIND
    compute_embeddings(started.json()["id"])
    job = Job.objects.get(pk=started.json()["id"])
    assert job.status == JobStatus.SUCCEEDED and job.result["written"] == 1
    assert ImageEmbedding.objects.filter(image=image).exists()


def test_the_image_page_offers_reviewers_to_compute_missing_embeddings(
    backbone: ModelVersion, client: Client, reviewer: User
) -> None:
    image = store_photo("chelsea")
    client.force_login(reviewer)
    page = client.get(f"/images/{image.pk}/").content.decode()
    assert 'id="compute-embeddings"' in page
    response = client.post("/embeddings/compute", {"next": f"/images/{image.pk}/"})
    assert response.status_code == 302 and response.url == f"/images/{image.pk}/"
    assert Job.objects.filter(kind=EMBEDDINGS_KIND).count() == 1


def test_the_backbone_suggests_and_embeds_new_images_in_one_pass(
    backbone: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curation.tasks import process_images
    from inference.embeddings import compute
    from inference.models import Prediction

    assert backbone.is_active  # the active model is also the embedding model
    images = [store_photo(name) for name in ("chelsea", "coffee")]
    runs: list[list[str]] = []
    session_for = compute.session_for

    class Counting:
        def __init__(self, session: Any) -> None:
            self.session = session

        def get_inputs(self) -> Any:
            return self.session.get_inputs()

        def run(self, outputs: list[str], feeds: Any) -> Any:
            runs.append(outputs)
            return self.session.run(outputs, feeds)

    monkeypatch.setattr(
        compute, "session_for", lambda version, **kw: Counting(session_for(version, **kw))
    )
    process_images([image.pk for image in images])
    assert runs == [["logits", "embedding"]]  # one batch, both outputs
    cat = Prediction.objects.get(image=images[0])
    assert cat.class_names[0] in {"Egyptian cat", "tabby", "tiger cat"}
    images[0].refresh_from_db()
    assert images[0].suggestion_score == cat.top1_score

    # The same vectors as the embedding step alone would store.
    together = dict(ImageEmbedding.objects.values_list("image_id", "vector"))
    ImageEmbedding.objects.all().delete()
    embeddings_for_new_images(image_ids=[image.pk for image in images])
    alone = dict(ImageEmbedding.objects.values_list("image_id", "vector"))
    assert {k: bytes(v) for k, v in together.items()} == {k: bytes(v) for k, v in alone.items()}
