"""Menus show what the role can use: every link on every page a labeller can open leads to a
page a labeller may open (none answers 403), and the reviewer's own sections are in the
reviewer's menu only. A page a role may not open, one that does not exist and a server error
each answer a styled page with the site's navigation, not a bare "403 Forbidden"."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from accounts.models import Role
from tests.security.test_access import endpoints, rule_for, url_of
from tests.security.world import World, build_world, signed_in

pytestmark = pytest.mark.django_db

_HREF = re.compile(r'<a\b[^>]*\bhref="([^"]+)"')


@pytest.fixture
def world() -> World:
    return build_world()


def labeller_pages(world: World) -> list[str]:
    """Every page (not the API, not the admin) whose GET is open to labellers."""
    pages = []
    for endpoint in endpoints():
        found = rule_for(endpoint.key)
        if found is None or found.methods.get("GET") != Role.LABELLER:
            continue
        if endpoint.route.startswith(("api/", "admin/")) or endpoint.key == "schema":
            continue
        pages.append(url_of(endpoint, found, world))
    return sorted(set(pages))


def links(html: str) -> set[str]:
    found = set()
    for href in _HREF.findall(html):
        href = href.replace("&amp;", "&")
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or not parts.path.startswith("/"):
            continue  # another site, a fragment, a script
        if parts.path.startswith(("/api/v1/", "/logout/")):
            continue  # files and data for the page's scripts, not pages
        found.add(href)
    return found


def test_no_link_on_a_labellers_pages_leads_to_a_refusal(world: World) -> None:
    browser = signed_in(world.labeller)
    pages = labeller_pages(world)
    assert len(pages) > 15  # the walk found the pages, not nothing
    seen: dict[str, str] = {}
    for page in pages:
        response = browser.get(page)
        assert response.status_code == 200, page
        if not response["Content-Type"].startswith("text/html"):
            continue  # an image file, a JSON panel
        for href in links(response.content.decode()):
            seen.setdefault(href, page)

    refused = {
        href: page
        for href, page in sorted(seen.items())
        if browser.get(href).status_code in (401, 403)
    }

    assert refused == {}, "links a labeller is shown but may not open (link: page)"


def nav(html: str) -> str:
    start = html.index('<nav class="nav"')
    return html[start : html.index("</nav>", start)]


def test_the_reviewers_sections_are_in_the_reviewers_menu_only(world: World) -> None:
    for user, shown in ((world.labeller, False), (world.reviewer, True), (world.admin, True)):
        menu = nav(signed_in(user).get("/").content.decode())
        assert ('href="/duplicates/"' in menu) == shown, user.username
        assert ('href="/production/"' in menu) == shown, user.username
        assert 'href="/label/"' in menu and 'href="/inbox/"' in menu


def test_a_page_for_reviewers_answers_a_labeller_with_a_styled_page_and_the_menu(
    world: World,
) -> None:
    response = signed_in(world.labeller).get("/duplicates/")

    assert response.status_code == 403
    page = response.content.decode()
    assert '<link rel="stylesheet" href="/static/css/loupe.css">' in page
    assert "<title>Not for your role · Loupe</title>" in page
    assert "This page is for reviewers" in page
    assert "This needs the reviewer role." in page
    assert "signed in as <strong>lena</strong> (labeller)" in page
    assert 'href="/label/"' in nav(page)  # the way on is in the menu
    assert 'href="/duplicates/"' not in nav(page)


def test_a_missing_page_is_styled_and_keeps_the_menu(world: World) -> None:
    response = signed_in(world.labeller).get("/images/999999/")

    assert response.status_code == 404
    page = response.content.decode()
    assert "<title>Not found · Loupe</title>" in page
    assert "There is no page at <code" in page and "/images/999999/" in page
    assert 'href="/inbox/"' in nav(page)


def test_a_missing_page_for_someone_signed_out_offers_to_sign_in() -> None:
    response = Client().get("/no-such-page/")

    assert response.status_code == 404
    page = response.content.decode()
    assert '<nav class="nav"' not in page
    assert 'href="/login/"' in page


def test_a_server_error_answers_a_styled_page_with_the_menu(world: World, monkeypatch: Any) -> None:
    import curation.views

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(curation.views.selectors, "library_totals", broken)
    browser = signed_in(world.labeller)
    browser.raise_request_exception = False

    response = browser.get("/")

    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page
    assert "a bug" not in page  # no detail of the error reaches the page
    assert 'href="/label/"' in nav(page)


def test_a_server_error_page_still_renders_when_the_request_cannot_be(
    world: World, monkeypatch: Any
) -> None:
    from django.test import RequestFactory

    from config.views import server_error

    request = RequestFactory().get("/")

    class Unreadable:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("the database is gone")

    request.user = Unreadable()  # type: ignore[assignment]

    response = server_error(request)

    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content
    assert b'href="/login/"' in response.content
