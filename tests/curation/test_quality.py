from __future__ import annotations

import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from PIL import ImageEnhance, ImageFilter
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import (
    Image,
    ImageFeatures,
    ImportKind,
    Job,
    LabelClass,
    LabelReason,
    QualityBaseline,
    SavedFilter,
    SubClass,
)
from curation.services.hashing import features_make
from curation.services.images import (
    file_inspect,
    image_import,
    image_relabel,
    image_trash,
    import_batch_create,
)
from curation.services.quality import (
    QUALITY_BASELINE_JOB,
    flag_q,
    quality_baseline_update,
    quality_flags,
)
from curation.tasks_duplicates import update_quality_baseline
from labelling.queues import queue_resolve
from tests.curation.duplicate_photos import DISTINCT, PHOTOS, jpeg, photo
from tests.factories import LabelClassFactory


def _add(data: bytes) -> Image:
    batch = import_batch_create(kind=ImportKind.UPLOAD, name="test", actor=None)
    result = image_import(
        inspection=file_inspect(data=data, name="photo.jpg"),
        content=io.BytesIO(data),
        subclass=None,
        actor=None,
        batch=batch,
    )
    assert result.image is not None
    return result.image


@pytest.fixture
def library(db: None) -> dict[str, Image]:
    """Ordinary photographs, plus one planted dark, bright and blurry image."""
    ordinary = [name for name in PHOTOS + DISTINCT if name != "horse"]  # a white silhouette
    images = {name: _add(jpeg(photo(name))) for name in ordinary}
    base = photo("coffee").crop((0, 0, 300, 300))
    images["dark"] = _add(jpeg(ImageEnhance.Brightness(base).enhance(0.08)))
    images["bright"] = _add(jpeg(ImageEnhance.Brightness(photo("astronaut")).enhance(3.0)))
    images["blurry"] = _add(jpeg(photo("chelsea").filter(ImageFilter.GaussianBlur(8))))
    features_make(image_ids=[image.pk for image in images.values()])
    return images


def test_lint_flags_the_planted_dark_bright_and_blurry_images(library: dict[str, Image]) -> None:
    stats = quality_baseline_update().stats

    flags = {
        name: quality_flags(features=ImageFeatures.objects.get(image=image), stats=stats)
        for name, image in library.items()
    }

    assert "too_dark" in flags["dark"]
    assert "too_bright" in flags["bright"]
    assert "blurry" in flags["blurry"]
    ordinary = {name: f for name, f in flags.items() if name not in ("dark", "bright", "blurry")}
    assert not any({"too_dark", "too_bright", "blurry"} & set(f) for f in ordinary.values()), (
        ordinary
    )


def test_a_flag_filters_an_image_list(library: dict[str, Image]) -> None:
    stats = quality_baseline_update().stats

    blurry = Image.objects.filter(flag_q(flag="blurry", stats=stats))

    assert library["blurry"] in blurry
    # The planted dark image is too dark to show detail: it may count as blurry as well.
    assert set(blurry) <= {library["blurry"], library["dark"]}


def test_an_override_wins_over_the_adaptive_threshold(library: dict[str, Image]) -> None:
    stats = quality_baseline_update(overrides={"too_dark": {"low": 0.5}}).stats

    dark = Image.objects.filter(flag_q(flag="too_dark", stats=stats))

    assert not dark.exists()


def test_metrics_describe_the_pixels(library: dict[str, Image]) -> None:
    camera = ImageFeatures.objects.get(image=library["camera"])
    coffee = ImageFeatures.objects.get(image=library["coffee"])

    assert camera.is_grayscale and not coffee.is_grayscale
    assert camera.aspect_ratio == 1.0 and camera.megapixels == pytest.approx(0.262, abs=0.001)
    assert 0 < camera.entropy <= 8
    assert camera.brightness_p05 <= camera.brightness_p50 <= camera.brightness_p95


# --- Quality filters on the image lists ------------------------------------------------------

PLANTED = {"too_dark": "dark", "too_bright": "bright", "blurry": "blurry"}


def _shown_ids(response: Any) -> set[int]:
    assert response.status_code == 200
    return {image.pk for image in response.context["page"].items}


@pytest.fixture
def birds(library: dict[str, Image]) -> LabelClass:
    """A class holding every image of the library, with the baseline computed."""
    label_class = LabelClassFactory(name="Birds")
    default = SubClass.objects.get(label_class=label_class)
    for image in library.values():
        image_relabel(
            image_id=image.pk,
            subclass=default,
            actor=None,
            reason=LabelReason.LABELLING,
            expected_version=None,
        )
    quality_baseline_update()
    return label_class


