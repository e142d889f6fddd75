"""Stored XSS: every name, label, note, filename, batch name, model name and client id a user or
a machine can type is inert on every page that shows it.

The library is built with the payload in all of them (``build_world(text=...)``), then every
page a signed-in admin can open with GET (found by walking the URL configuration), and a few
more views of the same pages, is rendered: the payload must never appear as markup, and it
must appear escaped on the pages that show it (so the test cannot pass by showing nothing).
Data handed to page scripts goes through ``json_script``, which escapes ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.security.test_access import endpoints, rule_for, url_of
from tests.security.world import World, build_world, signed_in

pytestmark = pytest.mark.django_db

PAYLOADS = [
    "</script><script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
]
# What the payloads would put into a page if they were not escaped.
MARKUP = ["<script>alert(1)", "<img src=x onerror=alert(1)>", "</script><script>"]

# Other views of pages the walk finds once (tabs, the other production path, queues).
EXTRA_PAGES = [
    "/production/review/sad/",
    "/label/second-opinions/?tab=settled",
    "/label/inbox/",
    "/label/second:all/",
    "/?q=Robin",
    "/inbox/",
    "/trash/",
    "/models/identify/?model=1",
    "/api/v1/classes/",  # the browsable API, asked for HTML
    "/api/v1/images/",
    "/api/v1/prediction-logs/",
    "/api/v1/models/",
    "/api/v1/imports/",
]


def _pages(world: World) -> list[str]:
    urls = []
    for endpoint in endpoints():
        found = rule_for(endpoint.key)
        if endpoint.is_api or found is None or "GET" not in found.methods:
            continue
        if endpoint.key.startswith("admin") or endpoint.route.startswith("admin/"):
            continue  # Django's own admin templates; the users' page is checked below
        urls.append(url_of(endpoint, found, world))
    extra_admin = [
        f"/admin/accounts/user/{world.labeller.pk}/change/",
        "/admin/accounts/user/",
        "/admin/knox/authtoken/",
    ]
    return urls + EXTRA_PAGES + extra_admin


def _render(client: Client, url: str) -> str:
    response = client.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code in (200, 302, 404), f"{url}: {response.status_code}"
    if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
        return ""
    return response.content.decode()


@pytest.mark.parametrize("payload", PAYLOADS, ids=["script", "attribute"])
def test_payloads_stay_inert_on_every_page(payload: str) -> None:
    world = build_world(text=payload)
    client = signed_in(world.admin)
    escaped_on = []
    problems = []
    for url in _pages(world):
        html = _render(client, url)
        for markup in MARKUP:
            if markup in html:
                at = html.index(markup)
                problems.append(f"{url}: raw {markup!r} in …{html[max(0, at - 80) : at + 40]!r}")
        if "alert(1)" in html:
            escaped_on.append(url)

    assert not problems, "\n".join(problems)
    # Pages that show the hostile names did show them (escaped), so the check looked at them.
    for url in (
        "/",
        f"/classes/{world.label_class.pk}/",
        f"/images/{world.image.pk}/",
        f"/imports/{world.batch.pk}/",
        "/models/",
        f"/models/evaluations/{world.evaluation.pk}/",
        f"/label/class:{world.label_class.pk}/",
        "/production/review/sad/",
    ):
        assert url in escaped_on, f"{url} never showed the payload"


def test_json_handed_to_page_scripts_cannot_close_its_script_element() -> None:
    world = build_world(text=PAYLOADS[0])
    client = signed_in(world.admin)

    for url in (f"/label/class:{world.label_class.pk}/", "/production/review/sad/"):
        html = _render(client, url)
        assert 'type="application/json"' in html
        assert "\\u003C/script\\u003E\\u003Cscript\\u003Ealert(1)" in html, url


def test_user_files_are_never_served_as_html() -> None:
    world = build_world(text=PAYLOADS[1])
    client = signed_in(world.admin)

    for url in (
        f"/images/{world.image.pk}/file",
        f"/images/{world.image.pk}/thumbnail",
        f"/api/v1/images/{world.image.pk}/file/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Type"].startswith("image/"), url
        assert response["X-Content-Type-Options"] == "nosniff"
