from __future__ import annotations

import io
import json

import imagehash
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage
from PIL import ImageEnhance
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import DuplicateGroup, DuplicateMethod, Image, Job
from curation.services.duplicate_review import (
    duplicate_group_dismiss,
)
from curation.services.duplicates import duplicates_scan
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


# Edits pHash alone misses (more than 8 bits): the probe hashes bring them within reach.
MISSED_BY_PHASH_ALONE = {
    "cropped": lambda im: jpeg(_crop(im)),
    "rotated": lambda im: jpeg(im.rotate(5, resample=PILImage.Resampling.BICUBIC)),
}
FOUND_BY_BOTH = {
    "re-encoded": lambda im: jpeg(im.resize((im.width * 2 // 3, im.height * 2 // 3)), 60),
    "warmer": lambda im: jpeg(_warmer(im)),
    "saturated": lambda im: jpeg(ImageEnhance.Color(im).enhance(1.5)),
}
COPIES = ("original", *MISSED_BY_PHASH_ALONE, *FOUND_BY_BOTH)


@pytest.fixture
def library(backbone: ModelVersion) -> dict[str, Image]:
    """The cat photo, its edited copies, and distinct photos; hashed and embedded."""
    cat = photo("chelsea")
    images = {"original": store(jpeg(cat))}
    for name, edit in {**MISSED_BY_PHASH_ALONE, **FOUND_BY_BOTH}.items():
        images[name] = store(edit(cat))
    for name in DISTINCT:
        images[name] = store_photo(name)
    features_make(image_ids=[image.pk for image in images.values()])
    embeddings_compute()
    return images


def _copies(library: dict[str, Image]) -> set[int]:
    return {library[name].pk for name in COPIES}


def test_the_default_scan_finds_crops_and_rotations_that_phash_alone_misses(
    library: dict[str, Image],
) -> None:
    cat = photo("chelsea")
    for edit in MISSED_BY_PHASH_ALONE.values():
        edited = PILImage.open(io.BytesIO(edit(cat)))
        assert imagehash.phash(cat) - imagehash.phash(edited) > 8  # out of pHash's reach

    result = duplicates_scan()

    assert [set(group) for group in result.groups] == [_copies(library)]
    group = DuplicateGroup.objects.get()
    assert group.method == DuplicateMethod.PHASH
    rotated = group.members.get(image=library["rotated"])
    assert rotated.matches is not None and rotated.matches >= 15
    assert "local features agree on one geometry" in rotated.evidence


def test_embedding_candidates_are_verified_like_hash_candidates(
    library: dict[str, Image],
) -> None:
    result = duplicates_scan(method=DuplicateMethod.ALL)

    assert result.method == DuplicateMethod.ALL
    assert [set(group) for group in result.groups] == [_copies(library)]
    assert result.pairs <= result.candidates
    group = DuplicateGroup.objects.get()
    assert group.method == DuplicateMethod.ALL and group.size == len(COPIES)


def test_embeddings_alone_are_no_longer_offered_for_a_scan(
    library: dict[str, Image], reviewer_api: APIClient, client: Client, reviewer: User
) -> None:
    # Measured far below the hash candidates (bench/duplicate_quality.py): only with them.
    jobs = Job.objects.count()
    with pytest.raises(ValueError, match="phash or all"):
        duplicates_scan(method=DuplicateMethod.EMBEDDING)
    refused = reviewer_api.post("/api/v1/duplicates/scan/", {"method": "embedding"}, format="json")
    assert refused.status_code == 400
    with pytest.raises(CommandError, match="invalid choice: 'embedding'"):
        call_command("find_duplicates", "--method", "embedding", stdout=io.StringIO())
    client.force_login(reviewer)
    page = client.post(reverse("duplicates:scan"), {"method": "embedding"}, follow=True)
    assert "A scan&#x27;s method is phash or all" in page.content.decode()
    assert Job.objects.count() == jobs


def test_all_combines_both_signals_into_one_group_per_image(library: dict[str, Image]) -> None:
    duplicates_scan()
    duplicates_scan(method=DuplicateMethod.ALL)

    # The pHash group keeps its images; the combined scan finds nothing else to group.
    assert DuplicateGroup.objects.filter(method=DuplicateMethod.PHASH).count() == 1
    assert not DuplicateGroup.objects.filter(method=DuplicateMethod.ALL).exists()
    DuplicateGroup.objects.all().delete()
    duplicates_scan(method=DuplicateMethod.ALL)
    assert DuplicateGroup.objects.filter(method=DuplicateMethod.ALL).count() == 1


def test_images_judged_not_duplicates_are_not_grouped_again(library: dict[str, Image]) -> None:
    duplicates_scan(method=DuplicateMethod.ALL)
    group = DuplicateGroup.objects.get()
    duplicate_group_dismiss(group_id=group.pk, actor=None)
    again = duplicates_scan(method=DuplicateMethod.ALL)
    assert again.groups == []


def test_find_duplicates_takes_a_method(library: dict[str, Image]) -> None:
    out = io.StringIO()
    call_command("find_duplicates", "--json", stdout=out)
    default = json.loads(out.getvalue())
    assert default["method"] == "phash" and default["groups"] == 1
    DuplicateGroup.objects.all().delete()

    out = io.StringIO()
    call_command("find_duplicates", "--method", "all", "--json", stdout=out)
    both = json.loads(out.getvalue())
    assert both["method"] == "all" and both["groups"] == 1
    members = both["duplicate_groups"][0]["images"]
    assert {m["id"] for m in members} == _copies(library)
    assert all(m["nearest_similarity"] > 0.5 for m in members)


def test_the_duplicates_api_shows_and_filters_by_method(
    library: dict[str, Image], reviewer_api: APIClient
) -> None:
    duplicates_scan(method=DuplicateMethod.ALL)
    listed = reviewer_api.get("/api/v1/duplicates/?method=all").json()["results"]
    assert len(listed) == 1 and listed[0]["method"] == "all"
    assert all(m["similarity"] > 0.5 for m in listed[0]["members"])
    assert reviewer_api.get("/api/v1/duplicates/?method=phash").json()["results"] == []
    bad = reviewer_api.get("/api/v1/duplicates/?method=colour")
    assert bad.status_code == 400
    assert bad.json()["detail"] == "method: must be one of phash, embedding, all."

    started = reviewer_api.post("/api/v1/duplicates/scan/", {"method": "all"}, format="json")
    assert started.status_code == 202
    assert started.json()["params"]["method"] == "all"


def test_the_review_page_names_the_method_and_filters_by_it(
    library: dict[str, Image], client: Client, reviewer: User
) -> None:
    duplicates_scan(method=DuplicateMethod.ALL)
    client.force_login(reviewer)
    page = client.get("/duplicates/?method=all").content.decode()
    assert 'id="group-method"' in page and ">pHash and embedding</span>" in page
    assert "<dd>similarity 0.9" in page
    assert "No open" in client.get("/duplicates/?method=phash").content.decode()


def test_the_scan_job_runs_the_method_it_was_given(library: dict[str, Image]) -> None:
    from curation.apis_duplicates import duplicates_scan_job_start
    from curation.tasks_duplicates import find_duplicates

    job = duplicates_scan_job_start(actor=None, max_distance=8, method="all")
    find_duplicates(job.pk)
    job.refresh_from_db()
    assert job.result["method"] == "all" and job.result["groups"] == 1
