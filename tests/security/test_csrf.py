"""CSRF: every page that accepts a POST, and every API write made with a browser session,
refuses a request without the CSRF token.

The pages are found by walking the URL configuration and posting to each one with a valid
token first: whatever does not answer 405 accepts POSTs, so a new form is covered as soon as
its URL exists.
"""

from __future__ import annotations

import pytest
from django.db import transaction
from django.http import HttpResponse
from django.test import Client
from django.utils.crypto import get_random_string
from rest_framework.authentication import SessionAuthentication

from accounts.services import token_issue
from tests.security.test_access import Endpoint, endpoints, request, rule_for, url_of
from tests.security.world import World, build_world

pytestmark = pytest.mark.django_db

CSRF_FAILURE = "CSRF verification failed"


def browser(world: World) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.admin)
    return client


def post_page(client: Client, url: str, *, token: str | None) -> HttpResponse:
    if token is None:
        return client.post(url, {})
    client.cookies["csrftoken"] = token
    return client.post(url, {"csrfmiddlewaretoken": token})


def _pages() -> list[Endpoint]:
    return [e for e in endpoints() if not e.is_api and rule_for(e.key) is not None]


def test_every_page_that_accepts_a_post_refuses_one_without_a_csrf_token() -> None:
    world = build_world()
    token = get_random_string(32)
    accepting, problems = [], []
    for endpoint in _pages():
        found = rule_for(endpoint.key)
        assert found is not None
        url = url_of(endpoint, found, world)
        with transaction.atomic():
            with_token = post_page(browser(world), url, token=token)
            transaction.set_rollback(True)
        if with_token.status_code == 405:
            continue
        accepting.append(endpoint.key)
        if CSRF_FAILURE in with_token.content.decode(errors="replace"):
            problems.append(f"{endpoint.key}: refused even with a valid token")
        with transaction.atomic():
            without = post_page(browser(world), url, token=None)
            transaction.set_rollback(True)
        if without.status_code != 403 or CSRF_FAILURE not in without.content.decode():
            problems.append(f"{endpoint.key}: POST {url} without a token got {without.status_code}")

    assert not problems, "\n".join(problems)
    # The forms the walk must have found (a sample, so a broken walk cannot pass quietly).
    for key in ("login", "logout", "curation:image-relabel", "accounts:tokens", "datasets:build"):
        assert key in accepting


def _session_writes() -> list[tuple[Endpoint, str]]:
    writes = []
    for endpoint in endpoints():
        if not endpoint.is_api:
            continue
        view_class = getattr(endpoint.callback, "cls", None)
        if view_class is None or SessionAuthentication not in view_class.authentication_classes:
            continue  # a browser session cannot reach it at all (token sign-in and sign-out)
        for method in sorted((endpoint.api_methods() or set()) - {"GET", "HEAD", "OPTIONS"}):
            writes.append((endpoint, method))
    return writes


def test_every_api_write_with_a_session_needs_the_csrf_token() -> None:
    world = build_world()
    problems = []
    writes = _session_writes()
    for endpoint, method in writes:
        found = rule_for(endpoint.key)
        assert found is not None
        url = url_of(endpoint, found, world)
        with transaction.atomic():
            response = request(browser(world), method, url, api=True)
            transaction.set_rollback(True)
        detail = response.json().get("detail", "") if response.status_code == 403 else ""
        if "CSRF" not in detail:
            problems.append(f"{endpoint.key}: {method} {url} got {response.status_code} {detail}")

    assert len(writes) > 30
    assert not problems, "\n".join(problems)


def test_the_same_api_write_with_a_token_needs_no_csrf_token() -> None:
    world = build_world()
    _, token = token_issue(user=world.reviewer)
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Token {token}")

    response = client.post("/api/v1/classes/", {"name": "Sparrow"}, content_type="application/json")

    assert response.status_code == 201


def test_a_session_api_write_with_the_token_goes_through() -> None:
    world = build_world()
    client = browser(world)
    token = get_random_string(32)
    client.cookies["csrftoken"] = token

    response = client.post(
        "/api/v1/classes/",
        {"name": "Sparrow"},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )

    assert response.status_code == 201
