"""Bulk actions on images picked in the library grids (class page, inbox, trash): each POST
writes one label event (reason ``bulk``) per image it changes, leaves images changed meanwhile
alone and names them, and is allowed only to the roles that may do it one image at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from accounts.models import User
from curation.models import (
    BenchmarkKind,
    BenchmarkMember,
    BenchmarkSet,
    Image,
    ImageStatus,
    LabelClass,
    LabelEvent,
    LabelReason,
    SubClass,
)
from curation.services.bulk import MAX_SELECTED, Selected, images_bulk_benchmark
from curation.services.datasets import benchmark_set_create
from curation.services.images import image_relabel, image_trash, inbox_count
from tests.factories import LabelClassFactory, SubClassFactory

pytestmark = pytest.mark.django_db


def default_subclass(label_class: LabelClass) -> SubClass:
    return SubClass.objects.get(label_class=label_class, is_default=True)


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def picked(*images: Image) -> list[str]:
    """The form values a grid posts: ``<id>:<version the page showed>``."""
    return [f"{image.pk}:{image.version}" for image in images]


def said(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def robin() -> LabelClass:
    return LabelClassFactory(name="Robin")


@pytest.fixture
def inbox_images(make_image: Callable[..., Image]) -> list[Image]:
    return [make_image() for _ in range(4)]


# --- Label ----------------------------------------------------------------------------------


def test_a_labeller_labels_picked_inbox_images_with_one_bulk_event_each(
    labeller: User, robin: LabelClass, inbox_images: list[Image]
) -> None:
    target = default_subclass(robin)
    response = signed_in(labeller).post(
        reverse("curation:grid-label"),
        {"image": picked(*inbox_images[:3]), "subclass": target.pk, "next": "/inbox/?quality="},
    )
    assert response.status_code == 302
    assert response["Location"] == "/inbox/?quality="
    events = LabelEvent.objects.filter(to_subclass=target)
    assert sorted(events.values_list("image_id", flat=True)) == [i.pk for i in inbox_images[:3]]
    assert {(e.reason, e.actor_id) for e in events} == {(LabelReason.BULK, labeller.pk)}
    target.refresh_from_db()
    assert target.image_count == 3
    assert inbox_count() == 1
    assert said(response) == ["Labelled as Robin / default: 3 images."]


def test_images_already_in_the_sub_class_are_skipped_and_counted(
    labeller: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    juvenile = SubClassFactory(label_class=robin, name="juvenile")
    adult, young = make_image(default_subclass(robin)), make_image(juvenile)
    response = signed_in(labeller).post(
        reverse("curation:grid-label"), {"image": picked(adult, young), "subclass": juvenile.pk}
    )
    assert said(response) == ["Labelled as Robin / juvenile: 1 image; skipped 1 already there."]
    assert LabelEvent.objects.filter(reason=LabelReason.BULK).count() == 1


def test_an_image_changed_since_the_page_loaded_is_left_alone_named_and_marked(
    labeller: User, reviewer: User, robin: LabelClass, inbox_images: list[Image]
) -> None:
    first, second = inbox_images[:2]
    seen = picked(first, second)  # the page as the labeller loaded it
    sparrow = default_subclass(LabelClassFactory(name="Sparrow"))
    image_relabel(
        image_id=second.pk, subclass=sparrow, actor=reviewer, reason="labelling", expected_version=1
    )
    client = signed_in(labeller)
    response = client.post(
        reverse("curation:grid-label"),
        {"image": seen, "subclass": default_subclass(robin).pk, "next": "/inbox/"},
    )
    assert Image.objects.get(pk=second.pk).subclass == sparrow  # not overwritten
    assert Image.objects.get(pk=first.pk).subclass == default_subclass(robin)
    success, warning = said(response)
    assert success == "Labelled as Robin / default: 1 image."
    assert f'<a href="/images/{second.pk}/">#{second.pk}</a>' in warning
    assert warning.startswith("1 image left alone because someone else changed it")
    assert response["Location"] == f"/inbox/?changed={second.pk}"
    # Back on a grid that shows it, the image carries the mark.
    page = client.get(
        reverse("curation:class", args=[sparrow.label_class_id]), {"changed": second.pk}
    )
    assert "changed meanwhile" in page.content.decode()


def test_a_label_action_without_a_sub_class_changes_nothing(
    labeller: User, inbox_images: list[Image]
) -> None:
    response = signed_in(labeller).post(
        reverse("curation:grid-label"), {"image": picked(*inbox_images)}
    )
    assert said(response) == ["Choose the class and sub-class to label the images as."]
    assert not LabelEvent.objects.filter(reason=LabelReason.BULK).exists()


def test_more_images_than_the_cap_are_refused_whole(
    labeller: User, robin: LabelClass, inbox_images: list[Image]
) -> None:
    too_many = [f"{pk}:1" for pk in range(10**6, 10**6 + MAX_SELECTED)] + picked(inbox_images[0])
    response = signed_in(labeller).post(
        reverse("curation:grid-label"),
        {"image": too_many, "subclass": default_subclass(robin).pk},
    )
    assert said(response) == [f"Select at most {MAX_SELECTED} images at a time."]
    assert Image.objects.get(pk=inbox_images[0].pk).subclass is None


def test_a_redirect_back_goes_only_to_a_page_of_ours(
    labeller: User, robin: LabelClass, inbox_images: list[Image]
) -> None:
    response = signed_in(labeller).post(
        reverse("curation:grid-label"),
        {
            "image": picked(inbox_images[0]),
            "subclass": default_subclass(robin).pk,
            "next": "//evil.example/",
        },
    )
    assert response["Location"] == reverse("curation:inbox")


# --- Trash and restore ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["grid-trash", "grid-restore", "grid-benchmark"])
def test_labellers_may_not_trash_restore_or_build_benchmarks(
    labeller: User, inbox_images: list[Image], name: str
) -> None:
    image_trash(image_id=inbox_images[3].pk, actor=None, note="blurred")
    response = signed_in(labeller).post(
        reverse(f"curation:{name}"),
        {"image": picked(*inbox_images), "note": "junk", "new_name": "Hard"},
    )
    assert response.status_code == 403
    assert not LabelEvent.objects.filter(reason=LabelReason.BULK).exists()
    assert not BenchmarkSet.objects.exists()


def test_a_reviewer_trashes_picked_images_with_a_reason(
    reviewer: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    images = [make_image(default_subclass(robin)) for _ in range(3)]
    response = signed_in(reviewer).post(
        reverse("curation:grid-trash"), {"image": picked(*images[:2]), "note": "  not a robin "}
    )
    assert said(response) == ["Moved to the trash: 2 images."]
    trashed = Image.objects.filter(status=ImageStatus.TRASHED)
    assert set(trashed.values_list("pk", flat=True)) == {images[0].pk, images[1].pk}
    assert set(trashed.values_list("trashed_reason", flat=True)) == {"not a robin"}
    events = LabelEvent.objects.filter(to_status=ImageStatus.TRASHED)
    assert {(e.reason, e.note, e.actor_id) for e in events} == {
        (LabelReason.BULK, "not a robin", reviewer.pk)
    }
    assert default_subclass(robin).image_count == 1


def test_trashing_without_a_reason_is_refused(reviewer: User, inbox_images: list[Image]) -> None:
    response = signed_in(reviewer).post(
        reverse("curation:grid-trash"), {"image": picked(*inbox_images), "note": "  "}
    )
    assert said(response) == ["Say why these images go to the trash."]
    assert not Image.objects.filter(status=ImageStatus.TRASHED).exists()


def test_a_reviewer_restores_picked_images_to_where_they_were(
    reviewer: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    labelled, unlabelled, stale = make_image(default_subclass(robin)), make_image(), make_image()
    for image in (labelled, unlabelled, stale):
        image_trash(image_id=image.pk, actor=None, note="dark")
    seen = [Image.objects.get(pk=i.pk) for i in (labelled, unlabelled, stale)]
    Image.objects.filter(pk=stale.pk).update(version=99)  # someone acted on it meanwhile
    response = signed_in(reviewer).post(reverse("curation:grid-restore"), {"image": picked(*seen)})
    assert said(response)[0] == "Restored from the trash: 2 images."
    assert f"#{stale.pk}" in said(response)[1]
    assert Image.objects.get(pk=labelled.pk).subclass == default_subclass(robin)
    assert Image.objects.get(pk=labelled.pk).status == ImageStatus.ACTIVE
    assert Image.objects.get(pk=unlabelled.pk).status == ImageStatus.ACTIVE
    assert Image.objects.get(pk=stale.pk).status == ImageStatus.TRASHED
    restores = LabelEvent.objects.filter(to_status=ImageStatus.ACTIVE, reason=LabelReason.BULK)
    assert sorted(restores.values_list("image_id", flat=True)) == [labelled.pk, unlabelled.pk]
    assert default_subclass(robin).image_count == 1
    assert inbox_count() == 1


# --- Benchmark sets -------------------------------------------------------------------------


def test_picked_images_start_a_new_benchmark_set(
    reviewer: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    images = [make_image(default_subclass(robin)) for _ in range(2)]
    response = signed_in(reviewer).post(
        reverse("curation:grid-benchmark"),
        {"image": picked(*images), "benchmark": "", "new_name": "Hard robins", "kind": "difficult"},
    )
    benchmark = BenchmarkSet.objects.get()
    assert (benchmark.name, benchmark.version, benchmark.kind) == ("Hard robins", 1, "difficult")
    assert said(response) == ["Added to Hard robins v1 (2 images in all): 2 images."]
    assert set(benchmark.members.values_list("image_id", "label_class_id")) == {
        (images[0].pk, robin.pk),
        (images[1].pk, robin.pk),
    }


def test_adding_to_a_set_makes_its_next_version_and_keeps_the_members_classes(
    reviewer: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    old = make_image(default_subclass(robin))
    first = benchmark_set_create(
        name="Hard", kind=BenchmarkKind.DIFFICULT, image_ids=[old.pk], actor=None
    )
    sparrow = default_subclass(LabelClassFactory(name="Sparrow"))
    image_relabel(
        image_id=old.pk, subclass=sparrow, actor=None, reason="labelling", expected_version=1
    )
    new, unlabelled = make_image(default_subclass(robin)), make_image()
    response = signed_in(reviewer).post(
        reverse("curation:grid-benchmark"),
        {"image": picked(Image.objects.get(pk=old.pk), new, unlabelled), "benchmark": "Hard"},
    )
    second = BenchmarkSet.objects.get(name="Hard", version=2)
    assert said(response) == [
        "Added to Hard v2 (2 images in all): 1 image; skipped 1 already in the set, "
        "1 without a class (only an out-of-scope set takes those)."
    ]
    # The old member keeps the class it joined with; version 1 is untouched.
    assert set(second.members.values_list("image_id", "label_class_id")) == {
        (old.pk, robin.pk),
        (new.pk, robin.pk),
    }
    assert second.member_count == 2 and second.kind == BenchmarkKind.DIFFICULT
    assert list(first.members.values_list("image_id", flat=True)) == [old.pk]


def test_an_out_of_scope_set_takes_inbox_images_without_a_class(
    reviewer: User, inbox_images: list[Image]
) -> None:
    benchmark, outcome = images_bulk_benchmark(
        selected=[Selected(i.pk, i.version) for i in inbox_images[:2]],
        name="Not birds",
        kind=BenchmarkKind.OUT_OF_SCOPE,
        actor=reviewer,
    )
    assert benchmark is not None and outcome.changed == [i.pk for i in inbox_images[:2]]
    assert set(BenchmarkMember.objects.values_list("label_class_id", flat=True)) == {None}


def test_an_image_changed_meanwhile_stays_out_of_the_benchmark_set(
    reviewer: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    image = make_image(default_subclass(robin))
    seen = picked(image)
    image_relabel(
        image_id=image.pk,
        subclass=default_subclass(LabelClassFactory(name="Wren")),
        actor=None,
        reason="labelling",
        expected_version=1,
    )
    response = signed_in(reviewer).post(
        reverse("curation:grid-benchmark"), {"image": seen, "new_name": "Hard", "kind": "custom"}
    )
    assert not BenchmarkSet.objects.exists()
    nothing, changed = said(response)
    assert nothing == "Nothing was added to “Hard”: every image picked changed meanwhile."
    assert f"#{image.pk}" in changed


# --- The pages ------------------------------------------------------------------------------


def test_each_grid_offers_the_actions_the_role_may_take(
    labeller: User, reviewer: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    image = make_image(default_subclass(robin))
    make_image()
    trashed = make_image()
    image_trash(image_id=trashed.pk, actor=None, note="dark")
    pages = {
        "class": reverse("curation:class", args=[robin.pk]),
        "inbox": reverse("curation:inbox"),
        "trash": reverse("curation:trash"),
    }
    dialogs = ("label-dialog", "queue-dialog", "benchmark-dialog", "trash-dialog", "restore-dialog")

    def offered(user: User, page: str) -> set[str]:
        html = signed_in(user).get(pages[page]).content.decode()
        return {dialog for dialog in dialogs if f'id="{dialog}"' in html}

    assert (
        offered(labeller, "class")
        == offered(labeller, "inbox")
        == {
            "label-dialog",
            "queue-dialog",
        }
    )
    assert offered(reviewer, "inbox") == {
        "label-dialog",
        "queue-dialog",
        "benchmark-dialog",
        "trash-dialog",
    }
    assert offered(reviewer, "trash") == {"restore-dialog"}
    # A labeller can do nothing to trashed images: a plain grid, no boxes.
    trash_page = signed_in(labeller).get(pages["trash"]).content.decode()
    assert 'id="grid-selection"' not in trash_page and 'class="pick"' not in trash_page
    class_page = signed_in(labeller).get(pages["class"]).content.decode()
    assert f'value="{image.pk}:{image.version}"' in class_page
    assert "js/grid-select.js" in class_page
