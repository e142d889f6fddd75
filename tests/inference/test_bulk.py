from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from curation.models import (
    Image,
    ImageStatus,
    Job,
    JobStatus,
    LabelEvent,
    LabelReason,
    SavedFilter,
    Source,
    SubClass,
)
from curation.services.images import image_trash
from curation.services.taxonomy import class_create, subclass_create
from inference.bulk import (
    IDENTIFY_KIND,
    ResultFilter,
    Scope,
    Selected,
    identification_results,
    images_bulk_relabel,
    images_bulk_trash,
    results_queue_create,
)
from inference.models import ModelVersion, Prediction
from inference.preprocessing import PreprocessSpec
from inference.services import model_version_register, predictions_make
from inference.tasks import identify_images
from labelling.queues import queue_resolve
from tests.inference.onnx_models import labels, linear, to_bytes

pytestmark = pytest.mark.django_db

SMALL = PreprocessSpec(input_size=8)
NAMES = ("Robin", "Sparrow", "Decoy")


def register(*, seed: int = 1, activate: bool = False) -> ModelVersion:
    return model_version_register(
        onnx_data=to_bytes(linear(classes=len(NAMES), seed=seed)),
        labels=labels(*NAMES),
        name=f"tiny {seed}",
        actor=None,
        spec=SMALL,
        activate=activate,
    ).version


def run(job_id: int) -> Job:
    identify_images.apply(args=[job_id])
    return Job.objects.get(pk=job_id)


def predicted(image: Image, version: ModelVersion, index: int, score: float) -> Prediction:
    """A stored prediction with a known top-1, as a run would write it."""
    return Prediction.objects.create(
        image=image,
        model_version=version,
        class_indices=[index],
        class_names=[version.label_map[index]],
        scores=[score],
        top1_index=index,
        top1_score=score,
    )


# --- Runs -----------------------------------------------------------------------------------


