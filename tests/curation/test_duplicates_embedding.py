from __future__ import annotations

import io
import json

import imagehash
import pytest
from django.core.management import call_command
from django.test import Client
from PIL import Image as PILImage
from PIL import ImageEnhance
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import DuplicateGroup, DuplicateMethod, DuplicateStatus, Image
from curation.services.duplicate_review import (
    duplicate_group_dismiss,
)
from curation.services.duplicates import (
    duplicates_scan,
    duplicates_scan_embedding,
)
from curation.services.hashing import features_make
from inference.embeddings import embeddings_compute
from inference.models import ModelVersion
from tests.curation.duplicate_photos import jpeg, photo
from tests.inference.photos import backbone, store, store_photo

pytestmark = pytest.mark.django_db
__all__ = ["backbone"]

DISTINCT = ("coffee", "astronaut", "rocket", "camera", "horse")


def _crop(image: PILImage.Image) -> PILImage.Image:
    w, h = image.size
    return image.crop((int(w * 0.08), int(h * 0.08), w, h))


def _warmer(image: PILImage.Image) -> PILImage.Image:
    red, green, blue = image.split()
    return PILImage.merge(
        "RGB", (red.point(lambda v: min(255, int(v * 1.15))), green, blue.point(lambda v: v * 0.85))
    )


