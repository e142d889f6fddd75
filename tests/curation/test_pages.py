"""The server-rendered pages: who may see and do what, what they show, and that they stay
cheap as the library grows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from knox.models import AuthToken

from accounts.models import User
from curation import views
from curation.models import (
    Image,
    ImageStatus,
    LabelClass,
    LabelEvent,
    Source,
    SubClass,
    TaxonomyEvent,
)
from curation.services.images import image_relabel, image_trash
from tests.factories import LabelClassFactory, SubClassFactory

pytestmark = pytest.mark.django_db

SCRIPT_NAME = "</script><script>alert(1)</script>"
ESCAPED_SCRIPT_NAME = "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"


def default_subclass(label_class: LabelClass) -> SubClass:
    return SubClass.objects.get(label_class=label_class, is_default=True)


@pytest.fixture
def labeller_client(client: Client, labeller: User) -> Client:
    client.force_login(labeller)
    return client


@pytest.fixture
def reviewer_client(reviewer: User) -> Client:
    client = Client()
    client.force_login(reviewer)
    return client


@pytest.fixture
def labelled_image(make_image: Callable[..., Image]) -> Image:
    label_class = LabelClassFactory(name="Blackbird")
    return make_image(default_subclass(label_class))


def page_urls(image: Image) -> dict[str, str]:
    assert image.subclass is not None
    return {
        "library": reverse("curation:library"),
        "class": reverse("curation:class", args=[image.subclass.label_class_id]),
        "inbox": reverse("curation:inbox"),
        "trash": reverse("curation:trash"),
        "image": reverse("curation:image", args=[image.pk]),
        "import": reverse("curation:import"),
        "import batch": reverse("curation:import-batch", args=[image.import_batch_id]),
        "jobs": reverse("curation:jobs"),
        "tokens": reverse("accounts:tokens"),
    }


PAGES = ["library", "class", "inbox", "trash", "image", "import", "import batch", "jobs", "tokens"]


@pytest.mark.parametrize("page", PAGES)
def test_each_page_renders_for_a_labeller(
    labeller_client: Client, labelled_image: Image, page: str
) -> None:
    response = labeller_client.get(page_urls(labelled_image)[page])
    assert response.status_code == 200
    assert b'<nav class="nav"' in response.content
    assert b"lena" in response.content  # the user menu names who is signed in


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(
    client: Client, labelled_image: Image, page: str
) -> None:
    url = page_urls(labelled_image)[page]
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_image_files_need_a_signed_in_user(client: Client, labelled_image: Image) -> None:
    for name in ("curation:image-file", "curation:image-thumbnail"):
        response = client.get(reverse(name, args=[labelled_image.pk]))
        assert response.status_code == 302


def test_the_login_page_signs_a_user_in(client: Client, labeller: User) -> None:
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'name="username"' in page.content
    response = client.post(reverse("login"), {"username": "lena", "password": "pw"})
    assert response.status_code == 302
    assert response["Location"] == reverse("curation:library")


def test_logging_out_is_a_post_form(labeller_client: Client) -> None:
    page = labeller_client.get(reverse("curation:library"))
    assert f'action="{reverse("logout")}"'.encode() in page.content
    response = labeller_client.post(reverse("logout"))
    assert response.status_code == 302
    assert labeller_client.get(reverse("curation:library")).status_code == 302


def test_the_admin_link_shows_for_admins_only(labeller_client: Client, admin_user: User) -> None:
    admin_href = f'href="{reverse("admin:index")}"'.encode()
    assert admin_href not in labeller_client.get(reverse("curation:library")).content
    client = Client()
    client.force_login(admin_user)
    assert admin_href in client.get(reverse("curation:library")).content


# --- Library --------------------------------------------------------------------------------


def test_the_library_shows_counts_from_the_sub_class_counters(
    labeller_client: Client, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin")
    staged = SubClassFactory(label_class=robin, name="studio", source=Source.STAGED)
    make_image(default_subclass(robin))
    make_image(staged)
    make_image(staged)
    make_image(None)
    SubClass.objects.filter(pk=staged.pk).update(image_count=41)  # the counter is what shows

    response = labeller_client.get(reverse("curation:library"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Robin" in html
    assert ">42</strong>" in html  # 1 + 41, never a COUNT over the images
    assert "badge-staged" in html
    assert response.context["totals"].inbox == 1


def test_the_library_marks_holding_classes_and_searches_by_name(
    labeller_client: Client,
) -> None:
    LabelClassFactory(name="Unknown Bird", kind="holding")
    LabelClassFactory(name="Robin")

    response = labeller_client.get(reverse("curation:library"), {"q": "unknown"})

    rows = response.context["rows"]
    assert [row.label_class.name for row in rows] == ["Unknown Bird"]
    assert rows[0].is_holding
    assert b"badge-holding" in response.content


def test_the_library_pages_through_classes(
    labeller_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "CLASSES_PER_PAGE", 2)
    for name in ("Alpha", "Bravo", "Charlie"):
        LabelClassFactory(name=name)

    first = labeller_client.get(reverse("curation:library"))
    second = labeller_client.get(reverse("curation:library"), {"page": 2})

    assert [r.label_class.name for r in first.context["rows"]] == ["Alpha", "Bravo"]
    assert [r.label_class.name for r in second.context["rows"]] == ["Charlie"]


def test_only_reviewers_see_and_use_the_new_class_form(
    labeller_client: Client, reviewer_client: Client
) -> None:
    url = reverse("curation:class-new")
    assert url.encode() not in labeller_client.get(reverse("curation:library")).content
    assert url.encode() in reviewer_client.get(reverse("curation:library")).content

    assert labeller_client.post(url, {"name": "Heron"}).status_code == 403
    response = reviewer_client.post(url, {"name": "Heron", "kind": "normal"})

    heron = LabelClass.objects.get(name="Heron")
    assert response["Location"] == reverse("curation:class", args=[heron.pk])
    assert default_subclass(heron).name == "default"


def test_a_refused_class_name_is_explained(reviewer_client: Client) -> None:
    LabelClassFactory(name="Heron")
    response = reviewer_client.post(reverse("curation:class-new"), {"name": "heron"}, follow=True)
    assert "exists already" in response.content.decode()
    assert LabelClass.objects.filter(name__iexact="heron").count() == 1


# --- Class page -----------------------------------------------------------------------------


def test_the_class_page_shows_newest_images_first_and_filters_by_sub_class(
    labeller_client: Client, make_image: Callable[..., Image]
) -> None:
    wren = LabelClassFactory(name="Wren")
    juvenile = SubClassFactory(label_class=wren, name="juvenile")
    older = make_image(default_subclass(wren))
    newer = make_image(juvenile)
    url = reverse("curation:class", args=[wren.pk])

    everything = labeller_client.get(url)
    only_juvenile = labeller_client.get(url, {"subclass": juvenile.pk})

    assert [i.pk for i in everything.context["page"].items] == [newer.pk, older.pk]
    assert [i.pk for i in only_juvenile.context["page"].items] == [newer.pk]
    assert only_juvenile.context["shown_count"] == 1
    assert everything.context["total"] == 2


def test_the_class_page_filters_by_source(
    labeller_client: Client, make_image: Callable[..., Image]
) -> None:
    wren = LabelClassFactory(name="Wren")
    synthetic = SubClassFactory(label_class=wren, name="rendered", source=Source.SYNTHETIC)
    make_image(default_subclass(wren))
    rendered = make_image(synthetic)

    response = labeller_client.get(
        reverse("curation:class", args=[wren.pk]), {"source": "synthetic"}
    )

    assert [i.pk for i in response.context["page"].items] == [rendered.pk]


def test_the_class_page_pages_by_keyset(
    labeller_client: Client, make_image: Callable[..., Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "IMAGES_PER_PAGE", 2)
    wren = LabelClassFactory(name="Wren")
    ids = [make_image(default_subclass(wren)).pk for _ in range(5)]
    url = reverse("curation:class", args=[wren.pk])

    first = labeller_client.get(url).context["page"]
    second = labeller_client.get(url, {"before": first.next_cursor}).context["page"]
    third = labeller_client.get(url, {"before": second.next_cursor}).context["page"]

    newest_first = sorted(ids, reverse=True)
    assert [i.pk for i in first.items] == newest_first[:2]
    assert [i.pk for i in second.items] == newest_first[2:4]
    assert [i.pk for i in third.items] == newest_first[4:]
    assert third.next_cursor is None


def test_thumbnails_not_made_yet_fall_back_to_the_full_file(
    labeller_client: Client, labelled_image: Image
) -> None:
    assert not labelled_image.thumbnail_ready
    assert labelled_image.subclass is not None
    page = labeller_client.get(
        reverse("curation:class", args=[labelled_image.subclass.label_class_id])
    )
    assert reverse("curation:image-display", args=[labelled_image.pk]).encode() in page.content

    response = labeller_client.get(reverse("curation:image-thumbnail", args=[labelled_image.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_reviewer_adds_a_sub_class(reviewer_client: Client) -> None:
    wren = LabelClassFactory(name="Wren")
    response = reviewer_client.post(
        reverse("curation:subclass-new", args=[wren.pk]),
        {"name": "juvenile", "source": "staged"},
        follow=True,
    )
    assert SubClass.objects.get(label_class=wren, name="juvenile").source == Source.STAGED
    assert "added" in response.content.decode()


def test_a_duplicate_sub_class_name_is_explained(reviewer_client: Client) -> None:
    wren = LabelClassFactory(name="Wren")
    response = reviewer_client.post(
        reverse("curation:subclass-new", args=[wren.pk]), {"name": "Default"}, follow=True
    )
    assert "already has a sub-class" in response.content.decode()


def test_a_reviewer_merges_by_moving_a_sub_class(
    reviewer_client: Client, make_image: Callable[..., Image]
) -> None:
    wren = LabelClassFactory(name="Wren")
    jenny = LabelClassFactory(name="Jenny Wren")
    image = make_image(default_subclass(jenny))
    moved = default_subclass(jenny)

    response = reviewer_client.post(
        reverse("curation:subclass-move", args=[moved.pk]), {"to_class": wren.pk}
    )

    assert response["Location"] == reverse("curation:class", args=[wren.pk])
    moved.refresh_from_db()
    assert moved.label_class_id == wren.pk
    assert Image.objects.get(pk=image.pk).subclass_id == moved.pk
    assert TaxonomyEvent.objects.filter(action="move_subclass").exists()


def test_labellers_cannot_change_the_class_tree(labeller_client: Client) -> None:
    wren = LabelClassFactory(name="Wren")
    other = LabelClassFactory(name="Other")
    add = labeller_client.post(reverse("curation:subclass-new", args=[wren.pk]), {"name": "x"})
    move = labeller_client.post(
        reverse("curation:subclass-move", args=[default_subclass(wren).pk]),
        {"to_class": other.pk},
    )
    assert add.status_code == 403
    assert move.status_code == 403
    assert default_subclass(wren).label_class_id == wren.pk


# --- Inbox and trash ------------------------------------------------------------------------


def test_the_inbox_shows_unlabelled_images_oldest_first(
    labeller_client: Client, make_image: Callable[..., Image], labelled_image: Image
) -> None:
    first = make_image(None)
    second = make_image(None)
    response = labeller_client.get(reverse("curation:inbox"))
    assert [i.pk for i in response.context["page"].items] == [first.pk, second.pk]
    assert response.context["inbox_count"] == 2


def test_the_trash_pages_by_when_images_were_trashed(
    labeller_client: Client,
    reviewer: User,
    make_image: Callable[..., Image],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(views, "IMAGES_PER_PAGE", 2)
    images = [make_image(None) for _ in range(3)]
    for image in reversed(images):  # the oldest image is trashed last
        image_trash(image_id=image.pk, actor=reviewer, note="blurry")

    first = labeller_client.get(reverse("curation:trash")).context["page"]
    second = labeller_client.get(reverse("curation:trash"), {"before": first.next_cursor}).context[
        "page"
    ]

    shown = [i.pk for i in first.items] + [i.pk for i in second.items]
    assert shown == [images[0].pk, images[1].pk, images[2].pk]
    assert second.next_cursor is None


# --- Image page -----------------------------------------------------------------------------


def test_the_image_page_shows_metadata_and_history(
    labeller_client: Client, labelled_image: Image
) -> None:
    response = labeller_client.get(reverse("curation:image", args=[labelled_image.pk]))
    html = response.content.decode()
    assert labelled_image.sha256 in html
    assert "64 \N{MULTIPLICATION SIGN} 48 px" in html
    assert "Label history" in html
    assert "Import" in html
    assert reverse("curation:import-batch", args=[labelled_image.import_batch_id]) in html
    assert f'name="version" value="{labelled_image.version}"' in html


def test_the_original_filename_is_escaped(labeller_client: Client, labelled_image: Image) -> None:
    Image.objects.filter(pk=labelled_image.pk).update(
        original_filename='<img src=x onerror="alert(1)">.jpg'
    )
    html = labeller_client.get(reverse("curation:image", args=[labelled_image.pk])).content
    assert b"<img src=x" not in html
    assert b"&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.jpg" in html


def test_relabelling_moves_the_image_and_its_counters(
    labeller_client: Client, labelled_image: Image, labeller: User
) -> None:
    robin = LabelClassFactory(name="Robin")
    target = default_subclass(robin)
    old = labelled_image.subclass
    assert old is not None

    response = labeller_client.post(
        reverse("curation:image-relabel", args=[labelled_image.pk]),
        {"subclass": target.pk, "version": labelled_image.version},
    )

    assert response.status_code == 302
    labelled_image.refresh_from_db()
    assert labelled_image.subclass_id == target.pk
    assert labelled_image.labelled_by == labeller
    target.refresh_from_db()
    old.refresh_from_db()
    assert (target.image_count, old.image_count) == (1, 0)
    assert LabelEvent.objects.filter(image=labelled_image, reason="labelling").exists()


def test_relabelling_to_nothing_sends_the_image_back_to_the_inbox(
    labeller_client: Client, labelled_image: Image
) -> None:
    labeller_client.post(
        reverse("curation:image-relabel", args=[labelled_image.pk]),
        {"subclass": "", "version": labelled_image.version},
    )
    labelled_image.refresh_from_db()
    assert labelled_image.subclass_id is None


def test_a_stale_relabel_form_shows_who_changed_the_image(
    labeller_client: Client, labelled_image: Image, reviewer: User
) -> None:
    seen_version = labelled_image.version
    robin = LabelClassFactory(name="Robin")
    wren = LabelClassFactory(name="Wren")
    image_relabel(
        image_id=labelled_image.pk,
        subclass=default_subclass(robin),
        actor=reviewer,
        reason="labelling",
        expected_version=seen_version,
    )

    response = labeller_client.post(
        reverse("curation:image-relabel", args=[labelled_image.pk]),
        {"subclass": default_subclass(wren).pk, "version": seen_version},
    )

    html = response.content.decode()
    assert response.status_code == 409
    assert "was changed by rui" in html
    assert f'name="version" value="{seen_version + 1}"' in html  # the form now has the news
    labelled_image.refresh_from_db()
    assert labelled_image.subclass_id == default_subclass(robin).pk  # nothing overwritten


def test_a_labeller_cannot_trash_or_restore(labeller_client: Client, labelled_image: Image) -> None:
    trash = labeller_client.post(
        reverse("curation:image-trash", args=[labelled_image.pk]), {"reason": "blurry"}
    )
    restore = labeller_client.post(reverse("curation:image-restore", args=[labelled_image.pk]))
    assert trash.status_code == 403
    assert restore.status_code == 403
    labelled_image.refresh_from_db()
    assert labelled_image.status == ImageStatus.ACTIVE
    page = labeller_client.get(reverse("curation:image", args=[labelled_image.pk]))
    assert b'id="trash-reason"' not in page.content


def test_a_reviewer_trashes_with_a_reason_and_restores(
    reviewer_client: Client, labelled_image: Image
) -> None:
    url = reverse("curation:image", args=[labelled_image.pk])
    response = reviewer_client.post(
        reverse("curation:image-trash", args=[labelled_image.pk]),
        {"reason": "watermark", "version": labelled_image.version},
        follow=True,
    )
    labelled_image.refresh_from_db()
    assert labelled_image.status == ImageStatus.TRASHED
    assert labelled_image.trashed_reason == "watermark"
    assert b'id="restore-button"' in response.content

    reviewer_client.post(reverse("curation:image-restore", args=[labelled_image.pk]))
    labelled_image.refresh_from_db()
    assert labelled_image.status == ImageStatus.ACTIVE
    assert reviewer_client.get(url).status_code == 200


def test_trashing_without_a_reason_is_refused_with_a_message(
    reviewer_client: Client, labelled_image: Image
) -> None:
    response = reviewer_client.post(
        reverse("curation:image-trash", args=[labelled_image.pk]), {"reason": " "}, follow=True
    )
    assert "Say why" in response.content.decode()
    labelled_image.refresh_from_db()
    assert labelled_image.status == ImageStatus.ACTIVE


def test_the_image_page_links_to_its_neighbours_in_the_class(
    labeller_client: Client, make_image: Callable[..., Image]
) -> None:
    wren = LabelClassFactory(name="Wren")
    older, middle, newer = (make_image(default_subclass(wren)) for _ in range(3))
    response = labeller_client.get(reverse("curation:image", args=[middle.pk]))
    assert response.context["previous_id"] == newer.pk
    assert response.context["next_id"] == older.pk


# --- Imports, jobs, tokens ------------------------------------------------------------------


def test_the_import_batch_page_lists_its_report(
    labeller_client: Client, labelled_image: Image
) -> None:
    response = labeller_client.get(
        reverse("curation:import-batch", args=[labelled_image.import_batch_id])
    )
    html = response.content.decode()
    assert "test.jpg" in html
    assert "badge-created" in html
    assert reverse("curation:image", args=[labelled_image.pk]) in html


def test_the_import_page_lists_recent_imports_and_loads_its_script(
    labeller_client: Client, labelled_image: Image
) -> None:
    html = labeller_client.get(reverse("curation:import")).content.decode()
    assert "js/import.js" in html
    assert reverse("api:image-list") in html
    assert reverse("curation:import-batch", args=[labelled_image.import_batch_id]) in html


def test_the_jobs_page_shows_progress(labeller_client: Client, labeller: User) -> None:
    from curation.models import Job

    Job.objects.create(kind="curation.import_archive", status="running", done=30, total=120)
    html = labeller_client.get(reverse("curation:jobs")).content.decode()
    assert "30 / 120 · 25%" in html
    assert "badge-running" in html
    assert "js/jobs.js" in html


def test_the_tokens_page_shows_a_new_token_once_and_revokes(
    labeller_client: Client, labeller: User
) -> None:
    issued = labeller_client.post(reverse("accounts:tokens"), {"issue": "1"})
    secret = issued.context["new_token"]
    token = AuthToken.objects.get(user=labeller)
    assert secret.startswith(token.token_key)
    assert f'curl -H "Authorization: Token {secret}"' in issued.content.decode()
    later = labeller_client.get(reverse("accounts:tokens")).content.decode()
    assert token.token_key in later
    assert secret not in later

    labeller_client.post(reverse("accounts:tokens"), {"revoke": token.token_key})
    assert not AuthToken.objects.filter(user=labeller).exists()


# --- Escaping -------------------------------------------------------------------------------


def test_a_class_named_like_a_script_stays_inert(
    labeller_client: Client, make_image: Callable[..., Image]
) -> None:
    # Made directly: the taxonomy service refuses slashes, but names can come from anywhere.
    evil = LabelClass.objects.create(name=SCRIPT_NAME)
    subclass = SubClass.objects.create(
        label_class=evil, name=SCRIPT_NAME, is_default=True, source=Source.REAL
    )
    image = make_image(subclass)

    for url in (
        reverse("curation:library"),
        reverse("curation:class", args=[evil.pk]),
        reverse("curation:image", args=[image.pk]),
        reverse("curation:import"),
    ):
        html = labeller_client.get(url).content.decode()
        assert SCRIPT_NAME not in html, url
        assert ESCAPED_SCRIPT_NAME in html, url


# --- Query counts ---------------------------------------------------------------------------


def _library_of(size: int, make_image: Callable[..., Image], reviewer: User) -> dict[str, Any]:
    """``size`` classes, each with a second sub-class, ``size`` labelled, inbox and trashed
    images."""
    classes = []
    for n in range(size):
        label_class = LabelClassFactory(name=f"Class {n:03d}")
        SubClassFactory(label_class=label_class, name="juvenile", source=Source.STAGED)
        classes.append(label_class)
    first = classes[0]
    labelled = [make_image(default_subclass(first)) for _ in range(size)]
    for _ in range(size):
        make_image(None)
    for _ in range(size):
        image_trash(image_id=make_image(None).pk, actor=reviewer, note="blurry")
    return {"class": first, "image": labelled[size // 2]}


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        assert client.get(url).status_code == 200
    return len(context.captured_queries)


@pytest.mark.parametrize("page", ["library", "class", "inbox", "trash", "image", "jobs"])
def test_pages_run_the_same_queries_for_a_small_and_a_larger_library(
    reviewer_client: Client,
    reviewer: User,
    make_image: Callable[..., Image],
    django_assert_max_num_queries: Any,
    page: str,
) -> None:
    def url(built: dict[str, Any]) -> str:
        return {
            "library": reverse("curation:library"),
            "class": reverse("curation:class", args=[built["class"].pk]),
            "inbox": reverse("curation:inbox"),
            "trash": reverse("curation:trash"),
            "image": reverse("curation:image", args=[built["image"].pk]),
            "jobs": reverse("curation:jobs"),
        }[page]

    small = _library_of(3, make_image, reviewer)
    small_count = _queries(reviewer_client, url(small))

    Image.objects.all().delete()
    SubClass.objects.all().delete()
    LabelClass.objects.all().delete()
    large = _library_of(30, make_image, reviewer)
    with django_assert_max_num_queries(small_count):
        reviewer_client.get(url(large))
    assert small_count <= 14


def test_a_reviewer_moves_a_sub_class_by_typing_the_target_class_name(
    client: Client, reviewer: User
) -> None:
    from curation.services.taxonomy import class_create, subclass_create

    robin = class_create(name="Robin", actor=None)
    wren = class_create(name="Wren", actor=None)
    juvenile = subclass_create(label_class=robin, name="juvenile", actor=None)
    client.force_login(reviewer)
    page = client.get(reverse("curation:class", args=[robin.pk])).content.decode()
    assert '<datalist id="move-targets"><option value="Wren">' in page
    response = client.post(
        reverse("curation:subclass-move", args=[juvenile.pk]), {"to_class_name": "  wren "}
    )
    assert response.status_code == 302
    juvenile.refresh_from_db()
    assert juvenile.label_class_id == wren.pk
    response = client.post(
        reverse("curation:subclass-move", args=[juvenile.pk]),
        {"to_class_name": "Owl"},
        follow=True,
    )
    assert "No class named “Owl”" in response.content.decode()


def test_the_class_page_and_inbox_filter_on_smes_bad_image_verdicts(
    client: Client, labeller: User, make_image: Callable[..., Image]
) -> None:
    from curation.models import BadVerdict, SubClass
    from curation.services.taxonomy import class_create

    robin = class_create(name="Robin", actor=None)
    default = SubClass.objects.get(label_class=robin, is_default=True)
    blurry, fine = make_image(default), make_image(default)
    dark_inbox, fine_inbox = make_image(), make_image()
    BadVerdict.objects.create(image=blurry, reason="blurry", actor=labeller)
    BadVerdict.objects.create(image=dark_inbox, reason="too_dark", actor=labeller)
    client.force_login(labeller)

    def shown(url: str, **params: str) -> set[int]:
        page = client.get(url, params).content.decode()
        return {
            image.pk
            for image in (blurry, fine, dark_inbox, fine_inbox)
            if reverse("curation:image", args=[image.pk]) in page
        }

    class_url = reverse("curation:class", args=[robin.pk])
    assert shown(class_url) == {blurry.pk, fine.pk}
    assert shown(class_url, verdict="bad") == {blurry.pk}
    assert shown(class_url, verdict="too_dark") == set()
    inbox_url = reverse("curation:inbox")
    assert shown(inbox_url, verdict="too_dark") == {dark_inbox.pk}
    assert shown(inbox_url, verdict="nonsense") == {dark_inbox.pk, fine_inbox.pk}
