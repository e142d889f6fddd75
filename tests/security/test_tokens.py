"""Tokens and sign-in from an attacker's side: revoked tokens are dead, "log out everywhere"
kills every token, and both password doors (the HTML form and the API's token sign-in) refuse
an address that keeps guessing one username's password, or sprays guesses over many."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.services import token_issue
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

IMAGES = "/api/v1/images/"
TOKEN_LOGIN = "/api/v1/auth/login/"
TOKEN_LOGOUT = "/api/v1/auth/logout/"
TOKEN_LOGOUT_ALL = "/api/v1/auth/logout-all/"


@pytest.fixture(autouse=True)
def production_login_rate(settings: Any) -> Iterator[None]:
    """The production rates (10 failures a minute per address and username, 50 an hour per
    address), and no failures left from another test."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"login": "10/min", "login_address": "50/hour"},
    }
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def lena() -> User:
    return UserFactory(username="lena", role=Role.LABELLER, password="correct horse")


def with_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


# --- Revocation -------------------------------------------------------------------------------


def test_a_revoked_token_is_refused_everywhere(lena: User) -> None:
    instance, token = token_issue(user=lena)
    client = with_token(token)
    assert client.get(IMAGES).status_code == 200

    AuthToken.objects.filter(pk=instance.pk).delete()

    for url in (IMAGES, "/api/v1/tokens/", "/api/v1/classes/", TOKEN_LOGOUT_ALL):
        response = client.get(url) if url != TOKEN_LOGOUT_ALL else client.post(url)
        assert response.status_code == 401, url


def test_signing_out_a_token_revokes_only_that_token(lena: User) -> None:
    _, first = token_issue(user=lena)
    _, second = token_issue(user=lena)

    assert with_token(first).post(TOKEN_LOGOUT).status_code == 204

    assert with_token(first).get(IMAGES).status_code == 401
    assert with_token(second).get(IMAGES).status_code == 200


def test_signing_out_needs_a_token_not_a_session(lena: User) -> None:
    client = APIClient()
    client.force_login(lena)

    assert client.post(TOKEN_LOGOUT).status_code in (401, 403)


def test_logout_all_revokes_every_token_of_the_user_and_no_one_elses(lena: User) -> None:
    other = UserFactory(username="rui", role=Role.REVIEWER)
    tokens = [token_issue(user=lena)[1] for _ in range(3)]
    _, theirs = token_issue(user=other)

    response = with_token(tokens[0]).post(TOKEN_LOGOUT_ALL)

    assert response.status_code == 200
    assert response.json()["revoked"] == 3
    for token in tokens:
        assert with_token(token).get(IMAGES).status_code == 401
    assert with_token(theirs).get(IMAGES).status_code == 200


def test_the_tokens_page_revokes_all_tokens(lena: User) -> None:
    tokens = [token_issue(user=lena)[1] for _ in range(2)]
    browser = Client()
    browser.force_login(lena)

    response = browser.post("/account/tokens/", {"revoke_all": "1"}, follow=True)

    assert "2 tokens revoked." in response.content.decode()
    assert all(with_token(token).get(IMAGES).status_code == 401 for token in tokens)


# --- The API's token sign-in ------------------------------------------------------------------