@pytest.mark.parametrize("flag", PLANTED)
def test_the_class_page_shows_only_the_planted_images_a_flag_names(
    client: Client, labeller: User, library: dict[str, Image], birds: LabelClass, flag: str
) -> None:
    client.force_login(labeller)

    shown = _shown_ids(client.get(reverse("curation:class", args=[birds.pk]), {"quality": flag}))

    assert library[PLANTED[flag]].pk in shown
    assert library["coffee"].pk not in shown
    # Dark enough to show no detail, the dark image may count as blurry too; nothing else.
    assert shown <= {library["dark"].pk, library[PLANTED[flag]].pk}


def test_the_class_page_keeps_the_quality_filter_across_pages(
    client: Client, labeller: User, library: dict[str, Image], birds: LabelClass
) -> None:
    client.force_login(labeller)
    url = reverse("curation:class", args=[birds.pk])

    page = client.get(url, {"quality": "blurry"})

    assert b'name="quality"' in page.content
    assert b'<option value="blurry" selected>' in page.content
    assert page.context["base_query"] == "quality=blurry&"


@pytest.mark.parametrize("flag", PLANTED)
def test_the_inbox_shows_only_the_planted_images_a_flag_names(
    client: Client, labeller: User, library: dict[str, Image], flag: str
) -> None:
    quality_baseline_update()
    client.force_login(labeller)

    shown = _shown_ids(client.get(reverse("curation:inbox"), {"quality": flag}))

    assert library[PLANTED[flag]].pk in shown
    assert shown <= {library["dark"].pk, library[PLANTED[flag]].pk}


def test_the_trash_filters_by_quality_too(
    client: Client, labeller: User, library: dict[str, Image]
) -> None:
    quality_baseline_update()
    for name in ("bright", "coffee"):
        image_trash(image_id=library[name].pk, actor=None, note="test")
    client.force_login(labeller)

    shown = _shown_ids(client.get(reverse("curation:trash"), {"quality": "too_bright"}))

    assert shown == {library["bright"].pk}


def test_the_inbox_says_when_a_flag_has_no_threshold_yet(
    client: Client, labeller: User, library: dict[str, Image]
) -> None:
    client.force_login(labeller)

    response = client.get(reverse("curation:inbox"), {"quality": "blurry"})

    assert _shown_ids(response) == set()
    assert b"has no threshold yet" in response.content


def test_an_unknown_quality_value_is_ignored_by_the_pages(
    client: Client, labeller: User, library: dict[str, Image]
) -> None:
    client.force_login(labeller)

    response = client.get(reverse("curation:inbox"), {"quality": "features__sharpness__lt"})

    assert len(_shown_ids(response)) == len(library)


@pytest.mark.parametrize("flag", PLANTED)
def test_the_image_api_filters_by_a_quality_flag(
    api: APIClient, library: dict[str, Image], flag: str
) -> None:
    quality_baseline_update()

    response = api.get("/api/v1/images/", {"quality": flag})

    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert library[PLANTED[flag]].pk in ids
    assert ids <= {library["dark"].pk, library[PLANTED[flag]].pk}


def test_the_image_api_filters_greyscale_images(api: APIClient, library: dict[str, Image]) -> None:
    response = api.get("/api/v1/images/", {"quality": "grayscale"})

    ids = {row["id"] for row in response.json()["results"]}
    assert library["camera"].pk in ids and library["coffee"].pk not in ids


def test_the_image_api_rejects_a_quality_value_it_does_not_offer(
    api: APIClient, library: dict[str, Image]
) -> None:
    response = api.get("/api/v1/images/", {"quality": "sharpness"})

    assert response.status_code == 400
    assert "quality" in response.json()["errors"]


def test_quality_filtered_lists_read_the_thresholds_once(
    client: Client,
    labeller: User,
    library: dict[str, Image],
    birds: LabelClass,
    django_assert_max_num_queries: Any,
) -> None:
    client.force_login(labeller)
    url = reverse("curation:class", args=[birds.pk])
    plain = _count_queries(client, url)

    with django_assert_max_num_queries(plain + 1):
        client.get(url, {"quality": "blurry"})


