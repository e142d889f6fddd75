"""Query parameters an attacker controls: list filters and ordering accept only allow-listed
fields (nothing reaches a password hash through a relation), and ``next`` after signing in or
submitting a form only ever leads back into Loupe."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import token_issue
from config.query import whole_number
from tests.security.test_access import Endpoint, endpoints, rule_for, url_of
from tests.security.world import World, build_world

pytestmark = pytest.mark.django_db

# Filters through relations to a user's password hash (the test hasher's hashes start "md5$"),
# and orderings by it: if any were applied the list would change.
HOSTILE = [
    {"created_by__password__startswith": "md5$"},
    {"created_by__password__startswith": "no-such-prefix"},
    {"uploaded_by__password__startswith": "md5$"},
    {"labelled_by__password__startswith": "no-such-prefix"},
    {"logged_by__password__startswith": "no-such-prefix"},
    {"actor__password__startswith": "no-such-prefix"},
    {"user__password__startswith": "no-such-prefix"},
    {"subclass__label_class__name__startswith": "no-such-prefix"},
    {"id__gt": "999999999"},
    {"ordering": "created_by__password"},
    {"ordering": "-created_by__password"},
    {"ordering": "uploaded_by__password"},
    {"ordering": "-uploaded_by__password"},
    {"ordering": "id"},
    {"ordering": "no_such_field"},
    {"o": "created_by__password"},
    {"order_by": "-id"},
    {"sort": "id"},
]
# Read-only endpoints that answer with a document, not a list.
NOT_LISTS = {"schema", "api-docs", "api:api-root"}
# The labelling queue hands out (and claims) the next images; asking again is another answer.
CHANGES_ON_READ = {"api:labelling-queue"}


def list_endpoints() -> list[Endpoint]:
    return [
        e
        for e in endpoints()
        if e.is_api
        and "GET" in (e.api_methods() or set())
        and "<" not in e.route
        and "(?P<" not in e.route
        and e.key not in NOT_LISTS | CHANGES_ON_READ
    ]


@pytest.fixture
def world() -> World:
    return build_world()


@pytest.fixture
def admin_api(world: World) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=world.admin)[1]}")
    return client


def _body(response: Any) -> Any:
    return response.json() if response["Content-Type"].startswith("application/json") else None


def test_unknown_filters_and_orderings_are_never_applied(admin_api: APIClient) -> None:
    found = list_endpoints()
    problems = []
    for endpoint in found:
        url = "/" + endpoint.route.replace("^", "").replace("$", "")
        baseline = admin_api.get(url)
        assert baseline.status_code == 200, f"{url}: {baseline.status_code}"
        for params in HOSTILE:
            response = admin_api.get(url, params)
            if response.status_code == 400:
                continue  # refused, and said so
            if response.status_code != 200 or _body(response) != _body(baseline):
                problems.append(f"{url}?{params}: {response.status_code}, not the plain list")

    assert {"api:image-list", "api:job-list", "api:prediction-log-list"} <= {e.key for e in found}
    assert not problems, "\n".join(problems)


def test_allow_listed_filters_do_filter(admin_api: APIClient, world: World) -> None:
    """The comparison above is not vacuous: a filter the image list does accept changes it."""
    everything = admin_api.get("/api/v1/images/").json()["results"]
    trashed = admin_api.get("/api/v1/images/", {"status": "trashed"}).json()["results"]

    assert len(trashed) == 1 < len(everything)
    assert trashed[0]["id"] == world.trashed.pk


def test_an_invalid_value_for_an_allowed_filter_is_a_400_naming_it(admin_api: APIClient) -> None:
    response = admin_api.get("/api/v1/images/", {"status": "<script>"})

    assert response.status_code == 400
    assert "status" in response.json()["detail"]


# The world's row that fills ``{id}`` in the schema's paths that take a choice parameter.
PATH_IDS = {
    "/api/v1/images/{id}/": "image",
    "/api/v1/imports/{id}/": "batch",
    "/api/v1/evaluations/{id}/": "evaluation",
}


def choice_parameters() -> list[tuple[str, str, list[str]]]:
    """Every (path, name, allowed values) of a GET query parameter with a fixed set of values
    in the OpenAPI schema: its enums, and its booleans (``true``/``false``)."""
    found = []
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path, operations in schema["paths"].items():
        for parameter in operations.get("get", {}).get("parameters", []):
            if parameter["in"] != "query":
                continue
            kind = parameter["schema"]
            if "enum" in kind:
                found.append((path, parameter["name"], [str(v) for v in kind["enum"]]))
            elif kind.get("type") == "boolean":
                found.append((path, parameter["name"], ["true", "false"]))
    return found


def _filled(path: str, world: World) -> str:
    if "{" not in path:
        return path
    prefix = path.split("{", 1)[0] + "{id}/"
    assert prefix in PATH_IDS, f"{path}: add the row that fills its id to PATH_IDS"
    return path.replace("{id}", str(getattr(world, PATH_IDS[prefix]).pk))


def test_every_choice_filter_refuses_an_unknown_value_and_names_the_allowed_ones(
    admin_api: APIClient, world: World
) -> None:
    found = choice_parameters()
    problems = []
    for path, name, allowed in found:
        url = _filled(path, world)
        for unknown in ("zzz", "<script>", "true false"):
            response = admin_api.get(url, {name: unknown})
            detail = _body(response)["detail"] if response.status_code == 400 else ""
            if response.status_code != 400:
                problems.append(f"{url}?{name}={unknown}: {response.status_code}, not a 400")
            elif name not in detail or not all(value in detail for value in allowed):
                problems.append(f"{url}?{name}={unknown}: {detail!r} does not list {allowed}")
        for value in allowed:
            response = admin_api.get(url, {name: value})
            if response.status_code == 400:
                problems.append(f"{url}?{name}={value}: refused an allowed value")

    assert {
        ("/api/v1/images/", "status"),
        ("/api/v1/images/", "labelled"),
        ("/api/v1/images/", "quality"),
        ("/api/v1/jobs/", "status"),
        ("/api/v1/duplicates/", "status"),
        ("/api/v1/duplicates/", "method"),
        ("/api/v1/imports/{id}/items/", "outcome"),
        ("/api/v1/evaluations/{id}/double-check/", "status"),
        ("/api/v1/labelling/second-opinions/", "status"),
    } <= {(path, name) for path, name, _ in found}
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("/api/v1/duplicates/", {"status": ""}, 200),
        ("/api/v1/duplicates/", {"status": "OPEN"}, 400),
        ("/api/v1/images/", {"labelled": ""}, 200),
        ("/api/v1/images/", {"labelled": "True"}, 200),
        ("/api/v1/images/", {"labelled": "yes"}, 400),
        ("/api/v1/labelling/second-opinions/", {"status": ""}, 200),
    ],
)
def test_an_empty_choice_is_no_filter_but_a_near_miss_is_refused(
    admin_api: APIClient, url: str, params: dict[str, str], expected: int
) -> None:
    assert admin_api.get(url, params).status_code == expected


def test_choice_filters_still_filter(admin_api: APIClient, world: World) -> None:
    """The refusals above are not all the filters do: an allowed value narrows the list."""
    items = f"/api/v1/imports/{world.batch.pk}/items/"
    everything = admin_api.get(items).json()["results"]
    rejected = admin_api.get(items, {"outcome": "rejected"}).json()["results"]
    checks = f"/api/v1/evaluations/{world.evaluation.pk}/double-check/"
    open_items = admin_api.get(checks, {"status": "open"}).json()["results"]
    kept = admin_api.get(checks, {"status": "kept"}).json()["results"]
    unlabelled = admin_api.get("/api/v1/images/", {"labelled": "false"}).json()["results"]

    assert everything and not rejected
    assert open_items and not kept
    assert unlabelled and all(row["subclass"] is None for row in unlabelled)


@pytest.mark.parametrize("name", ["label_class", "subclass", "import_batch"])
@pytest.mark.parametrize("value", ["9223372036854775808", "-9223372036854775809", "1.5"])
def test_an_id_filter_refuses_what_no_row_id_can_be(
    admin_api: APIClient, name: str, value: str
) -> None:
    response = admin_api.get("/api/v1/images/", {name: value})

    assert response.status_code == 400
    assert name in response.json()["detail"]


@pytest.mark.parametrize("value", ["²", "99999999999999999999999", "1.5", "1" * 5000])
def test_number_parameters_refuse_what_is_not_a_number_in_range(
    admin_api: APIClient, world: World, value: str
) -> None:
    subclasses = admin_api.get("/api/v1/subclasses/", {"label_class": value})
    similar = admin_api.get(f"/api/v1/images/{world.image.pk}/similar/", {"k": value})

    assert subclasses.status_code == 400
    assert "label_class" in subclasses.json()["detail"]
    assert similar.status_code == 400
    assert "k must be a whole number" in similar.json()["detail"]


def test_the_sub_class_filter_still_filters(admin_api: APIClient, world: World) -> None:
    rows = admin_api.get("/api/v1/subclasses/", {"label_class": world.other_class.pk}).json()

    assert [row["label_class"] for row in rows] == [world.other_class.pk]


@pytest.mark.parametrize("value", ["99999999999999999999", "0", "abc"])
def test_the_labelling_queue_refuses_held_ids_no_image_can_have(
    admin_api: APIClient, value: str
) -> None:
    response = admin_api.get("/api/v1/labelling/queue/", {"holding": ["1", value]})

    assert response.status_code == 400
    assert "holding" in response.json()["detail"]


def test_the_labelling_queue_accepts_held_ids(admin_api: APIClient, world: World) -> None:
    response = admin_api.get("/api/v1/labelling/queue/", {"holding": [world.image.pk]})

    assert response.status_code == 200


@pytest.mark.parametrize("pk", ["9223372036854775808", "-1", "0x10", "1e3", "%00"])
def test_detail_urls_answer_a_client_error_for_any_id(admin_api: APIClient, pk: str) -> None:
    detail_routes = [e for e in endpoints() if e.is_api and "(?P<pk>" in e.route]
    for endpoint in detail_routes:
        route = endpoint.route.replace("^", "").replace("$", "")
        url = "/" + route.replace("(?P<pk>[^/.]+)", pk)
        url = url.split("(?P<", 1)[0]  # routes with a second id: the first is enough
        response = admin_api.get(url)
        assert response.status_code < 500, f"{url}: {response.status_code}"

    assert len(detail_routes) > 20


def test_lists_never_show_password_hashes_or_emails(admin_api: APIClient) -> None:
    for endpoint in list_endpoints():
        url = "/" + endpoint.route.replace("^", "").replace("$", "")
        text = admin_api.get(url).content.decode()
        assert "md5$" not in text and "pbkdf2" not in text, url


# --- next= --------------------------------------------------------------------------------

OFF_SITE = [
    "//evil.example",
    "//evil.example/path",
    "https://evil.example",
    "http://evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " //evil.example",
    "///evil.example",
    "https:evil.example",
    "data:text/html,<script>alert(1)</script>",
]


def _is_on_site(location: str) -> bool:
    return location.startswith("/") and not location.startswith(("//", "/\\"))


@pytest.mark.parametrize("target", OFF_SITE)
def test_signing_in_never_redirects_off_site(labeller: User, target: str) -> None:
    labeller.set_password("pw")
    labeller.save()

    response = Client().post("/login/", {"username": "lena", "password": "pw", "next": target})

    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.parametrize("target", OFF_SITE)
def test_an_already_signed_in_visit_to_login_never_redirects_off_site(
    labeller: User, target: str
) -> None:
    client = Client()
    client.force_login(labeller)

    response = client.get("/login/", {"next": target})

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_signing_in_does_follow_a_path_on_this_site(labeller: User) -> None:
    labeller.set_password("pw")
    labeller.save()

    response = Client().post(
        "/login/", {"username": "lena", "password": "pw", "next": "/inbox/?page=2"}
    )

    assert response["Location"] == "/inbox/?page=2"


def test_forms_that_go_back_never_redirect_off_site(world: World) -> None:
    client = Client()
    client.force_login(world.reviewer)

    for target in OFF_SITE:
        restored = client.post(f"/images/{world.trashed.pk}/restore", {"next": target})
        pinned = client.post(
            "/label/standards/pin/",
            {"class": world.label_class.pk, "image": world.image.pk, "kind": "bad", "next": target},
        )
        for response in (restored, pinned):
            assert response.status_code == 302
            assert _is_on_site(response["Location"]), f"{target} -> {response['Location']}"


def test_forms_that_go_back_do_follow_a_path_on_this_site(world: World) -> None:
    client = Client()
    client.force_login(world.reviewer)

    response = client.post(f"/images/{world.trashed.pk}/restore", {"next": "/trash/?page=2"})

    assert response["Location"] == "/trash/?page=2"


# --- Hostile query strings on pages -----------------------------------------------------------

# Every name a page reads from its query string (and a few it might), each set to values that
# look like numbers to str.isdigit() but not to int(), or do not fit the database's integers.
PAGE_PARAMETERS = [
    *("after", "before", "end", "group", "item", "log", "method", "model", "ood_min", "opinion"),
    *("outcome", "page", "q", "quality", "queued", "set", "source", "start", "status"),
    *("subclass", "tab", "threshold", "verdict", "class", "min", "max", "k", "scope", "limit"),
    *("offset", "version", "queue", "day", "split", "sort", "v", "cls", "rare", "staged"),
]
ODD_VALUES = ["²", "99999999999999999999999", "1" * 5000, "-1", "1e999", "nan", "\x00", "<script>"]


def test_pages_answer_odd_query_strings_without_a_server_error(world: World) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(world.admin)
    problems = []
    for endpoint in endpoints():
        found = rule_for(endpoint.key)
        if endpoint.is_api or found is None or "GET" not in found.methods:
            continue
        if endpoint.route.startswith("admin/"):
            continue
        url = url_of(endpoint, found, world)
        for value in ODD_VALUES:
            response = client.get(url, {name: value for name in PAGE_PARAMETERS})
            if response.status_code >= 500:
                problems.append(f"{url} with every parameter {value!r}: {response.status_code}")

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("7", 7),
        ("0", 0),
        ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", None),
        ("²", None),
        ("١٢", None),
        ("1" * 5000, None),
        ("-1", None),
        (" 7", None),
        ("", None),
        (None, None),
    ],
)
def test_whole_numbers_are_read_only_from_ascii_digits_in_range(
    text: str | None, number: int | None
) -> None:
    assert whole_number(text) == number


FORM_FIELDS = [
    *("action", "activate", "back", "bad_reason", "choice", "class", "dataset", "description"),
    *("exemplar", "folds", "format", "image", "keeper", "kind", "letterbox", "log"),
    *("max_distance", "max_iter", "method", "min_similarity", "model", "name", "note", "notes"),
    *("ood_min", "op", "pairs", "reason", "replace", "scope", "shard_size", "source"),
    *("subclass", "subject", "target", "threshold", "to_class", "to_class_name", "v", "verdict"),
    *("version", "exploratory", "image_ids", "label_class", "limit", "max_per_class"),
    *("min_per_class", "ratios", "seed", "staged_cap", "C", "mean", "std", "input_size"),
]


def test_forms_answer_odd_values_without_a_server_error(world: World) -> None:
    problems = []
    for endpoint in endpoints():
        found = rule_for(endpoint.key)
        if endpoint.is_api or found is None or "POST" not in found.methods:
            continue
        if endpoint.route.startswith("admin/") or endpoint.key in ("login", "logout"):
            continue
        url = url_of(endpoint, found, world)
        for value in ODD_VALUES:
            with transaction.atomic():
                client = Client(raise_request_exception=False)
                client.force_login(world.admin)
                response = client.post(url, {name: value for name in FORM_FIELDS})
                transaction.set_rollback(True)
            if response.status_code >= 500:
                shown = value[:20]
                problems.append(f"POST {url} with every field {shown!r}: {response.status_code}")

    assert not problems, "\n".join(problems)


def test_bodies_refuse_ids_and_seeds_the_database_cannot_hold(admin_api: APIClient) -> None:
    too_big = 2**63
    benchmark = admin_api.post(
        "/api/v1/benchmark-sets/",
        {"name": "hard", "kind": "custom", "image_ids": [too_big]},
        format="json",
    )
    dataset = admin_api.post("/api/v1/datasets/", {"name": "d", "seed": 2**40}, format="json")
    action = admin_api.post(
        "/api/v1/labelling/actions/",
        {"queue": "inbox", "image": too_big, "action": "skip"},
        format="json",
    )

    assert benchmark.status_code == 400 and "image_ids" in benchmark.json()["detail"]
    assert dataset.status_code == 400 and "seed" in dataset.json()["detail"]
    assert action.status_code == 400 and "image" in action.json()["detail"]


@pytest.mark.parametrize("body", ["0", "false", "null", '"AAA"', "[null, null]", "[]"])
def test_json_bodies_that_are_not_objects_are_a_400(admin_api: APIClient, body: str) -> None:
    for url in (
        "/api/v1/images/",
        "/api/v1/prediction-logs/",
        "/api/v1/prediction-logs/batch/",
        "/api/v1/models/",
        "/api/v1/classes/",
    ):
        response = admin_api.post(url, body, content_type="application/json")

        assert response.status_code == 400, url
        assert "The JSON body must be an object" in response.json()["detail"]