def test_the_api_issues_a_token_for_the_right_password(lena: User) -> None:
    response = APIClient().post(
        TOKEN_LOGIN, {"username": "lena", "password": "correct horse"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "lena" and body["role"] == "labeller"
    assert with_token(body["token"]).get(IMAGES).status_code == 200
    assert AuthToken.objects.get(user=lena).token_key == body["key"]


def test_the_api_refuses_a_wrong_password_without_saying_which_part_was_wrong(lena: User) -> None:
    client = APIClient()
    wrong_password = client.post(TOKEN_LOGIN, {"username": "lena", "password": "x"})
    no_such_user = client.post(TOKEN_LOGIN, {"username": "ghost", "password": "x"})

    assert wrong_password.status_code == no_such_user.status_code == 400
    assert wrong_password.json()["detail"] == no_such_user.json()["detail"]
    assert not AuthToken.objects.exists()


def test_a_disabled_account_gets_no_token(lena: User) -> None:
    lena.is_active = False
    lena.save()

    response = APIClient().post(TOKEN_LOGIN, {"username": "lena", "password": "correct horse"})

    assert response.status_code == 400
    assert not AuthToken.objects.exists()


def test_the_eleventh_failed_token_sign_in_within_a_minute_gets_429(lena: User) -> None:
    client = APIClient()
    for attempt in range(10):
        response = client.post(TOKEN_LOGIN, {"username": "lena", "password": f"guess {attempt}"})
        assert response.status_code == 400, attempt

    refused = client.post(TOKEN_LOGIN, {"username": "lena", "password": "correct horse"})

    assert refused.status_code == 429
    assert "Too many failed sign-in attempts" in refused.json()["detail"]
    assert 0 < int(refused["Retry-After"]) <= 60
    assert not AuthToken.objects.exists()  # not even the right password gets through


def test_the_limit_is_per_address_and_username(lena: User) -> None:
    UserFactory(username="rui", role=Role.REVIEWER, password="rui's password")
    attacker = APIClient(REMOTE_ADDR="203.0.113.9")
    for attempt in range(10):
        attacker.post(TOKEN_LOGIN, {"username": "lena", "password": f"guess {attempt}"})
    assert attacker.post(TOKEN_LOGIN, {"username": "lena", "password": "x"}).status_code == 429

    lena_elsewhere = APIClient(REMOTE_ADDR="198.51.100.7")
    assert (
        lena_elsewhere.post(
            TOKEN_LOGIN, {"username": "lena", "password": "correct horse"}
        ).status_code
        == 201
    )
    assert (
        attacker.post(TOKEN_LOGIN, {"username": "rui", "password": "rui's password"}).status_code
        == 201
    )


def test_the_limit_lifts_when_the_minute_is_over(lena: User, monkeypatch: Any) -> None:
    import accounts.throttling

    now = [1_000_000.0]
    monkeypatch.setattr(accounts.throttling.time, "time", lambda: now[0])
    client = APIClient()
    for attempt in range(10):
        client.post(TOKEN_LOGIN, {"username": "lena", "password": f"guess {attempt}"})
    assert client.post(TOKEN_LOGIN, {"username": "lena", "password": "x"}).status_code == 429

    now[0] += 61
    cache.clear()  # the cache's own expiry runs on the real clock; stand in for it

    response = client.post(TOKEN_LOGIN, {"username": "lena", "password": "correct horse"})
    assert response.status_code == 201


def test_a_spoofed_forwarded_for_header_does_not_reset_the_count(lena: User) -> None:
    for attempt in range(10):
        APIClient(HTTP_X_FORWARDED_FOR=f"10.0.0.{attempt}").post(
            TOKEN_LOGIN, {"username": "lena", "password": f"guess {attempt}"}
        )

    response = APIClient(HTTP_X_FORWARDED_FOR="10.0.0.99").post(
        TOKEN_LOGIN, {"username": "lena", "password": "x"}
    )

    assert response.status_code == 429


def test_behind_a_proxy_the_address_it_saw_is_the_one_counted(lena: User, settings: Any) -> None:
    settings.LOUPE_PROXY_COUNT = 1
    proxy = "192.0.2.1"
    for attempt in range(10):
        APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"spoofed, 203.0.113.{attempt}").post(
            TOKEN_LOGIN, {"username": "lena", "password": f"guess {attempt}"}
        )
    attacker = APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.1")
    for _ in range(9):
        attacker.post(TOKEN_LOGIN, {"username": "lena", "password": "again"})

    assert attacker.post(TOKEN_LOGIN, {"username": "lena", "password": "x"}).status_code == 429
    colleague = APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.200")
    assert (
        colleague.post(TOKEN_LOGIN, {"username": "lena", "password": "correct horse"}).status_code
        == 201
    )


# --- The HTML sign-in form --------------------------------------------------------------------


def test_the_eleventh_failed_sign_in_on_the_login_page_gets_429(lena: User) -> None:
    browser = Client()
    for attempt in range(10):
        response = browser.post("/login/", {"username": "lena", "password": f"guess {attempt}"})
        assert response.status_code == 200, attempt
        assert "did not match" in response.content.decode()

    refused = browser.post("/login/", {"username": "lena", "password": "correct horse"})

    assert refused.status_code == 429
    page = refused.content.decode()
    assert "Too many failed sign-in attempts for this username from your address" in page
    assert 'value="lena"' in page  # the form keeps the username typed
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "_auth_user_id" not in browser.session


def test_the_login_page_and_the_api_share_one_count(lena: User) -> None:
    browser = Client()
    for attempt in range(6):
        browser.post("/login/", {"username": "lena", "password": f"guess {attempt}"})
    for attempt in range(4):
        APIClient().post(TOKEN_LOGIN, {"username": "lena", "password": f"again {attempt}"})

    assert browser.post("/login/", {"username": "lena", "password": "x"}).status_code == 429
    assert APIClient().post(TOKEN_LOGIN, {"username": "lena", "password": "x"}).status_code == 429


def test_a_right_password_clears_the_failures(lena: User) -> None:
    browser = Client()
    for attempt in range(9):
        browser.post("/login/", {"username": "lena", "password": f"guess {attempt}"})
    assert (
        browser.post("/login/", {"username": "lena", "password": "correct horse"}).status_code
        == 302
    )
    browser.logout()

    for attempt in range(10):
        response = browser.post("/login/", {"username": "lena", "password": f"guess {attempt}"})
        assert response.status_code == 200, attempt


def test_the_admin_sign_in_page_sends_people_to_the_rate_limited_form() -> None:
    response = Client().get("/admin/login/?next=/admin/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/admin/"


def test_an_admin_signs_in_to_the_admin_through_the_login_page() -> None:
    UserFactory(
        username="ada", role=Role.ADMIN, is_staff=True, is_superuser=True, password="admin pw"
    )
    browser = Client()

    response = browser.post(
        "/login/", {"username": "ada", "password": "admin pw", "next": "/admin/"}
    )

    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert browser.get("/admin/").status_code == 200


# --- Passwords --------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["password", "short1", "12345678901", "qwertyuiop"])
def test_the_admin_refuses_weak_passwords_for_new_users(password: str) -> None:
    admin = UserFactory(username="ada", role=Role.ADMIN, is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(admin)

    response = browser.post(
        "/admin/accounts/user/add/",
        {
            "username": "lena",
            "usable_password": "true",
            "password1": password,
            "password2": password,
        },
    )

    assert response.status_code == 200  # the form again, with the reason
    assert not User.objects.filter(username="lena").exists()


def test_the_admin_accepts_a_strong_password() -> None:
    admin = UserFactory(username="ada", role=Role.ADMIN, is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(admin)
    password = "correct horse battery staple"

    response = browser.post(
        "/admin/accounts/user/add/",
        {
            "username": "lena",
            "usable_password": "true",
            "password1": password,
            "password2": password,
        },
    )

    assert response.status_code == 302
    assert User.objects.get(username="lena").check_password(password)


def test_a_malformed_login_rate_stops_start_up_with_a_clear_error(settings: Any) -> None:
    from accounts.checks import login_rate_check

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"login": "often"},
    }

    errors = login_rate_check(None)

    assert [error.id for error in errors] == ["loupe.E001"]
    assert "'often'" in errors[0].msg


def test_a_malformed_address_rate_stops_start_up_with_a_clear_error(settings: Any) -> None:
    from accounts.checks import login_rate_check

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"login": "10/min", "login_address": "50 an hour"},
    }

    errors = login_rate_check(None)

    assert [error.id for error in errors] == ["loupe.E002"]
    assert "login_address rate" in errors[0].msg and "'50 an hour'" in errors[0].msg


