"""The reviewer's second-opinion pages (settle disagreements, agreement rates) and pinning an
image as an exemplar from its image page."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import Role, User
from curation.models import BadVerdict, Image, LabelClass, LabelEvent, SubClass
from curation.services.images import image_relabel
from curation.services.taxonomy import class_create
from labelling.models import Exemplar, OpinionStatus, SecondOpinion
from labelling.services import second_opinion_give
from tests.factories import UserFactory

PAGE = "/label/second-opinions/"
AGREEMENT = "/label/second-opinions/agreement/"
PIN = "/label/standards/pin/"
HOSTILE = "<img src=x onerror=alert(1)>"


def _settle_url(opinion: SecondOpinion) -> str:
    return f"/label/second-opinions/{opinion.pk}/settle/"


def _default(label_class: LabelClass) -> SubClass:
    return SubClass.objects.get(label_class=label_class, is_default=True)


@pytest.fixture
def robin(db: None) -> SubClass:
    return _default(class_create(name="Robin", actor=None))


@pytest.fixture
def wren(db: None) -> SubClass:
    return _default(class_create(name="Wren", actor=None))


@pytest.fixture
def sam(db: None) -> User:
    return UserFactory(username="sam", role=Role.LABELLER)


@pytest.fixture
def as_reviewer(client: Client, reviewer: User) -> Client:
    client.force_login(reviewer)
    return client


@pytest.fixture
def as_labeller(client: Client, labeller: User) -> Client:
    client.force_login(labeller)
    return client


def _labelled(make_image: Callable[..., Image], subclass: SubClass, by: User) -> Image:
    image = make_image()
    return image_relabel(
        image_id=image.pk, subclass=subclass, actor=by, reason="labelling", expected_version=1
    )


def _opinion(
    image: Image, by: User, subclass: SubClass | None, bad_reason: str = ""
) -> SecondOpinion:
    action = second_opinion_give(
        user=by, image_id=image.pk, subclass=subclass, bad_reason=bad_reason
    )
    return SecondOpinion.objects.get(pk=action.opinion_id)


def _table(response: Any, table_id: str) -> list[list[str]]:
    """The body rows of a table as lists of cell texts."""
    page = response.content.decode()
    match = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert match, f"no table #{table_id}"
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        rows.append([(html.unescape(re.sub(r"<[^>]+>", " ", c)).split() or [""])[0] for c in cells])
    return rows


# --- The review page --------------------------------------------------------------------------


def test_a_reviewer_sees_each_open_disagreement_with_both_labels_and_who_gave_them(
    as_reviewer: Client,
    labeller: User,
    sam: User,
    robin: SubClass,
    wren: SubClass,
    make_image: Callable[..., Image],
) -> None:
    disputed = _labelled(make_image, robin, labeller)
    agreed = _labelled(make_image, robin, labeller)
    _opinion(disputed, sam, wren)
    _opinion(agreed, sam, robin)

    response = as_reviewer.get(PAGE)

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Image {disputed.pk}</h2>" in page
    assert f"Image {agreed.pk}</h2>" not in page
    item = page[page.index(f'id="opinion-{SecondOpinion.objects.get(image=disputed).pk}"') :]
    item = item[: item.index("</article>")]
    assert "Robin" in item and "by lena" in item
    assert "Wren" in item and "by sam, blind" in item
    assert 'data-open="1"' in page


def test_labellers_cannot_open_or_use_the_review_pages(
    as_labeller: Client,
    labeller: User,
    sam: User,
    robin: SubClass,
    wren: SubClass,
    make_image: Callable[..., Image],
) -> None:
    opinion = _opinion(_labelled(make_image, robin, labeller), sam, wren)
    assert as_labeller.get(PAGE).status_code == 403
    assert as_labeller.get(AGREEMENT).status_code == 403
    assert as_labeller.post(_settle_url(opinion), {"choice": "second"}).status_code == 403
    opinion.refresh_from_db()
    assert opinion.status == OpinionStatus.OPEN
    assert "Second opinions</a>" not in as_labeller.get("/label/").content.decode()


def test_taking_the_second_opinion_relabels_the_image_and_it_moves_to_recently_settled(
    as_reviewer: Client,
    reviewer: User,
    labeller: User,
    sam: User,
    robin: SubClass,
    wren: SubClass,
    make_image: Callable[..., Image],
) -> None:
    image = _labelled(make_image, robin, labeller)
    opinion = _opinion(image, sam, wren)

    response = as_reviewer.post(_settle_url(opinion), {"choice": "second"}, follow=True)

    image.refresh_from_db()
    assert image.subclass_id == wren.pk
    event = LabelEvent.objects.filter(image=image).latest("id")
    assert (event.from_subclass_id, event.to_subclass_id, event.actor_id) == (
        robin.pk,
        wren.pk,
        reviewer.pk,
    )
    assert f"Image {image.pk} relabelled “Wren”." in response.content.decode()
    assert f"Image {image.pk}</h2>" not in response.content.decode()
    assert "No disagreements to settle." in response.content.decode()
    settled = as_reviewer.get(PAGE, {"tab": "settled"})
    assert _table(settled, "settled") == [
        [str(image.pk), "Robin", "Wren", "Took", "Wren"]
    ]  # "Took the second opinion"


def test_keeping_the_first_label_writes_no_label_event(
    as_reviewer: Client,
    labeller: User,
    sam: User,
    robin: SubClass,
    wren: SubClass,
    make_image: Callable[..., Image],
) -> None:
    image = _labelled(make_image, robin, labeller)
    opinion = _opinion(image, sam, wren)
    events = LabelEvent.objects.filter(image=image).count()

    as_reviewer.post(_settle_url(opinion), {"choice": "first"})

    image.refresh_from_db()
    opinion.refresh_from_db()
    assert image.subclass_id == robin.pk
    assert LabelEvent.objects.filter(image=image).count() == events
    assert opinion.status == OpinionStatus.SETTLED


def test_a_bad_image_second_opinion_taken_from_the_page_records_the_verdict(
    as_reviewer: Client,
    labeller: User,
    sam: User,
    robin: SubClass,
    make_image: Callable[..., Image],
) -> None:
    image = _labelled(make_image, robin, labeller)
    opinion = _opinion(image, sam, None, bad_reason="too_dark")
    assert "Too dark" in as_reviewer.get(PAGE).content.decode()

    as_reviewer.post(_settle_url(opinion), {"choice": "second"})

    assert BadVerdict.objects.get(image=image).reason == "too_dark"
    image.refresh_from_db()
    assert image.subclass_id == robin.pk


def test_the_page_script_settles_with_json_and_learns_how_many_are_left(
    as_reviewer: Client,
    labeller: User,
    sam: User,
    robin: SubClass,
    wren: SubClass,
    make_image: Callable[..., Image],
) -> None:
    first = _opinion(_labelled(make_image, robin, labeller), sam, wren)
    _opinion(_labelled(make_image, robin, labeller), sam, wren)

    response = as_reviewer.post(
        _settle_url(first), {"choice": "double_check"}, HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 200
    assert response.json()["open"] == 1
    first.refresh_from_db()
    assert first.status == OpinionStatus.DOUBLE_CHECK
    again = as_reviewer.post(
        _settle_url(first), {"choice": "first"}, HTTP_ACCEPT="application/json"
    )
    assert again.status_code == 409
    assert "already" in again.json()["message"]


def test_an_unknown_choice_changes_nothing(
    as_reviewer: Client,
    labeller: User,
    sam: User,
    robin: SubClass,
    wren: SubClass,
    make_image: Callable[..., Image],
) -> None:
    opinion = _opinion(_labelled(make_image, robin, labeller), sam, wren)
    response = as_reviewer.post(_settle_url(opinion), {"choice": "both"}, follow=True)
    assert "Choose one of" in response.content.decode()
    opinion.refresh_from_db()
    assert opinion.status == OpinionStatus.OPEN


def test_the_review_page_reads_a_bounded_number_of_rows(
    as_reviewer: Client,
    labeller: User,
    sam: User,
    robin: SubClass,
    wren: SubClass,
    make_image: Callable[..., Image],
    django_assert_max_num_queries: Any,
) -> None:
    for _ in range(12):
        _opinion(_labelled(make_image, robin, labeller), sam, wren)
    with django_assert_max_num_queries(6):
        response = as_reviewer.get(PAGE)
    assert response.content.decode().count('class="so-item card"') == 12
    for opinion in SecondOpinion.objects.all()[:6]:
        as_reviewer.post(_settle_url(opinion), {"choice": "first"})
    with django_assert_max_num_queries(6):
        response = as_reviewer.get(PAGE, {"tab": "settled"})
    assert len(_table(response, "settled")) == 6


# --- Agreement ----------------------------------------------------------------------------


def test_agreement_tables_match_a_hand_count(
    as_reviewer: Client,
    labeller: User,
    sam: User,
    robin: SubClass,
    wren: SubClass,
    make_image: Callable[..., Image],
    django_assert_max_num_queries: Any,
) -> None:
    # lena labels 3 Robins and a Wren; sam agrees on 2 Robins and the Wren, says Wren once.
    for answer in (robin, robin, wren):
        _opinion(_labelled(make_image, robin, labeller), sam, answer)
    _opinion(_labelled(make_image, wren, labeller), sam, wren)
    # sam labels a Robin; lena disagrees.
    _opinion(_labelled(make_image, robin, sam), labeller, wren)

    with django_assert_max_num_queries(6):
        response = as_reviewer.get(AGREEMENT)

    assert response.status_code == 200
    # Robin: 4 opinions, 2 agree. Wren: 1 of 1.
    assert _table(response, "agreement-per-class") == [
        ["Robin", "4", "2", "50%"],
        ["Wren", "1", "1", "100%"],
    ]
    assert _table(response, "agreement-per-pair") == [
        ["lena", "sam", "4", "3", "75%"],
        ["sam", "lena", "1", "0", "0%"],
    ]
    page = response.content.decode()
    assert 'id="agreement-overall">60%' in page  # 3 of 5
    # The chart puts the least consistent first and says its numbers beside each bar.
    chart = page[page.index("<svg") : page.index("</svg>")]
    assert chart.index("Robin") < chart.index("Wren")
    assert "50% <tspan" in chart and "2 of 4" in chart


def test_the_queue_picker_and_stats_link_reviewers_to_the_disagreements(
    as_reviewer: Client,
    labeller: User,
    sam: User,
    robin: SubClass,
    wren: SubClass,
    make_image: Callable[..., Image],
) -> None:
    _opinion(_labelled(make_image, robin, labeller), sam, wren)
    picker = as_reviewer.get("/label/").content.decode()
    assert 'id="second-opinions-card"' in picker
    # One blind queue, the whole library: a per-class sample would give the first label away.
    assert 'href="/label/second:all/"' in picker
    assert f"/label/second:{robin.label_class_id}/" not in picker
    stats = as_reviewer.get("/label/stats/").content.decode()
    assert 'href="/label/second-opinions/agreement/"' in stats
    assert re.search(r'id="stat-open-opinions">.*?<div class="value">1</div>', stats, re.S)


def test_hostile_class_and_user_names_stay_escaped(
    as_reviewer: Client,
    make_image: Callable[..., Image],
    robin: SubClass,
) -> None:
    hostile = _default(class_create(name=HOSTILE, actor=None))
    first = UserFactory(username="x<b>y", role=Role.LABELLER)
    second = UserFactory(username="z<i>w", role=Role.LABELLER)
    image = _labelled(make_image, hostile, first)
    _opinion(image, second, robin)
    for path in (PAGE, AGREEMENT, f"/images/{image.pk}/"):
        page = as_reviewer.get(path).content.decode()
        assert "<img src=x onerror" not in page, path
        assert "x<b>y" not in page and "z<i>w" not in page, path
    assert "&lt;img src=x onerror=alert(1)&gt;" in as_reviewer.get(AGREEMENT).content.decode()


# --- Pin as exemplar from the image page ------------------------------------------------------


def test_a_reviewer_pins_an_image_from_its_page_and_the_page_says_so(
    as_reviewer: Client, robin: SubClass, wren: SubClass, make_image: Callable[..., Image]
) -> None:
    image = make_image(robin)
    page = as_reviewer.get(f"/images/{image.pk}/").content.decode()
    form = page[page.index('id="pin-form"') :]
    form = form[: form.index("</form>")]
    assert f'value="{robin.label_class_id}" selected' in form  # the image's class by default
    assert f'name="next" value="/images/{image.pk}/"' in form

    response = as_reviewer.post(
        PIN,
        {
            "class": wren.label_class_id,
            "image": image.pk,
            "kind": "bad",
            "next": f"/images/{image.pk}/",
        },
        follow=True,
    )

    assert response.redirect_chain[-1][0] == f"/images/{image.pk}/"
    exemplar = Exemplar.objects.get(image=image)
    assert (exemplar.label_class_id, exemplar.kind) == (wren.label_class_id, "bad")
    page = response.content.decode()
    assert f"Image {image.pk} pinned as a bad example of “Wren”." in page
    pinned = page[page.index('id="pins"') :]
    assert "Bad example" in pinned[: pinned.index("</ul>")]
    assert f'href="/label/standards/{wren.label_class_id}/"' in pinned


def test_unpinning_from_the_image_page_comes_back_to_it(
    as_reviewer: Client, reviewer: User, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    image = make_image(robin)
    exemplar = Exemplar.objects.create(
        label_class_id=robin.label_class_id, image=image, kind="good", pinned_by=reviewer
    )
    response = as_reviewer.post(
        f"/label/standards/{robin.label_class_id}/",
        {"op": "unpin", "exemplar": exemplar.pk, "next": f"/images/{image.pk}/"},
    )
    assert response["Location"] == f"/images/{image.pk}/"
    assert not Exemplar.objects.filter(image=image).exists()


def test_the_pin_form_never_redirects_off_site(
    as_reviewer: Client, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    image = make_image(robin)
    response = as_reviewer.post(
        PIN,
        {
            "class": robin.label_class_id,
            "image": image.pk,
            "kind": "good",
            "next": "https://evil.example/",
        },
    )
    assert response["Location"] == f"/label/standards/{robin.label_class_id}/"


def test_labellers_see_pins_but_cannot_pin(
    as_labeller: Client, reviewer: User, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    image = make_image(robin)
    Exemplar.objects.create(
        label_class_id=robin.label_class_id, image=image, kind="good", pinned_by=reviewer
    )
    page = as_labeller.get(f"/images/{image.pk}/").content.decode()
    assert 'id="pin-form"' not in page
    assert "Good example" in page
    response = as_labeller.post(
        PIN, {"class": robin.label_class_id, "image": image.pk, "kind": "bad"}
    )
    assert response.status_code == 403
    assert Exemplar.objects.get(image=image).kind == "good"


def test_the_image_page_reads_its_pins_in_a_bounded_number_of_queries(
    as_reviewer: Client,
    reviewer: User,
    robin: SubClass,
    make_image: Callable[..., Image],
    django_assert_max_num_queries: Any,
) -> None:
    image = make_image(robin)
    for index in range(8):
        label_class = class_create(name=f"Class {index}", actor=None)
        Exemplar.objects.create(label_class=label_class, image=image, kind="good")
    client_page = as_reviewer.get(f"/images/{image.pk}/")  # warm caches (session, content types)
    assert client_page.status_code == 200
    with django_assert_max_num_queries(15):
        page = as_reviewer.get(f"/images/{image.pk}/").content.decode()
    pins = page[page.index('id="pins"') :]
    assert pins[: pins.index("</ul>")].count("<li") == 8


def test_the_blind_labelling_page_links_to_no_image_page(as_labeller: Client) -> None:
    page = as_labeller.get("/label/second:all/").content.decode()
    config = json.loads(
        re.search(r'<script id="lab-config" type="application/json">(.*?)</script>', page, re.S)[1]
    )
    assert config["blind"] is True and config["urls"]["image_page"] is None
    assert '<a id="caption-link"' not in page
    # The other queues keep their caption link.
    inbox = as_labeller.get("/label/inbox/").content.decode()
    assert '<a id="caption-link"' in inbox


def test_an_old_per_class_second_opinion_link_opens_the_whole_library_sample(
    as_labeller: Client, robin: SubClass
) -> None:
    response = as_labeller.get(f"/label/second:{robin.label_class_id}/", follow=True)
    assert response.redirect_chain == [("/label/second:all/", 302)]
    page = response.content.decode()
    assert "Second opinion: whole library" in page
    assert "Second opinion: Robin" not in page
    assert "a sample of one class would tell you every image's first label" in html.unescape(page)
