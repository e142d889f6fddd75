"""Machine tokens: issued once, stored as a digest, revocable."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Role, User

pytestmark = pytest.mark.django_db

IMAGES = "/api/v1/images/"


def issue(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip()


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_issue_token_prints_a_token_that_authenticates(labeller: User) -> None:
    token = issue("--user", "lena")

    response = client_with(token).get(IMAGES)

    assert response.status_code == 200
    assert client_with(token).get("/api/v1/tokens/").json()[0]["key"] == token[:15]


def test_only_the_digest_of_a_token_is_stored(labeller: User) -> None:
    token = issue("--user", "lena")

    stored = AuthToken.objects.get(user=labeller)
    assert stored.digest == hash_token(token)
    assert stored.digest != token
    assert token not in (stored.digest, stored.token_key)
    assert stored.expiry is None  # machine tokens last until revoked


def test_a_revoked_token_is_refused(labeller: User) -> None:
    token = issue("--user", "lena")
    client = client_with(token)
    key = AuthToken.objects.get(user=labeller).token_key

    assert client.delete(f"/api/v1/tokens/{key}/").status_code == 204
    response = client.get(IMAGES)

    assert response.status_code == 401
    assert not AuthToken.objects.exists()


def test_a_made_up_or_altered_token_is_refused(labeller: User) -> None:
    token = issue("--user", "lena")
    altered = token[:-1] + ("0" if token[-1] != "0" else "1")

    assert client_with(altered).get(IMAGES).status_code == 401
    assert client_with("not-a-token").get(IMAGES).status_code == 401


def test_a_token_carries_its_users_role(labeller: User) -> None:
    token = issue("--user", "lena")

    response = client_with(token).post("/api/v1/classes/", {"name": "Robin"}, format="json")

    assert response.status_code == 403


def test_issue_token_can_create_a_machine_account() -> None:
    out = io.StringIO()
    call_command("issue_token", "--user", "importer", "--create", "reviewer", "--json", stdout=out)

    body = json.loads(out.getvalue())
    user = User.objects.get(username="importer")
    assert user.role == Role.REVIEWER
    assert not user.has_usable_password()
    assert body["user"] == "importer"
    assert (
        client_with(body["token"])
        .post("/api/v1/classes/", {"name": "Robin"}, format="json")
        .status_code
        == 201
    )


def test_issue_token_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("issue_token", "--user", "ghost")

    assert not User.objects.exists()


def test_tokens_are_issued_and_revoked_only_for_yourself(labeller: User, reviewer: User) -> None:
    mine = issue("--user", "lena")
    theirs_key = AuthToken.objects.get(user=labeller).token_key
    reviewer_client = client_with(issue("--user", "rui"))

    assert theirs_key not in [t["key"] for t in reviewer_client.get("/api/v1/tokens/").json()]
    assert reviewer_client.delete(f"/api/v1/tokens/{theirs_key}/").status_code == 404
    assert client_with(mine).get(IMAGES).status_code == 200


def test_issuing_a_token_over_the_api_shows_it_once(api: APIClient, labeller: User) -> None:
    response = api.post("/api/v1/tokens/")

    assert response.status_code == 201
    token = response.json()["token"]
    assert client_with(token).get(IMAGES).status_code == 200
    assert "token" not in api.get("/api/v1/tokens/").json()[0]


def test_anonymous_requests_get_401_with_a_token_challenge(anon_api: APIClient) -> None:
    response = anon_api.get(IMAGES)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["detail"]