# --- A password spray: one guess for each of many usernames -----------------------------------


def spray(client: Any, url: str, usernames: list[str]) -> list[int]:
    return [
        client.post(url, {"username": name, "password": "Winter2026!"}).status_code
        for name in usernames
    ]


def test_an_address_spraying_one_password_over_many_usernames_is_stopped(lena: User) -> None:
    sprayer = APIClient(REMOTE_ADDR="203.0.113.9")
    usernames = [f"user{n}" for n in range(50)]

    statuses = spray(sprayer, TOKEN_LOGIN, usernames)

    assert statuses == [400] * 50  # one failure per username: the per-username limit never bites
    refused = sprayer.post(TOKEN_LOGIN, {"username": "lena", "password": "correct horse"})
    assert refused.status_code == 429  # the 51st attempt, even with a right password
    assert "from your address, whatever the username" in refused.json()["detail"]
    assert 3540 < int(refused["Retry-After"]) <= 3600
    assert not AuthToken.objects.exists()
    elsewhere = APIClient(REMOTE_ADDR="198.51.100.7")
    assert (
        elsewhere.post(TOKEN_LOGIN, {"username": "lena", "password": "correct horse"}).status_code
        == 201
    )


def test_the_spray_limit_counts_the_login_page_and_the_api_together(lena: User) -> None:
    browser = Client(REMOTE_ADDR="203.0.113.9")
    assert spray(browser, "/login/", [f"user{n}" for n in range(30)]) == [200] * 30
    api = APIClient(REMOTE_ADDR="203.0.113.9")
    assert spray(api, TOKEN_LOGIN, [f"other{n}" for n in range(20)]) == [400] * 20

    refused = browser.post("/login/", {"username": "lena", "password": "correct horse"})

    assert refused.status_code == 429
    assert "Too many failed sign-in attempts from your address" in refused.content.decode()
    assert "_auth_user_id" not in browser.session