# Edits pHash misses (14 bits, at 8 allowed), and colour shifts and re-encodes it finds too.
MISSED_BY_PHASH = {
    "cropped": lambda im: jpeg(_crop(im)),
    "rotated": lambda im: jpeg(im.rotate(7, resample=PILImage.Resampling.BICUBIC)),
}
FOUND_BY_BOTH = {
    "re-encoded": lambda im: jpeg(im.resize((im.width * 2 // 3, im.height * 2 // 3)), 60),
    "warmer": lambda im: jpeg(_warmer(im)),
    "saturated": lambda im: jpeg(ImageEnhance.Color(im).enhance(1.5)),
}


@pytest.fixture
def library(backbone: ModelVersion) -> dict[str, Image]:
    """The cat photo, its edited copies, and distinct photos; hashed and embedded."""
    cat = photo("chelsea")
    images = {"original": store(jpeg(cat))}
    for name, edit in {**MISSED_BY_PHASH, **FOUND_BY_BOTH}.items():
        images[name] = store(edit(cat))
    for name in DISTINCT:
        images[name] = store_photo(name)
    features_make(image_ids=[image.pk for image in images.values()])
    embeddings_compute()
    return images


def _group_of(image: Image) -> DuplicateGroup | None:
    return DuplicateGroup.objects.filter(members__image=image, status=DuplicateStatus.OPEN).first()


def test_the_embedding_method_finds_edited_copies_that_phash_misses(
    library: dict[str, Image],
) -> None:
    cat = photo("chelsea")
    for edit in MISSED_BY_PHASH.values():
        edited = PILImage.open(io.BytesIO(edit(cat)))
        assert imagehash.phash(cat) - imagehash.phash(edited) > 8  # out of pHash's reach

    phash = duplicates_scan()
    phash_members = {i for group in phash.groups for i in group}
    assert library["cropped"].pk not in phash_members
    assert library["rotated"].pk not in phash_members
    DuplicateGroup.objects.all().delete()

    result = duplicates_scan_embedding()
    assert result.method == DuplicateMethod.EMBEDDING
    copies = {library[name].pk for name in ("original", *MISSED_BY_PHASH, *FOUND_BY_BOTH)}
    assert [set(group) for group in result.groups] == [copies]
    group = DuplicateGroup.objects.get()
    assert group.method == DuplicateMethod.EMBEDDING and group.size == len(copies)


def test_scans_replace_only_their_own_method_and_share_no_image(
    library: dict[str, Image],
) -> None:
    phash = duplicates_scan()
    assert len(phash.groups) == 1  # the original, re-encoded and colour-shifted copies
    phash_group = DuplicateGroup.objects.get(method=DuplicateMethod.PHASH)
    embedding = duplicates_scan_embedding()
    # The pHash group keeps its images; the embedding group holds the copies pHash missed.
    assert DuplicateGroup.objects.filter(pk=phash_group.pk).exists()
    assert [set(group) for group in embedding.groups] == [
        {library["cropped"].pk, library["rotated"].pk}
    ]
    duplicates_scan_embedding()
    assert DuplicateGroup.objects.filter(pk=phash_group.pk).exists()
    assert DuplicateGroup.objects.filter(method=DuplicateMethod.EMBEDDING).count() == 1


def test_images_judged_not_duplicates_are_not_grouped_again(library: dict[str, Image]) -> None:
    duplicates_scan_embedding()
    group = DuplicateGroup.objects.get()
    duplicate_group_dismiss(group_id=group.pk, actor=None)
    again = duplicates_scan_embedding()
    assert again.groups == []


def test_find_duplicates_takes_a_method(library: dict[str, Image]) -> None:
    out = io.StringIO()
    call_command("find_duplicates", "--json", stdout=out)
    default = json.loads(out.getvalue())
    assert default["method"] == "phash" and default["groups"] == 1

    out = io.StringIO()
    call_command("find_duplicates", "--method", "embedding", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["method"] == "embedding" and summary["groups"] == 1
    members = summary["duplicate_groups"][0]["images"]
    assert {m["id"] for m in members} == {library["cropped"].pk, library["rotated"].pk}
    assert all(m["nearest_similarity"] >= 0.95 for m in members)

    out, err = io.StringIO(), io.StringIO()
    call_command("find_duplicates", "--method", "embedding", stdout=out, stderr=err)
    assert "embedding group" in out.getvalue()
    assert "1 embedding duplicate group (2 images)" in out.getvalue()

    out = io.StringIO()
    call_command("find_duplicates", "--method", "all", "--json", stdout=out)
    both = json.loads(out.getvalue())
    assert [scan["method"] for scan in both["scans"]] == ["phash", "embedding"]
    assert DuplicateGroup.objects.filter(status=DuplicateStatus.OPEN).count() == 2


def test_the_duplicates_api_shows_and_filters_by_method(
    library: dict[str, Image], reviewer_api: APIClient
) -> None:
    duplicates_scan()
    duplicates_scan_embedding()
    listed = reviewer_api.get("/api/v1/duplicates/?method=embedding").json()["results"]
    assert len(listed) == 1 and listed[0]["method"] == "embedding"
    assert all(m["similarity"] >= 0.95 for m in listed[0]["members"])
    phash = reviewer_api.get("/api/v1/duplicates/?method=phash").json()["results"]
    assert len(phash) == 1 and phash[0]["members"][0]["similarity"] is None
    assert len(reviewer_api.get("/api/v1/duplicates/").json()["results"]) == 2
    bad = reviewer_api.get("/api/v1/duplicates/?method=colour")
    assert bad.status_code == 400
    assert bad.json()["detail"] == "method: must be one of phash, embedding."

    started = reviewer_api.post("/api/v1/duplicates/scan/", {"method": "embedding"}, format="json")
    assert started.status_code == 202
    assert started.json()["params"]["method"] == "embedding"


def test_the_review_page_names_the_method_and_filters_by_it(
    library: dict[str, Image], client: Client, reviewer: User
) -> None:
    duplicates_scan()
    duplicates_scan_embedding()
    client.force_login(reviewer)
    page = client.get("/duplicates/?method=embedding").content.decode()
    assert 'id="group-method"' in page and ">Embedding</span>" in page
    assert "<dd>similarity 0.9" in page
    page = client.get("/duplicates/?method=phash").content.decode()
    assert ">pHash</span>" in page and "<dd>similarity" not in page


def test_the_scan_job_runs_the_method_it_was_given(library: dict[str, Image]) -> None:
    from curation.apis_duplicates import duplicates_scan_job_start
    from curation.models import Job
    from curation.tasks_duplicates import find_duplicates

    job = duplicates_scan_job_start(actor=None, max_distance=8, method="all")
    find_duplicates(job.pk)
    job.refresh_from_db()
    assert [scan["method"] for scan in job.result["scans"]] == ["phash", "embedding"]
    assert set(DuplicateGroup.objects.values_list("method", flat=True)) == {"phash", "embedding"}
    assert isinstance(job, Job)
