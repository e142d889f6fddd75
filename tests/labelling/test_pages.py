from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from curation.models import (
    BAD_REASON_KEYS,
    BadReason,
    ClassKind,
    Image,
    LabelClass,
    SavedFilter,
    SubClass,
)
from curation.services.images import image_trash
from curation.services.taxonomy import class_create, subclass_create
from labelling.models import Exemplar
from labelling.services import label_image, skip_image
from tests.factories import UserFactory

HOSTILE = "</script><script>alert(1)</script>"
IMG_PAYLOAD = "<img src=x onerror=alert(2)>"


def _login(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def _embedded(response: Any, element_id: str) -> Any:
    match = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert match, f"no #{element_id} in the page"
    return json.loads(match.group(1))


@pytest.fixture
def robin(db: None) -> LabelClass:
    return class_create(name="Robin", actor=None)


@pytest.fixture
def unknown(db: None) -> LabelClass:
    return class_create(name="Unknown", kind=ClassKind.HOLDING, actor=None)


def _default(label_class: LabelClass) -> SubClass:
    return SubClass.objects.get(label_class=label_class, is_default=True)


@pytest.mark.parametrize(
    "path", ["/label/", "/label/inbox/", "/label/stats/", "/label/standards/1/"]
)
def test_anonymous_visitors_are_sent_to_the_login_page(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_the_queue_picker_lists_the_inbox_holding_classes_classes_and_saved_filters(
    client: Client,
    labeller: User,
    robin: LabelClass,
    unknown: LabelClass,
    make_image: Callable[..., Image],
) -> None:
    make_image()
    make_image()
    make_image(_default(robin))
    subclass_create(label_class=robin, name="juvenile", actor=None)
    saved = SavedFilter.objects.create(name="Robins to re-check", params={"label_class": robin.pk})
    response = _login(client, labeller).get("/label/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'href="/label/inbox/"' in page
    assert f'href="/label/class:{unknown.pk}/"' in page
    assert f'href="/label/class:{robin.pk}/"' in page
    assert "juvenile" in page
    assert f'href="/label/filter:{saved.pk}/"' in page
    inbox_card = re.search(r'href="/label/inbox/".*?<strong>(\d+)</strong> left', page, re.S)
    assert inbox_card and inbox_card.group(1) == "2"


def test_the_queue_picker_searches_classes(
    client: Client, labeller: User, robin: LabelClass
) -> None:
    class_create(name="Wren", actor=None)
    page = _login(client, labeller).get("/label/", {"q": "wre"}).content.decode()
    assert "Wren" in page
    assert f"/label/class:{robin.pk}/" not in page


def test_the_labelling_page_renders_for_a_labeller_with_every_key_shown(
    client: Client, labeller: User, robin: LabelClass, unknown: LabelClass
) -> None:
    response = _login(client, labeller).get("/label/inbox/")
    assert response.status_code == 200
    page = response.content.decode()
    config = _embedded(response, "lab-config")
    assert config["queue"] == "inbox"
    assert config["holding"] == {"id": unknown.pk, "name": "Unknown"}
    assert config["is_reviewer"] is False
    assert [r["key"] for r in config["bad_reasons"]] == [BAD_REASON_KEYS[r] for r in BadReason]
    for reason in BadReason:
        assert f"<kbd>{BAD_REASON_KEYS[reason]}</kbd> {reason.label}" in page
    for key in ("1", "/", "u", "b", "s", "z", "?", "i"):
        assert f"<kbd>{key}</kbd>" in page
    classes = _embedded(response, "lab-classes")
    assert {c["name"] for c in classes} == {"Robin", "Unknown"}


def test_class_and_filter_queues_open_and_unknown_ones_are_404(
    client: Client, labeller: User, robin: LabelClass
) -> None:
    _login(client, labeller)
    assert client.get(f"/label/class:{robin.pk}/").status_code == 200
    assert client.get(f"/label/subclass:{_default(robin).pk}/").status_code == 200
    assert client.get("/label/class:999999/").status_code == 404
    assert client.get("/label/nonsense/").status_code == 404


def test_a_hostile_class_name_stays_inert_data(
    client: Client, labeller: User, robin: LabelClass
) -> None:
    # The taxonomy service refuses slashes, but rows made another way (admin, an older
    # import) may hold anything.
    hostile = LabelClass.objects.create(name=HOSTILE, description=HOSTILE)
    SubClass.objects.create(label_class=hostile, name="default", is_default=True)
    subclass_create(label_class=robin, name=IMG_PAYLOAD, actor=None)
    response = _login(client, labeller).get("/label/inbox/")
    page = response.content.decode()
    assert "<script>alert(1)" not in page
    assert IMG_PAYLOAD not in page
    classes = _embedded(response, "lab-classes")
    assert HOSTILE in {c["name"] for c in classes}
    assert IMG_PAYLOAD in {s["name"] for c in classes for s in c["subclasses"]}
    for path in ("/label/", f"/label/standards/{hostile.pk}/", f"/label/standards/{robin.pk}/"):
        other_page = client.get(path).content.decode()
        assert "<script>alert(1)" not in other_page
        assert IMG_PAYLOAD not in other_page
    panel = client.get(f"/label/standards/{hostile.pk}/panel").json()
    assert panel["name"] == HOSTILE


def test_the_labelling_page_runs_the_same_queries_whatever_the_number_of_classes(
    client: Client,
    labeller: User,
    robin: LabelClass,
    django_assert_max_num_queries: Any,
) -> None:
    _login(client, labeller)
    with django_assert_max_num_queries(12):
        client.get("/label/inbox/")
    for n in range(30):
        subclass_create(
            label_class=class_create(name=f"Bird {n}", actor=None), name="juv", actor=None
        )
    with django_assert_max_num_queries(12):
        response = client.get("/label/inbox/")
    assert len(_embedded(response, "lab-classes")) == 31


def test_the_queue_picker_runs_a_bounded_number_of_queries(
    client: Client, labeller: User, django_assert_max_num_queries: Any
) -> None:
    for n in range(30):
        class_create(name=f"Bird {n}", actor=None)
    class_create(name="Unknown", kind=ClassKind.HOLDING, actor=None)
    _login(client, labeller)
    # 13: the blind queue's count is the SME's own (less their labels and their opinions).
    with django_assert_max_num_queries(13):
        assert client.get("/label/").status_code == 200


def test_labellers_read_the_standards_but_cannot_change_them(
    client: Client, labeller: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    image = make_image(_default(robin))
    _login(client, labeller)
    assert client.get(f"/label/standards/{robin.pk}/").status_code == 200
    response = client.post(
        f"/label/standards/{robin.pk}/", {"op": "pin", "image": image.pk, "kind": "good"}
    )
    assert response.status_code == 403
    assert not Exemplar.objects.exists()


def test_a_reviewer_writes_the_description_and_pins_and_unpins_exemplars(
    client: Client, reviewer: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    good, bad = make_image(_default(robin)), make_image(_default(robin))
    _login(client, reviewer)
    url = f"/label/standards/{robin.pk}/"
    client.post(url, {"op": "describe", "description": "Red breast, brown back."})
    client.post(url, {"op": "pin", "image": str(good.pk), "kind": "good", "note": "adult"})
    client.post(url, {"op": "pin", "image": f"#{bad.pk}", "kind": "bad"})
    robin.refresh_from_db()
    assert robin.description == "Red breast, brown back."
    panel = client.get(f"{url}panel").json()
    assert panel["description"] == "Red breast, brown back."
    assert [row["image"] for row in panel["good"]] == [good.pk]
    assert panel["good"][0]["note"] == "adult"
    assert [row["image"] for row in panel["bad"]] == [bad.pk]
    assert f"/images/{good.pk}/thumbnail" in client.get(url).content.decode()

    exemplar = Exemplar.objects.get(image=bad)
    response = client.post(url, {"op": "unpin", "exemplar": exemplar.pk}, follow=True)
    assert f"Image {bad.pk} unpinned." in response.content.decode()
    assert client.get(f"{url}panel").json()["bad"] == []


def test_pinning_a_missing_or_trashed_image_says_why(
    client: Client, reviewer: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    trashed = make_image(_default(robin))
    image_trash(image_id=trashed.pk, actor=reviewer, note="blurry", expected_version=None)
    _login(client, reviewer)
    url = f"/label/standards/{robin.pk}/"
    page = client.post(url, {"op": "pin", "image": "999999", "kind": "good"}, follow=True)
    assert "There is no image 999999." in page.content.decode()
    page = client.post(url, {"op": "pin", "image": str(trashed.pk), "kind": "good"}, follow=True)
    assert "is in the trash" in page.content.decode()
    assert not Exemplar.objects.exists()


def test_labellers_see_their_own_stats_and_reviewers_see_everyones(
    client: Client,
    labeller: User,
    reviewer: User,
    robin: LabelClass,
    make_image: Callable[..., Image],
) -> None:
    other = UserFactory(username="sam")
    images = [make_image() for _ in range(4)]
    for image in images[:2]:
        label_image(user=labeller, image_id=image.pk, subclass=_default(robin), expected_version=1)
    label_image(user=other, image_id=images[2].pk, subclass=_default(robin), expected_version=1)
    skip_image(user=labeller, image_id=images[3].pk)

    own = _login(client, labeller).get("/label/stats/")
    assert own.context["totals"].today == 2
    assert own.context["totals"].skipped_today == 1
    assert [(r.name, r.today) for r in own.context["per_class"]] == [("Robin", 2)]
    assert "sam" not in own.content.decode()

    client.logout()
    everyone = _login(client, reviewer).get("/label/stats/")
    assert everyone.context["totals"].today == 3
    assert {r.username: r.week for r in everyone.context["per_labeller"]} == {"lena": 2, "sam": 1}
