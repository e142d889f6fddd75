"""The images API: uploads with per-file reports, relabelling with optimistic concurrency,
trash and restore with history, roles, served files, filters and bounded queries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Image, ImageStatus, LabelEvent, SubClass
from curation.services.images import image_relabel
from tests.factories import LabelClassFactory, SubClassFactory, image_bytes

pytestmark = pytest.mark.django_db

IMAGES = "/api/v1/images/"
PDF = b"%PDF-1.4\n%%EOF\n"


def upload(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def default_of(label_class: Any) -> SubClass:
    return SubClass.objects.get(label_class=label_class, is_default=True)


# --- Uploads ----------------------------------------------------------------------------------


def test_uploading_one_image_stores_it_and_reports_it(api: APIClient, labeller: User) -> None:
    data = image_bytes(fmt="PNG", size=(40, 30), seed=2001)

    response = api.post(IMAGES, {"file": upload("bird.png", data, "image/png")}, format="multipart")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["created"], body["duplicate"], body["rejected"]) == (1, 0, 0)
    [line] = body["files"]
    assert (line["name"], line["outcome"], line["reason"]) == ("bird.png", "created", "")
    image = Image.objects.get(pk=line["image"]["id"])
    assert (image.format, image.width, image.height, image.file_size) == ("PNG", 40, 30, len(data))
    assert image.original_filename == "bird.png"
    assert image.subclass is None  # no class given: the inbox
    assert image.import_batch.created_by == labeller


def test_uploading_several_files_reports_each_one(api: APIClient) -> None:
    same = image_bytes(seed=2002)
    files = [
        upload("a.jpg", same),
        upload("b.jpg", image_bytes(seed=2003)),
        upload("a-again.jpg", same),
        upload("report.jpg", PDF),
        upload("empty.jpg", b""),
    ]

    response = api.post(IMAGES, {"files": files}, format="multipart")

    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["duplicate"], body["rejected"]) == (2, 1, 2)
    outcomes = {line["name"]: (line["outcome"], line["reason"]) for line in body["files"]}
    assert outcomes["a.jpg"] == ("created", "")
    assert outcomes["a-again.jpg"][0] == "duplicate"
    assert "not a supported image" in outcomes["report.jpg"][1]
    assert outcomes["empty.jpg"] == ("rejected", "empty file (zero bytes)")
    assert Image.objects.count() == 2


def test_uploading_the_same_bytes_again_returns_the_existing_image(api: APIClient) -> None:
    data = image_bytes(seed=2004)
    first = api.post(IMAGES, {"file": upload("a.jpg", data)}, format="multipart").json()

    response = api.post(IMAGES, {"file": upload("renamed.jpg", data)}, format="multipart")

    assert response.status_code == 200
    [line] = response.json()["files"]
    assert line["outcome"] == "duplicate"
    assert line["image"]["id"] == first["files"][0]["image"]["id"]
    assert Image.objects.count() == 1


def test_uploading_a_copy_of_a_trashed_image_says_it_is_in_the_trash(
    api: APIClient, reviewer_api: APIClient
) -> None:
    data = image_bytes(seed=2005)
    image_id = api.post(IMAGES, {"file": upload("a.jpg", data)}, format="multipart").json()[
        "files"
    ][0]["image"]["id"]
    reviewer_api.delete(f"{IMAGES}{image_id}/?reason=blurry")

    [line] = api.post(IMAGES, {"file": upload("a.jpg", data)}, format="multipart").json()["files"]

    assert line["outcome"] == "duplicate"
    assert "in the trash" in line["reason"]
    assert Image.objects.count() == 1


def test_uploading_only_bad_files_is_a_400_naming_each_problem(api: APIClient) -> None:
    files = [upload("report.jpg", PDF), upload("cut.jpg", image_bytes(size=(100, 100))[:-50])]

    response = api.post(IMAGES, {"files": files}, format="multipart")

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "report.jpg: not a supported image" in detail
    assert "cut.jpg: truncated image" in detail
    assert not Image.objects.exists()


def test_uploading_nothing_is_a_400(api: APIClient) -> None:
    response = api.post(IMAGES, {}, format="multipart")

    assert response.status_code == 400
    assert "files" in response.json()["detail"]


def test_uploading_into_a_class_puts_images_in_its_default_sub_class(api: APIClient) -> None:
    robin = LabelClassFactory(name="Robin")

    response = api.post(
        IMAGES,
        {"file": upload("a.jpg", image_bytes(seed=2006)), "label_class": robin.pk},
        format="multipart",
    )

    assert response.status_code == 201
    image = Image.objects.get()
    assert image.subclass == default_of(robin)
    assert default_of(robin).image_count == 1
    assert response.json()["files"][0]["image"]["class_name"] == "Robin"


def test_uploading_to_a_sub_class_of_another_class_is_refused(api: APIClient) -> None:
    robin, wren = LabelClassFactory(name="Robin"), LabelClassFactory(name="Wren")

    response = api.post(
        IMAGES,
        {
            "file": upload("a.jpg", image_bytes(seed=2007)),
            "label_class": robin.pk,
            "subclass": default_of(wren).pk,
        },
        format="multipart",
    )

    assert response.status_code == 400
    assert "does not belong to class" in response.json()["detail"]
    assert not Image.objects.exists()


def test_an_upload_larger_than_the_in_memory_limit_is_accepted(
    api: APIClient, settings: Any
) -> None:
    # Bigger uploads spill to a temporary file on disk; they must work the same way.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    data = image_bytes(fmt="BMP", size=(64, 64), seed=2008)
    assert len(data) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE

    response = api.post(IMAGES, {"file": upload("big.bmp", data, "image/bmp")}, format="multipart")

    assert response.status_code == 201, response.json()
    assert Image.objects.get().file_size == len(data)


def test_the_original_file_name_is_kept_only_as_metadata(api: APIClient) -> None:
    name = "..\u202egpj.exe"
    response = api.post(IMAGES, {"file": upload(name, image_bytes(seed=2009))}, format="multipart")

    image = Image.objects.get(pk=response.json()["files"][0]["image"]["id"])
    assert image.original_filename == "..gpj.exe"
    assert image.storage_name.endswith(f"{image.sha256}.jpg")


# --- Relabelling ------------------------------------------------------------------------------


def test_relabelling_moves_the_image_and_bumps_its_version(
    api: APIClient, labeller: User, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin")
    image = make_image()

    response = api.patch(
        f"{IMAGES}{image.pk}/", {"subclass": default_of(robin).pk, "version": 1}, format="json"
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["version"], body["class_name"], body["labelled_by"]) == (2, "Robin", "lena")
    event = LabelEvent.objects.get(image=image)
    assert (event.actor, event.reason, event.from_subclass, event.to_subclass) == (
        labeller,
        "api",
        None,
        default_of(robin),
    )


def test_relabelling_with_a_stale_version_is_a_409_naming_who_changed_it_and_when(
    api: APIClient, reviewer: User, make_image: Callable[..., Image]
) -> None:
    robin, wren = LabelClassFactory(name="Robin"), LabelClassFactory(name="Wren")
    image = make_image()
    image_relabel(
        image_id=image.pk,
        subclass=default_of(robin),
        actor=reviewer,
        reason="labelling",
        expected_version=1,
    )
    changed_at = LabelEvent.objects.get(image=image).created_at

    response = api.patch(
        f"{IMAGES}{image.pk}/", {"subclass": default_of(wren).pk, "version": 1}, format="json"
    )

    assert response.status_code == 409
    body = response.json()
    assert "changed by rui" in body["detail"]
    assert changed_at.strftime("%Y-%m-%d %H:%M:%S") in body["detail"]
    assert (body["changed_by"], body["current_version"]) == ("rui", 2)
    image.refresh_from_db()
    assert image.subclass == default_of(robin)  # the other person's label stands
    assert default_of(wren).image_count == 0


def test_relabelling_needs_the_version_you_saw(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    image = make_image()

    response = api.patch(f"{IMAGES}{image.pk}/", {"subclass": None}, format="json")

    assert response.status_code == 400
    assert "version" in response.json()["detail"]


def test_relabelling_to_null_sends_the_image_back_to_the_inbox(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin")
    image = make_image(default_of(robin))

    response = api.patch(f"{IMAGES}{image.pk}/", {"subclass": None, "version": 1}, format="json")

    assert response.status_code == 200
    assert response.json()["subclass"] is None
    assert default_of(robin).image_count == 0


def test_a_trashed_image_cannot_be_relabelled(
    api: APIClient, reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin")
    image = make_image()
    reviewer_api.delete(f"{IMAGES}{image.pk}/", {"reason": "blurry"}, format="json")

    response = api.patch(
        f"{IMAGES}{image.pk}/", {"subclass": default_of(robin).pk, "version": 2}, format="json"
    )

    assert response.status_code == 409
    assert "in the trash" in response.json()["detail"]


def test_counters_stay_right_across_relabel_trash_and_restore(
    api: APIClient, reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin")
    juvenile = SubClassFactory(label_class=robin, name="juvenile")
    robin_default = default_of(robin)
    image = make_image(robin_default)
    make_image(robin_default)

    def counts() -> tuple[int, int]:
        return (
            SubClass.objects.get(pk=robin_default.pk).image_count,
            SubClass.objects.get(pk=juvenile.pk).image_count,
        )

    assert counts() == (2, 0)
    api.patch(f"{IMAGES}{image.pk}/", {"subclass": juvenile.pk, "version": 1}, format="json")
    assert counts() == (1, 1)
    reviewer_api.delete(f"{IMAGES}{image.pk}/", {"reason": "duplicate of another"}, format="json")
    assert counts() == (1, 0)
    reviewer_api.post(f"{IMAGES}{image.pk}/restore/", {}, format="json")
    assert counts() == (1, 1)
    api.patch(f"{IMAGES}{image.pk}/", {"subclass": juvenile.pk, "version": 4}, format="json")
    assert counts() == (1, 1)  # same sub-class again: nothing moves
    classes = api.get("/api/v1/classes/").json()
    assert classes[0]["image_count"] == 2


# --- Trash and restore ------------------------------------------------------------------------


def test_trashing_needs_a_reason(reviewer_api: APIClient, make_image: Callable[..., Image]) -> None:
    image = make_image()

    for payload in ({}, {"reason": ""}, {"reason": "   "}):
        response = reviewer_api.delete(f"{IMAGES}{image.pk}/", payload, format="json")
        assert response.status_code == 400
        assert "reason" in response.json()["detail"]

    image.refresh_from_db()
    assert image.status == ImageStatus.ACTIVE


def test_trash_and_restore_keep_the_history(
    reviewer_api: APIClient, reviewer: User, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin")
    image = make_image(default_of(robin))

    trashed = reviewer_api.delete(f"{IMAGES}{image.pk}/?reason=out+of+focus")
    assert trashed.status_code == 200
    assert (trashed.json()["status"], trashed.json()["trashed_reason"]) == (
        "trashed",
        "out of focus",
    )
    restored = reviewer_api.post(f"{IMAGES}{image.pk}/restore/", {}, format="json")
    assert restored.status_code == 200
    assert (restored.json()["status"], restored.json()["version"]) == ("active", 3)

    history = reviewer_api.get(f"{IMAGES}{image.pk}/history/").json()

    assert [(e["reason"], e["from_status"], e["to_status"]) for e in history] == [
        ("restore", "trashed", "active"),
        ("trash", "active", "trashed"),
        ("import", "active", "active"),
    ]
    assert history[1]["note"] == "out of focus"
    assert history[0]["actor"] == "rui"
    image.refresh_from_db()
    assert image.subclass == default_of(robin)  # restored to where it was
    assert LabelEvent.objects.filter(image=image).count() == 3


def test_trashing_twice_or_restoring_an_active_image_is_a_409(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    image = make_image()

    assert reviewer_api.post(f"{IMAGES}{image.pk}/restore/").status_code == 409
    reviewer_api.delete(f"{IMAGES}{image.pk}/?reason=blurry")
    again = reviewer_api.delete(f"{IMAGES}{image.pk}/?reason=blurry")

    assert again.status_code == 409
    assert "already in the trash" in again.json()["detail"]


def test_trashing_with_a_stale_version_is_a_409(
    api: APIClient, reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin")
    image = make_image()
    api.patch(
        f"{IMAGES}{image.pk}/", {"subclass": default_of(robin).pk, "version": 1}, format="json"
    )

    response = reviewer_api.delete(
        f"{IMAGES}{image.pk}/", {"reason": "blurry", "version": 1}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["changed_by"] == "lena"


def test_trashing_with_a_form_encoded_reason_works(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    image = make_image()

    response = reviewer_api.delete(
        f"{IMAGES}{image.pk}/",
        "reason=blurry",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["trashed_reason"] == "blurry"


# --- Roles ------------------------------------------------------------------------------------


def test_a_labeller_cannot_trash_or_restore(
    api: APIClient, reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    image = make_image()

    assert api.delete(f"{IMAGES}{image.pk}/?reason=blurry").status_code == 403
    reviewer_api.delete(f"{IMAGES}{image.pk}/?reason=blurry")
    response = api.post(f"{IMAGES}{image.pk}/restore/")

    assert response.status_code == 403
    assert "reviewer" in response.json()["detail"]
    image.refresh_from_db()
    assert image.status == ImageStatus.TRASHED


def test_anonymous_requests_get_401(anon_api: APIClient, make_image: Callable[..., Image]) -> None:
    image = make_image()

    for method, url in [
        ("get", IMAGES),
        ("get", f"{IMAGES}{image.pk}/"),
        ("get", f"{IMAGES}{image.pk}/file/"),
        ("post", IMAGES),
        ("patch", f"{IMAGES}{image.pk}/"),
        ("delete", f"{IMAGES}{image.pk}/"),
    ]:
        response = getattr(anon_api, method)(url)
        assert response.status_code == 401, (method, url)
    assert Image.objects.get().status == ImageStatus.ACTIVE


# --- Served files -----------------------------------------------------------------------------


def test_the_original_is_served_with_its_stored_type_and_nosniff(api: APIClient) -> None:
    data = image_bytes(fmt="PNG", seed=2010)
    image_id = api.post(
        IMAGES, {"file": upload("page.html", data, "text/html")}, format="multipart"
    ).json()["files"][0]["image"]["id"]

    response = api.get(f"{IMAGES}{image_id}/file/")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert b"".join(response.streaming_content) == data


def test_a_thumbnail_is_404_until_it_is_made(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    from curation.services.processing import thumbnails_make

    image = make_image()
    assert api.get(f"{IMAGES}{image.pk}/thumbnail/").status_code == 404
    assert api.get(f"{IMAGES}{image.pk}/").json()["thumbnail_url"] is None

    thumbnails_make(image_ids=[image.pk])
    response = api.get(f"{IMAGES}{image.pk}/thumbnail/")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert api.get(f"{IMAGES}{image.pk}/").json()["thumbnail_url"].endswith("/thumbnail/")


# --- Lists, filters and query counts ---------------------------------------------------------


def test_the_image_list_filters_by_class_and_status(
    api: APIClient, reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin, wren = LabelClassFactory(name="Robin"), LabelClassFactory(name="Wren")
    in_robin = make_image(default_of(robin))
    in_wren = make_image(default_of(wren))
    inbox = make_image()
    reviewer_api.delete(f"{IMAGES}{in_wren.pk}/?reason=blurry")

    def ids(query: str) -> list[int]:
        return [row["id"] for row in api.get(f"{IMAGES}?{query}").json()["results"]]

    assert ids(f"label_class={robin.pk}") == [in_robin.pk]
    assert ids("status=trashed") == [in_wren.pk]
    assert ids("labelled=false") == [inbox.pk]
    assert ids("") == [inbox.pk, in_robin.pk]  # trashed images only when asked for
    assert ids("status=all") == [inbox.pk, in_wren.pk, in_robin.pk]


def test_unknown_filters_and_orderings_have_no_effect(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin, wren = LabelClassFactory(name="Robin"), LabelClassFactory(name="Wren")
    make_image(default_of(robin))
    make_image(default_of(wren))
    make_image(default_of(robin))
    everything = [row["id"] for row in api.get(IMAGES).json()["results"]]

    for query in [
        "subclass__label_class__name=Robin",
        "labelled_by__password__startswith=md5",
        "ordering=subclass__label_class__name",
        "ordering=-labelled_by__password",
        "o=sha256",
    ]:
        response = api.get(f"{IMAGES}?{query}")
        assert response.status_code == 200, query
        assert [row["id"] for row in response.json()["results"]] == everything, query


def test_list_filters_left_on_a_detail_url_do_not_hide_the_image(
    api: APIClient, reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    from curation.services.processing import thumbnails_make

    image = make_image()
    thumbnails_make(image_ids=[image.pk])
    reviewer_api.delete(f"{IMAGES}{image.pk}/?reason=blurry")
    filters = "status=active&labelled=true&label_class=999999"

    for suffix in ["", "file/", "thumbnail/", "history/"]:
        response = api.get(f"{IMAGES}{image.pk}/{suffix}?{filters}")
        assert response.status_code == 200, suffix
    assert api.get(f"{IMAGES}{image.pk}/?{filters}").json()["status"] == "trashed"
    restored = reviewer_api.post(f"{IMAGES}{image.pk}/restore/?status=active", {}, format="json")
    assert restored.status_code == 200, restored.content


def test_an_invalid_filter_value_is_a_400_not_an_error(api: APIClient) -> None:
    response = api.get(f"{IMAGES}?status=deleted")

    assert response.status_code == 400
    assert "status" in response.json()["detail"]


def test_the_image_list_runs_the_same_queries_for_5_or_40_images(
    api: APIClient,
    labeller: User,
    reviewer: User,
    make_image: Callable[..., Image],
    django_assert_max_num_queries: Any,
) -> None:
    subclasses = [default_of(LabelClassFactory()) for _ in range(4)]

    def add(count: int) -> None:
        for n in range(count):
            image = make_image(subclasses[n % 4] if n % 5 else None)
            if n % 3 == 0:
                image_relabel(
                    image_id=image.pk,
                    subclass=subclasses[(n + 1) % 4],
                    actor=labeller if n % 2 else reviewer,
                    reason="labelling",
                    expected_version=1,
                )

    add(5)
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(IMAGES).json()["results"]) == 5
    add(35)

    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(api.get(IMAGES).json()["results"]) == 40
    assert len(small.captured_queries) <= 4


def test_an_upload_sent_in_several_requests_can_share_one_batch(
    api: APIClient, reviewer_api: APIClient
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from curation.models import ImportBatch
    from tests.factories import image_bytes

    def upload(client: APIClient, seed: int, **extra: object) -> dict:
        file = SimpleUploadedFile(f"{seed}.jpg", image_bytes(seed=seed), "image/jpeg")
        return client.post("/api/v1/images/", {"files": [file], **extra}, format="multipart").json()

    first = upload(api, 9001)
    second = upload(api, 9002, batch=first["batch"])
    assert second["batch"] == first["batch"]
    batch = ImportBatch.objects.get(pk=first["batch"])
    assert batch.created_count == 2
    assert batch.items.count() == 2
    # Someone else's batch cannot be joined.
    refused = upload(reviewer_api, 9003, batch=first["batch"])
    assert "No upload batch" in refused["detail"]