def test_a_right_password_does_not_reset_the_spray_count(lena: User) -> None:
    sprayer = APIClient(REMOTE_ADDR="203.0.113.9")
    spray(sprayer, TOKEN_LOGIN, [f"user{n}" for n in range(49)])
    own = sprayer.post(TOKEN_LOGIN, {"username": "lena", "password": "correct horse"})
    assert own.status_code == 201  # the sprayer's own account still signs in

    spray(sprayer, TOKEN_LOGIN, ["user49"])

    assert sprayer.post(TOKEN_LOGIN, {"username": "user50", "password": "x"}).status_code == 429


def test_the_spray_limit_lifts_when_its_window_is_over(lena: User, monkeypatch: Any) -> None:
    import accounts.throttling

    now = [1_000_000.0]
    monkeypatch.setattr(accounts.throttling.time, "time", lambda: now[0])
    sprayer = APIClient(REMOTE_ADDR="203.0.113.9")
    spray(sprayer, TOKEN_LOGIN, [f"user{n}" for n in range(50)])
    assert sprayer.post(TOKEN_LOGIN, {"username": "lena", "password": "x"}).status_code == 429

    now[0] += 3601
    cache.clear()  # the cache's own expiry runs on the real clock; stand in for it

    response = sprayer.post(TOKEN_LOGIN, {"username": "lena", "password": "correct horse"})
    assert response.status_code == 201


def test_failed_token_issues_do_not_count_towards_the_spray_limit(lena: User) -> None:
    client = APIClient(REMOTE_ADDR="203.0.113.9")
    for attempt in range(10):
        client.credentials(HTTP_AUTHORIZATION=f"Token guessed-{attempt}")
        client.post("/api/v1/tokens/")
    client.credentials()
    assert spray(client, TOKEN_LOGIN, [f"user{n}" for n in range(50)]) == [400] * 50


# --- Issuing a token with a credential ---------------------------------------------------------


def test_the_eleventh_failed_token_issue_within_a_minute_gets_429(lena: User) -> None:
    _, good = token_issue(user=lena)
    for attempt in range(10):
        response = with_token(f"guessed-token-{attempt}").post("/api/v1/tokens/")
        assert response.status_code == 401, attempt

    refused = with_token(good).post("/api/v1/tokens/")

    assert refused.status_code == 429
    assert "Too many failed attempts to issue a token" in refused.json()["detail"]
    assert 0 < int(refused["Retry-After"]) <= 60
    assert AuthToken.objects.filter(user=lena).count() == 1
    assert with_token(good).get(IMAGES).status_code == 200  # only issuing is held back
    elsewhere = APIClient(REMOTE_ADDR="198.51.100.7")
    elsewhere.credentials(HTTP_AUTHORIZATION=f"Token {good}")
    assert elsewhere.post("/api/v1/tokens/").status_code == 201


def test_issuing_tokens_with_a_good_credential_is_not_limited(lena: User) -> None:
    _, good = token_issue(user=lena)

    for _ in range(12):
        assert with_token(good).post("/api/v1/tokens/").status_code == 201