def _count_queries(client: Client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as context:
        assert client.get(url).status_code == 200
    return len(context.captured_queries)


# --- The quality page ------------------------------------------------------------------------


def test_the_baseline_stores_a_histogram_per_metric_and_the_flag_counts(
    library: dict[str, Image],
) -> None:
    baseline = quality_baseline_update()

    sharpness = baseline.histograms["metrics"]["sharpness"]
    assert sum(sharpness["counts"]) == len(library)
    assert len(sharpness["edges"]) == len(sharpness["counts"]) + 1
    counts = baseline.histograms["flag_counts"]
    assert counts["too_dark"] >= 1 and counts["too_bright"] >= 1 and counts["blurry"] >= 1
    assert counts["grayscale"] == ImageFeatures.objects.filter(is_grayscale=True).count()


def test_the_quality_page_shows_histograms_thresholds_and_the_worst_images(
    client: Client, labeller: User, library: dict[str, Image]
) -> None:
    quality_baseline_update()
    client.force_login(labeller)

    response = client.get(reverse("quality:page"))

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg class="histogram"') == 7
    assert 'class="threshold"' in html
    blurriest = next(m for m in response.context["metrics"] if m.field == "sharpness").strips[0]
    # The planted dark image shows no detail either: it may come first.
    assert library["blurry"] in [image for image, _, _ in blurriest.images[:2]]
    assert reverse("curation:image", args=[library["blurry"].pk]) in html
    # Labellers see the thresholds but no override form.
    assert 'name="blurry-low"' not in html


def test_the_quality_page_runs_the_same_queries_whatever_the_library_size(
    client: Client,
    labeller: User,
    library: dict[str, Image],
    make_image: Any,
    django_assert_max_num_queries: Any,
) -> None:
    quality_baseline_update()
    client.force_login(labeller)
    small = _count_queries(client, reverse("quality:page"))
    extra = [make_image() for _ in range(12)]
    features_make(image_ids=[image.pk for image in extra])
    quality_baseline_update()

    with django_assert_max_num_queries(small):
        client.get(reverse("quality:page"))
    assert small <= 16


def test_the_quality_page_says_when_nothing_is_computed_yet(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)

    response = client.get(reverse("quality:page"))

    assert response.status_code == 200
    assert b"have not been computed yet" in response.content
    assert b"Recompute" in response.content


def test_labellers_cannot_change_thresholds_or_recompute(
    client: Client, labeller: User, library: dict[str, Image]
) -> None:
    quality_baseline_update()
    client.force_login(labeller)

    changed = client.post(reverse("quality:thresholds"), {"too_dark-low": "90"})
    recomputed = client.post(reverse("quality:recompute"))

    assert changed.status_code == 403 and recomputed.status_code == 403
    assert not Job.objects.exists()
    assert QualityBaseline.objects.get().overrides == {}


def test_a_reviewer_overrides_a_threshold_through_the_baseline_job(
    client: Client, reviewer: User, library: dict[str, Image]
) -> None:
    quality_baseline_update()
    client.force_login(reviewer)

    response = client.post(
        reverse("quality:thresholds"), {"too_dark-low": "0.5", "too_bright-high": ""}
    )

    assert response.status_code == 302
    job = Job.objects.get(kind=QUALITY_BASELINE_JOB)
    assert job.params == {"overrides": {"too_dark": {"low": 0.5}}}
    update_quality_baseline(job.pk)
    baseline = QualityBaseline.objects.get()
    assert baseline.overrides == {"too_dark": {"low": 0.5}}
    assert baseline.stats["too_dark"]["low"] == 0.5
    assert baseline.histograms["flag_counts"]["too_dark"] == 0
    assert (
        client.get(reverse("curation:inbox"), {"quality": "too_dark"}).context["page"].items == []
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"too_dark-low": "dark"},
        {"too_dark-high": "5"},
        {"odd_aspect_ratio-low": "2", "odd_aspect_ratio-high": "1"},
    ],
)
def test_a_reviewer_cannot_save_a_threshold_that_makes_no_sense(
    client: Client, reviewer: User, fields: dict[str, str]
) -> None:
    client.force_login(reviewer)

    response = client.post(reverse("quality:thresholds"), fields, follow=True)

    assert not Job.objects.exists()
    assert list(response.context["messages"])


def test_the_flagged_images_open_as_a_labelling_queue(
    client: Client, labeller: User, library: dict[str, Image]
) -> None:
    quality_baseline_update()
    client.force_login(labeller)

    first = client.post(reverse("quality:label", args=["blurry"]))
    again = client.post(reverse("quality:label", args=["blurry"]))

    saved = SavedFilter.objects.get()
    assert first.url == again.url == reverse("labelling:label", args=[f"filter:{saved.pk}"])
    queue = queue_resolve(f"filter:{saved.pk}")
    assert library["blurry"] in queue.images
    assert set(queue.images) <= {library["blurry"], library["dark"]}