def test_a_run_computes_only_the_predictions_the_scope_is_missing(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin = class_create(name="Robin", actor=None).subclasses.get()
    inbox = [make_image() for _ in range(3)]
    labelled = [make_image(robin) for _ in range(2)]
    version = register()  # a throw-away version: never activated
    predictions_make(image_ids=[inbox[0].pk], version=version)

    response = reviewer_api.post(
        "/api/v1/identifications/",
        {"model_version": version.number, "labelled": False},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert response.json()["kind"] == IDENTIFY_KIND
    job = run(response.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["written"] == 2
    assert (job.done, job.total) == (2, 2)
    scored = set(Prediction.objects.filter(model_version=version).values_list("image", flat=True))
    assert scored == {image.pk for image in inbox}
    assert not scored & {image.pk for image in labelled}

    again = reviewer_api.post(
        "/api/v1/identifications/",
        {"model_version": version.number, "labelled": False},
        format="json",
    )
    job = run(again.json()["id"])
    assert job.result["written"] == 0
    assert Prediction.objects.filter(model_version=version).count() == 3


def test_a_run_over_a_holding_class_uses_the_active_model_by_default(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    unknown = class_create(name="Unknown bird", actor=None, kind="holding")
    held = make_image(unknown.subclasses.get())
    make_image()  # in the inbox: out of scope
    version = register(activate=True)

    response = reviewer_api.post(
        "/api/v1/identifications/", {"label_class": unknown.pk}, format="json"
    )
    assert response.status_code == 202, response.content
    job = run(response.json()["id"])
    assert job.params["model_version_id"] == version.pk
    assert list(Prediction.objects.values_list("image", flat=True)) == [held.pk]


def test_a_run_names_its_model_by_version_number_like_the_predict_api(
    reviewer_api: APIClient,
) -> None:
    version = register()
    ModelVersion.objects.filter(pk=version.pk).update(number=version.pk + 6)
    response = reviewer_api.post(
        "/api/v1/identifications/",
        {"model_version": version.pk + 6, "labelled": False},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert response.json()["params"]["model_version_id"] == version.pk
    response = reviewer_api.post(
        "/api/v1/identifications/", {"model_version": version.pk, "labelled": False}, format="json"
    )
    assert response.status_code == 400
    assert "model_version" in response.json()["detail"]


def test_a_run_needs_a_model_version(reviewer_api: APIClient) -> None:
    response = reviewer_api.post("/api/v1/identifications/", {"labelled": False}, format="json")
    assert response.status_code == 400
    assert "active" in response.json()["detail"]
    response = reviewer_api.post("/api/v1/identifications/", {"label_class": 999}, format="json")
    assert response.status_code == 400


def test_labellers_cannot_start_a_run(api: APIClient) -> None:
    register(activate=True)
    response = api.post("/api/v1/identifications/", {"labelled": False}, format="json")
    assert response.status_code == 403
    assert not Job.objects.filter(kind=IDENTIFY_KIND).exists()


# --- Results --------------------------------------------------------------------------------


@pytest.fixture
def library(make_image: Callable[..., Image]) -> dict[str, object]:
    """Robin is rare (2 images), Sparrow common (40 by its counter) and mostly staged; Decoy
    matches no class. Six inbox images carry known predictions."""
    robin = class_create(name="Robin", actor=None)
    sparrow = class_create(name="Sparrow", actor=None)
    staged = subclass_create(label_class=sparrow, name="studio", source=Source.STAGED, actor=None)
    SubClass.objects.filter(pk=staged.pk).update(image_count=30)
    SubClass.objects.filter(label_class=sparrow, is_default=True).update(image_count=10)
    robins = [make_image(robin.subclasses.get()) for _ in range(2)]
    version = register()
    inbox = [make_image() for _ in range(6)]
    for image, (index, score) in zip(
        inbox, [(0, 0.9), (0, 0.3), (1, 0.95), (1, 0.5), (2, 0.7), (1, 0.2)], strict=True
    ):
        predicted(image, version, index, score)
    predicted(robins[0], version, 0, 0.99)
    return {"version": version, "inbox": inbox, "robin": robin, "sparrow": sparrow}


def shown(filters: ResultFilter, size: int = 60) -> list[int]:
    return [row.image.pk for row in identification_results(filters=filters, size=size).rows]


def test_results_filter_by_predicted_class_and_score_range(library: dict) -> None:
    version, inbox = library["version"], library["inbox"]
    inbox_scope = Scope(labelled=False)
    robin = library["robin"].pk
    assert shown(ResultFilter(version=version, scope=inbox_scope, predicted_class=robin)) == [
        inbox[0].pk,
        inbox[1].pk,
    ]
    # Look-alikes: called a robin without conviction.
    assert shown(
        ResultFilter(version=version, scope=inbox_scope, predicted_class=robin, score_max=0.5)
    ) == [inbox[1].pk]
    assert set(shown(ResultFilter(version=version, scope=inbox_scope, score_min=0.6))) == {
        inbox[0].pk,
        inbox[2].pk,
        inbox[4].pk,
    }
    # Without the inbox scope the labelled robin shows too.
    assert len(shown(ResultFilter(version=version, predicted_class=robin))) == 3


def test_results_find_rare_and_mostly_staged_classes(library: dict) -> None:
    version, inbox = library["version"], library["inbox"]
    scope = Scope(labelled=False)
    rare = shown(ResultFilter(version=version, scope=scope, rare_below=5))
    assert set(rare) == {inbox[0].pk, inbox[1].pk}  # Robin; Decoy matches no class
    staged = shown(ResultFilter(version=version, scope=scope, mostly_staged=True))
    assert set(staged) == {inbox[2].pk, inbox[3].pk, inbox[5].pk}


def test_lowest_scores_come_first_and_pages_follow_on(library: dict) -> None:
    version, inbox = library["version"], library["inbox"]
    filters = ResultFilter(version=version, scope=Scope(labelled=False), sort="lowest")
    seen: list[int] = []
    cursor = None
    while True:
        page = identification_results(filters=filters, cursor=cursor, size=4)
        seen += [row.image.pk for row in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [inbox[i].pk for i in (5, 1, 3, 4, 0, 2)]
    assert seen == expected
    by_class = ResultFilter(version=version, scope=Scope(labelled=False), sort="class")
    page = identification_results(filters=by_class, size=3)
    rest = identification_results(filters=by_class, cursor=page.next_cursor, size=3)
    assert [r.image.pk for r in page.rows + rest.rows] == [inbox[i].pk for i in (4, 2, 3, 5, 0, 1)]


def test_trashed_and_labelled_images_leave_the_inbox_results(library: dict) -> None:
    version, inbox = library["version"], library["inbox"]
    image_trash(image_id=inbox[0].pk, actor=None, note="blurred")
    assert inbox[0].pk not in shown(ResultFilter(version=version, scope=Scope(labelled=False)))


# --- Bulk actions ---------------------------------------------------------------------------


def test_bulk_labelling_writes_one_bulk_event_per_image_and_skips_conflicts(
    library: dict, reviewer: object
) -> None:
    inbox = library["inbox"]
    target = library["robin"].subclasses.get()
    stale = Image.objects.get(pk=inbox[2].pk)
    image_trash(image_id=inbox[3].pk, actor=None, note="bad")
    outcome = images_bulk_relabel(
        selected=[
            Selected(inbox[0].pk, 1),
            Selected(inbox[1].pk, 1),
            Selected(stale.pk, stale.version + 5),  # someone changed it since
            Selected(inbox[3].pk, None),  # in the trash
        ],
        subclass=target,
        actor=reviewer,  # type: ignore[arg-type]
    )
    assert (outcome.changed, outcome.skipped) == (2, 2)
    events = LabelEvent.objects.filter(reason=LabelReason.BULK, to_subclass=target)
    assert sorted(events.values_list("image", flat=True)) == [inbox[0].pk, inbox[1].pk]
    assert all(event.actor == reviewer for event in events)
    target.refresh_from_db()
    assert target.image_count == 4
    assert Image.objects.get(pk=stale.pk).subclass is None


def test_bulk_trash_writes_one_event_each_with_the_reason(library: dict, reviewer: object) -> None:
    inbox = library["inbox"]
    image_trash(image_id=inbox[1].pk, actor=None, note="bad")
    outcome = images_bulk_trash(
        selected=[Selected(inbox[0].pk, 1), Selected(inbox[1].pk, None)],
        note="not a bird",
        actor=reviewer,  # type: ignore[arg-type]
    )
    assert (outcome.changed, outcome.skipped) == (1, 1)
    assert outcome.reasons == {"already in the trash": 1}
    event = LabelEvent.objects.get(image=inbox[0], to_status=ImageStatus.TRASHED)
    assert (event.reason, event.note, event.actor) == (LabelReason.BULK, "not a bird", reviewer)
    assert Image.objects.get(pk=inbox[0].pk).trashed_reason == "not a bird"


def test_results_sent_to_a_queue_become_a_labelling_queue_of_the_same_images(
    library: dict,
) -> None:
    version, inbox = library["version"], library["inbox"]
    filters = ResultFilter(
        version=version,
        scope=Scope(labelled=False),
        predicted_class=library["sparrow"].pk,
        score_max=0.6,
    )
    saved = results_queue_create(filters=filters, name="", actor=None)
    queue = queue_resolve(f"filter:{saved.pk}")
    assert set(queue.images.values_list("pk", flat=True)) == set(shown(filters))
    assert set(shown(filters)) == {inbox[3].pk, inbox[5].pk}
    assert saved.name.startswith(f"v{version.number}: inbox")


# --- The page -------------------------------------------------------------------------------


def signed_in(user: object) -> Client:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return client


def test_the_page_shows_filtered_results_and_its_query_count_stays_fixed(
    library: dict, reviewer: object, django_assert_max_num_queries: Callable[..., object]
) -> None:
    version, inbox = library["version"], library["inbox"]
    client = signed_in(reviewer)
    url = f"/models/identify/?v={version.number}&scope=inbox&cls={library['sparrow'].pk}&max=0.6"
    page = client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert f'value="{inbox[3].pk}:1"' in text and f'value="{inbox[5].pk}:1"' in text
    assert f'value="{inbox[2].pk}:1"' not in text  # 0.95 is above the range
    assert "Look-alikes of Sparrow" in text

    listing = f"/models/identify/?v={version.number}&scope=library&rare=100&sort=class"
    with CaptureQueriesContext(connection) as few:
        assert client.get(listing).status_code == 200
    for _ in range(30):  # more predictions of a rare class: the same queries
        predicted(_new_image(), version, 1, 0.4)
    with django_assert_max_num_queries(len(few.captured_queries)):
        big = client.get(listing)
    # Sparrow (40 in the library) and Robin (2): 3 + 3 inbox and library results, 30 new.
    assert big.content.decode().count('name="image"') == 36
    assert len(few.captured_queries) <= 14


_counter = iter(range(10_000, 20_000))


def _new_image() -> Image:
    return Image.objects.create(
        sha256=f"{next(_counter):064d}",
        extension="jpg",
        content_type="image/jpeg",
        format="JPEG",
        width=8,
        height=8,
        file_size=1,
    )


def test_labellers_cannot_bulk_label_or_bulk_trash(library: dict, labeller: object) -> None:
    inbox = library["inbox"]
    client = signed_in(labeller)
    target = library["robin"].subclasses.get()
    label = client.post(
        "/models/identify/label/", {"image": [f"{inbox[0].pk}:1"], "subclass": target.pk}
    )
    trash = client.post("/models/identify/trash/", {"image": [f"{inbox[0].pk}:1"], "note": "x"})
    run_page = client.post("/models/identify/run/", {"scope": "inbox"})
    assert (label.status_code, trash.status_code, run_page.status_code) == (403, 403, 403)
    assert not LabelEvent.objects.filter(reason=LabelReason.BULK).exists()
    assert "Label as" not in client.get("/models/identify/").content.decode()


def test_a_reviewer_labels_and_trashes_from_the_page(library: dict, reviewer: object) -> None:
    inbox = library["inbox"]
    client = signed_in(reviewer)
    target = library["robin"].subclasses.get()
    back = "v=1&scope=inbox&sort=lowest"
    response = client.post(
        "/models/identify/label/",
        {"image": [f"{inbox[0].pk}:1", f"{inbox[1].pk}:7"], "subclass": target.pk, "back": back},
    )
    assert response.status_code == 302
    assert response["Location"] == f"/models/identify/?{back}"
    assert LabelEvent.objects.filter(reason=LabelReason.BULK, to_subclass=target).count() == 1
    message = str(next(iter(client.get(response["Location"]).context["messages"])))
    assert "Labelled as Robin / default: 1 image; skipped 1 (1 changed since you looked)" in message

    client.post("/models/identify/trash/", {"image": [f"{inbox[2].pk}:1"], "note": "a leaf"})
    assert Image.objects.get(pk=inbox[2].pk).status == ImageStatus.TRASHED


def test_a_labeller_sends_the_results_to_a_labelling_queue(library: dict, labeller: object) -> None:
    version = library["version"]
    client = signed_in(labeller)
    back = f"v={version.number}&scope=inbox&cls={library['robin'].pk}&max=0.5"
    response = client.post("/models/identify/queue/", {"back": back, "name": "Maybe robins"})
    saved = SavedFilter.objects.get()
    assert saved.name == "Maybe robins"
    assert saved.params == {
        "labelled": False,
        "model_version": version.pk,
        "predicted_class": library["robin"].pk,
        "score_max": 0.5,
    }
    page = client.get(response["Location"]).content.decode()
    assert f"/label/filter:{saved.pk}/" in page
