"""Reviewing a near-duplicate group whose members disagree on the label: nothing resolves
without a label choice, the keeper takes the chosen label, and every image trashed as a
duplicate says whose duplicate it is and which label went with it. The groups are written
directly, so these tests do not depend on how detection finds them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import (
    BadReason,
    BadVerdict,
    DuplicateGroup,
    DuplicateMember,
    DuplicateMethod,
    DuplicateStatus,
    Image,
    ImageStatus,
    LabelEvent,
    LabelReason,
    SubClass,
)
from curation.services.duplicate_review import (
    KEEPERS_OWN,
    LabelChoiceInvalid,
    LabelChoiceRequired,
    duplicate_group_resolve,
    label_conflict,
)
from curation.services.taxonomy import class_create

pytestmark = pytest.mark.django_db

MakeImage = Callable[..., Image]


def default_subclass(name: str) -> SubClass:
    return SubClass.objects.get(label_class=class_create(name=name, actor=None), is_default=True)


@pytest.fixture
def digits() -> dict[int, SubClass]:
    return {digit: default_subclass(f"Digit {digit}") for digit in (1, 7, 8)}


def group_of(*images: Image, evidence: bool = True) -> DuplicateGroup:
    """An open pHash group around the first image, as a scan would write it."""
    centre = images[0]
    group = DuplicateGroup.objects.create(
        method=DuplicateMethod.PHASH, max_distance=8, size=len(images), centre=centre
    )
    DuplicateMember.objects.bulk_create(
        DuplicateMember(
            group=group,
            image=image,
            distance=0 if image == centre else 2 * n,
            evidence=(
                f"pHash {2 * n} bits from image {centre.pk}; {40 + n} local features agree "
                "on one geometry"
                if evidence and image != centre
                else ""
            ),
            matches=40 + n if evidence and image != centre else None,
        )
        for n, image in enumerate(images)
    )
    return group


def fresh(image: Image) -> Image:
    return Image.objects.select_related("subclass__label_class").get(pk=image.pk)


def trash_note(image: Image) -> str:
    return LabelEvent.objects.get(image=image, to_status=ImageStatus.TRASHED).note


# --- The service -------------------------------------------------------------------------------


def test_a_conflicting_group_cannot_be_resolved_without_a_label_choice(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User
) -> None:
    one_a, one_b, eight = make_image(digits[1]), make_image(digits[1]), make_image(digits[8])
    group = group_of(one_a, one_b, eight)

    with pytest.raises(LabelChoiceRequired) as refused:
        duplicate_group_resolve(group_id=group.pk, keeper_id=one_a.pk, actor=reviewer)

    assert str(refused.value) == (
        f"The images of duplicate group {group.pk} disagree on the label: "
        f"Digit 1 / default (images {one_a.pk}, {one_b.pk}); "
        f"Digit 8 / default (image {eight.pk}). Choose the label the keeper takes."
    )
    for image in (one_a, one_b, eight):
        assert fresh(image).status == ImageStatus.ACTIVE
    group.refresh_from_db()
    assert group.status == DuplicateStatus.OPEN
    assert not LabelEvent.objects.filter(reason=LabelReason.DUPLICATE).exists()


def test_the_keeper_takes_the_chosen_label_and_each_trash_event_names_the_label_dropped(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User
) -> None:
    one_a, one_b, eight = make_image(digits[1]), make_image(digits[1]), make_image(digits[8])
    group = group_of(one_a, one_b, eight)

    duplicate_group_resolve(
        group_id=group.pk, keeper_id=one_a.pk, actor=reviewer, label=digits[8].pk
    )

    keeper = fresh(one_a)
    assert keeper.status == ImageStatus.ACTIVE and keeper.subclass == digits[8]
    relabel = LabelEvent.objects.get(image=one_a, reason=LabelReason.DUPLICATE)
    assert (relabel.from_subclass, relabel.to_subclass) == (digits[1], digits[8])
    assert relabel.note == f"label chosen in review of duplicate group {group.pk}"
    assert relabel.actor == reviewer
    assert trash_note(one_b) == (
        f"duplicate of image {one_a.pk}; label Digit 1 / default dropped "
        "(the keeper is Digit 8 / default)"
    )
    assert trash_note(eight) == f"duplicate of image {one_a.pk}; same label (Digit 8 / default)"
    assert fresh(one_b).trashed_reason == trash_note(one_b)
    digits[1].refresh_from_db()
    digits[8].refresh_from_db()
    assert (digits[1].image_count, digits[8].image_count) == (0, 1)
    group.refresh_from_db()
    assert group.status == DuplicateStatus.RESOLVED and group.keeper_id == one_a.pk


def test_the_keeper_may_keep_its_own_label(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User
) -> None:
    one, eight = make_image(digits[1]), make_image(digits[8])
    group = group_of(one, eight)

    duplicate_group_resolve(group_id=group.pk, keeper_id=one.pk, actor=reviewer, label=KEEPERS_OWN)

    assert fresh(one).subclass == digits[1]
    assert not LabelEvent.objects.filter(image=one, reason=LabelReason.DUPLICATE).exists()
    assert trash_note(eight) == (
        f"duplicate of image {one.pk}; label Digit 8 / default dropped "
        "(the keeper is Digit 1 / default)"
    )


def test_a_bad_image_verdict_beside_a_label_is_a_conflict_and_stays_with_its_image(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User
) -> None:
    good, judged = make_image(digits[7]), make_image(digits[7])
    BadVerdict.objects.create(image=judged, reason=BadReason.BLURRY, actor=reviewer)
    group = group_of(good, judged)

    with pytest.raises(
        LabelChoiceRequired, match=rf"bad-image verdict on image {judged.pk} \(Blurry\)"
    ):
        duplicate_group_resolve(group_id=group.pk, keeper_id=good.pk, actor=reviewer)
    duplicate_group_resolve(group_id=group.pk, keeper_id=good.pk, actor=reviewer, label=KEEPERS_OWN)

    assert trash_note(judged) == (
        f"duplicate of image {good.pk}; same label (Digit 7 / default); "
        "bad-image verdict (Blurry) not carried to the keeper"
    )
    assert not BadVerdict.objects.filter(image=good).exists()


def test_unlabelled_members_make_no_conflict_and_the_keeper_takes_the_agreed_label(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User
) -> None:
    labelled, unlabelled = make_image(digits[1]), make_image()
    group = group_of(unlabelled, labelled)
    assert label_conflict([labelled, unlabelled]) is None

    duplicate_group_resolve(group_id=group.pk, keeper_id=unlabelled.pk, actor=reviewer)

    assert fresh(unlabelled).subclass == digits[1]
    relabel = LabelEvent.objects.get(image=unlabelled, reason=LabelReason.DUPLICATE)
    assert relabel.note == f"label of duplicate image {labelled.pk}"
    assert trash_note(labelled) == (
        f"duplicate of image {unlabelled.pk}; same label (Digit 1 / default)"
    )


def test_trashed_members_do_not_make_a_conflict(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User
) -> None:
    one, eight = make_image(digits[1]), make_image(digits[8])
    eight.status = ImageStatus.TRASHED
    assert label_conflict([one, eight]) is None


def test_a_label_no_member_carries_is_refused(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User
) -> None:
    one, eight = make_image(digits[1]), make_image(digits[8])
    group = group_of(one, eight)

    with pytest.raises(LabelChoiceInvalid, match=rf"Sub-class {digits[7].pk} is not the label"):
        duplicate_group_resolve(
            group_id=group.pk, keeper_id=one.pk, actor=reviewer, label=digits[7].pk
        )
    group.refresh_from_db()
    assert group.status == DuplicateStatus.OPEN


def test_resolving_costs_a_fixed_number_of_queries_per_member(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User
) -> None:
    def cost(size: int) -> int:
        images = [make_image(digits[1 if n % 2 else 8]) for n in range(size)]
        group = group_of(*images)
        with CaptureQueriesContext(connection) as queries:
            duplicate_group_resolve(
                group_id=group.pk, keeper_id=images[0].pk, actor=reviewer, label=digits[1].pk
            )
        return len(queries)

    # Lock the group and its images, relabel the keeper, then per trashed member: lock it,
    # write its event, move its sub-class count, save it (inside a savepoint, two more).
    three, six = cost(3), cost(6)
    assert three <= 25
    assert six - three == 3 * 6  # no read of labels or verdicts per member


# --- The API -----------------------------------------------------------------------------------


def test_the_api_shows_the_conflict_and_refuses_to_resolve_without_a_label(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer_api: APIClient
) -> None:
    one_a, one_b, eight = make_image(digits[1]), make_image(digits[1]), make_image(digits[8])
    group = group_of(one_a, one_b, eight)

    (row,) = reviewer_api.get("/api/v1/duplicates/").json()["results"]
    assert row["centre"] == one_a.pk
    assert row["label_conflict"]["labels"] == [
        {
            "subclass": digits[1].pk,
            "subclass_name": "default",
            "class_name": "Digit 1",
            "source": "real",
            "images": [one_a.pk, one_b.pk],
        },
        {
            "subclass": digits[8].pk,
            "subclass_name": "default",
            "class_name": "Digit 8",
            "source": "real",
            "images": [eight.pk],
        },
    ]
    members = {member["image"]["id"]: member for member in row["members"]}
    assert members[one_a.pk]["is_centre"] is True
    assert members[one_a.pk]["evidence"] == "" and members[one_a.pk]["matches"] is None
    assert members[eight.pk]["is_centre"] is False
    assert members[eight.pk]["evidence"] == (
        f"pHash 4 bits from image {one_a.pk}; 42 local features agree on one geometry"
    )
    assert members[eight.pk]["matches"] == 42 and members[eight.pk]["distance"] == 4
    assert members[eight.pk]["image"]["class_name"] == "Digit 8"

    url = f"/api/v1/duplicates/{group.pk}/resolve/"
    refused = reviewer_api.post(url, {"keeper": one_a.pk}, format="json")
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "label_choice_required"
    assert "Digit 1 / default" in body["detail"] and "Digit 8 / default" in body["detail"]
    assert [label["subclass"] for label in body["labels"]] == [digits[1].pk, digits[8].pk]
    assert fresh(eight).status == ImageStatus.ACTIVE

    nonsense = reviewer_api.post(url, {"keeper": one_a.pk, "label": "eight"}, format="json")
    assert nonsense.status_code == 400 and "label" in nonsense.json()["detail"]
    foreign = reviewer_api.post(url, {"keeper": one_a.pk, "label": digits[7].pk}, format="json")
    assert foreign.status_code == 400
    assert f"Sub-class {digits[7].pk} is not the label" in foreign.json()["detail"]

    done = reviewer_api.post(url, {"keeper": one_a.pk, "label": digits[8].pk}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["status"] == "resolved" and done.json()["label_conflict"] is None
    assert fresh(one_a).subclass == digits[8]
    assert fresh(eight).status == ImageStatus.TRASHED


def test_the_api_resolves_with_the_keepers_own_label(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer_api: APIClient
) -> None:
    one, eight = make_image(digits[1]), make_image(digits[8])
    group = group_of(one, eight)

    done = reviewer_api.post(
        f"/api/v1/duplicates/{group.pk}/resolve/",
        {"keeper": eight.pk, "label": KEEPERS_OWN},
        format="json",
    )

    assert done.status_code == 200, done.content
    assert fresh(eight).subclass == digits[8] and fresh(one).status == ImageStatus.TRASHED


def test_the_api_shows_no_conflict_for_a_group_that_agrees(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer_api: APIClient
) -> None:
    group_of(make_image(digits[1]), make_image(digits[1]), make_image())

    (row,) = reviewer_api.get("/api/v1/duplicates/").json()["results"]
    assert row["label_conflict"] is None


def test_the_api_list_reads_a_fixed_number_of_queries_whatever_the_groups(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer_api: APIClient
) -> None:
    def cost() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert reviewer_api.get("/api/v1/duplicates/").status_code == 200
        return len(queries)

    group_of(make_image(digits[1]), make_image(digits[8]))
    one = cost()
    for _ in range(4):
        image = make_image(digits[7])
        BadVerdict.objects.create(image=image, reason=BadReason.TOO_DARK)
        group_of(make_image(digits[1]), make_image(digits[8]), image)
    assert cost() == one


# --- The page ----------------------------------------------------------------------------------


def test_the_review_page_marks_the_conflict_and_shows_every_members_label(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User, client: Any
) -> None:
    one_a, one_b, eight = make_image(digits[1]), make_image(digits[1]), make_image(digits[8])
    BadVerdict.objects.create(image=one_b, reason=BadReason.TOO_DARK)
    group = group_of(one_a, one_b, eight)
    client.force_login(reviewer)

    html = client.get("/duplicates/").content.decode()

    assert 'id="label-conflict"' in html and "labels disagree" in html
    assert "These images disagree on the label." in html
    assert html.count('name="label"') == 3  # two labels and "the keeper's own"
    assert f'value="{digits[1].pk}"' in html and f'value="{digits[8].pk}"' in html
    assert f"images {one_a.pk}, {one_b.pk}" in html and f"image {eight.pk}" in html
    assert "The keeper's own label" in html
    assert html.count('class="member-class conflicting option-1"') == 2
    assert html.count('class="member-class conflicting option-2"') == 1
    assert html.count('<dd class="member-subclass">default</dd>') == 3
    assert html.count('title="Source: real"') >= 3
    assert "bad image: Too dark" in html
    assert f"Bad-image verdict: image {one_b.pk} (Too dark)" in html
    assert "then the key of the label it takes" in html
    # Why each member is here, and a dash where the scan said nothing.
    assert f"pHash 4 bits from image {one_a.pk}; 42 local features agree" in html
    assert "42 local features agree" in html and "4 bits from the centre" in html
    assert 'title="Every other member was matched to this image">centre' in html
    assert '<dd class="member-matches">—</dd>' in html
    assert group.status == DuplicateStatus.OPEN


def test_the_review_page_does_not_resolve_a_conflict_without_a_label_and_asks_again(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User, client: Any
) -> None:
    one, eight = make_image(digits[1]), make_image(digits[8])
    group = group_of(one, eight)
    client.force_login(reviewer)

    refused = client.post(f"/duplicates/{group.pk}/resolve", {"keeper": one.pk})

    assert refused.status_code == 302
    assert refused["Location"] == f"/duplicates/?group={group.pk}"
    again = client.get(refused["Location"]).content.decode()
    assert "disagree on the label" in again and "Choose the label the keeper takes." in again
    assert fresh(eight).status == ImageStatus.ACTIVE

    done = client.post(
        f"/duplicates/{group.pk}/resolve", {"keeper": one.pk, "label": str(digits[8].pk)}
    )
    assert done.status_code == 302
    assert fresh(one).subclass == digits[8] and fresh(eight).status == ImageStatus.TRASHED
    shown = client.get(done["Location"]).content.decode()
    assert f"Kept image {one.pk} (Digit 8 / default); 1 duplicate trashed." in shown


def test_a_clean_group_shows_no_conflict_and_dashes_for_missing_evidence(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User, client: Any
) -> None:
    group_of(make_image(digits[1]), make_image(digits[1]), evidence=False)
    client.force_login(reviewer)

    html = client.get("/duplicates/").content.decode()

    assert 'id="label-conflict"' not in html and "labels disagree" not in html
    assert 'name="label"' not in html
    assert "an unlabelled keeper takes their label" in html
    assert '<dd class="member-evidence">—</dd>' in html
    assert '<dd class="member-matches">—</dd>' in html


def test_the_review_page_reads_a_fixed_number_of_queries_whatever_the_group_size(
    make_image: MakeImage, digits: dict[int, SubClass], reviewer: User, client: Any
) -> None:
    client.force_login(reviewer)

    def cost(size: int) -> int:
        images = [make_image(digits[(1, 7, 8)[n % 3]]) for n in range(size)]
        BadVerdict.objects.create(image=images[-1], reason=BadReason.BLURRY)
        group = group_of(*images)
        with CaptureQueriesContext(connection) as queries:
            page = client.get(f"/duplicates/?group={group.pk}")
        assert page.status_code == 200
        return len(queries)

    assert cost(3) == cost(9)
