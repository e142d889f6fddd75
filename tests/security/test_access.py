"""Who may open what: every URL in the URL configuration, for anonymous, labeller, reviewer and
admin, checked against one explicit table of decisions.

The URL configuration is walked (router routes included), so an endpoint added without an entry
in ``ACCESS`` fails ``test_every_url_has_an_access_decision``; so does an API method (a new
``@action``, a new verb on a viewset) without its own decision, and so does a page that answers
GET or POST (anything but 405) without a decision for it. Each role below an entry's
minimum must be refused (401/403, or a redirect to the sign-in page); each role at or above it
must not be (a 404 or a 400 for an empty form is fine, a 403 or a 405 is not).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Role
from accounts.services import token_issue
from tests.security.world import World, build_world, signed_in

pytestmark = pytest.mark.django_db

ANYONE = "anyone"  # the sign-in and sign-out doors: no account needed
L, R, A = Role.LABELLER, Role.REVIEWER, Role.ADMIN
Minimum = Role | str


@dataclass(frozen=True)
class Rule:
    """The minimum role per HTTP method, and which of the world's rows fills ``<pk>``."""

    methods: dict[str, Minimum]
    ids: str = ""
    # Statuses besides success that an allowed role may get for the probe's bare request.
    also_allowed: frozenset[int] = frozenset()


def rule(ids: str = "", also_allowed: frozenset[int] = frozenset(), **methods: Minimum) -> Rule:
    return Rule(methods=methods, ids=ids, also_allowed=also_allowed)


# One line per URL name (or, for the admin's unnamed routes, route pattern): the decision.
ACCESS: dict[str, Rule] = {
    # --- The anonymous exceptions: signing in and out ----------------------------------------
    "login": rule(GET=ANYONE, POST=ANYONE),
    "logout": rule(POST=ANYONE),
    "admin-login": rule(GET=ANYONE, POST=ANYONE),  # redirects to /login/, the rate-limited form
    "admin:login": rule(GET=ANYONE, POST=ANYONE),  # shadowed by admin-login
    "admin:logout": rule(POST=ANYONE),
    "api:token-login": rule(POST=ANYONE),
    # --- Library pages ------------------------------------------------------------------------
    "curation:library": rule(GET=L),
    "curation:getting-started": rule(POST=L),
    "curation:class-new": rule(POST=R),
    "curation:class": rule("label_class", GET=L),
    "curation:subclass-new": rule("label_class", POST=R),
    "curation:subclass-move": rule("subclass", POST=R),
    "curation:inbox": rule(GET=L),
    "curation:trash": rule(GET=L),
    "curation:image": rule("image", GET=L),
    "curation:image-file": rule("image", GET=L),
    "curation:image-display": rule("image", GET=L),
    "curation:image-thumbnail": rule("image", GET=L),
    "curation:image-relabel": rule("image", POST=L),
    "curation:image-trash": rule("image", POST=R),
    "curation:image-restore": rule("trashed", POST=R),
    # Bulk actions on images picked in a grid: as one by one (labellers label, reviewers
    # trash, restore and build benchmark sets).
    "curation:grid-label": rule(POST=L),
    "curation:grid-trash": rule(POST=R),
    "curation:grid-restore": rule(POST=R),
    "curation:grid-benchmark": rule(POST=R),
    "curation:import": rule(GET=L),
    "curation:import-batch": rule("batch", GET=L),
    "curation:jobs": rule(GET=L),
    "curation:embeddings-compute": rule(POST=R),
    "accounts:tokens": rule(GET=L, POST=L),
    # --- Labelling ----------------------------------------------------------------------------
    "labelling:queues": rule(GET=L),
    "labelling:label": rule(GET=L),
    "labelling:stats": rule(GET=L),
    "labelling:standards": rule("label_class", GET=L, POST=R),
    "labelling:standards-panel": rule("label_class", GET=L),
    "labelling:exemplar-pin": rule(POST=R),
    "labelling:picked-queue": rule(POST=L),
    "labelling:second-opinions": rule(GET=R),
    "labelling:second-opinion-settle": rule("opinion", POST=R),
    "labelling:agreement": rule(GET=R),
    # --- Models, identification, evaluations, Double-check ------------------------------------
    "inference:models": rule(GET=L),
    "inference:model-upload": rule(POST=R),
    "inference:model-activate": rule(POST=R),
    "inference:model-edit": rule(POST=R),
    "inference:model-create-classes": rule(POST=R),
    "inference:model-unmatched": rule(GET=L),
    "inference:identify": rule(GET=L),
    "inference:identify-run": rule(POST=R),
    "inference:identify-label": rule(POST=R),
    "inference:identify-trash": rule(POST=R),
    "inference:identify-queue": rule(POST=L),
    "inference:evaluations": rule(GET=R, POST=R),  # POST starts a run
    # These pages answer a POST like a GET.
    "inference:evaluation": rule("evaluation", GET=R, POST=R),
    "inference:evaluation-pairs": rule("evaluation", POST=R),
    "inference:evaluation-compare": rule("evaluation", GET=R, POST=R),
    "inference:double-check": rule("evaluation", GET=R, POST=R),
    "inference:double-check-add": rule("evaluation", POST=R),
    "inference:double-check-action": rule("evaluation", POST=R),
    "inference:trainer": rule(GET=R, POST=R),
    "inference:label-errors-start": rule(POST=R),
    # --- Duplicates, datasets, benchmark sets, quality ----------------------------------------
    "duplicates:review": rule(GET=R),
    "duplicates:scan": rule(POST=R),
    "duplicates:resolve": rule("duplicate", POST=R),
    "duplicates:dismiss": rule("duplicate", POST=R),
    "datasets:list": rule(GET=L),
    "datasets:build": rule(POST=R),
    "datasets:detail": rule("dataset", GET=L),
    "datasets:export": rule("dataset", POST=R),
    "datasets:export-file": rule("dataset", GET=R),
    "datasets:export-archive": rule("dataset", GET=R),
    "datasets:benchmarks": rule(GET=L),
    "datasets:benchmark-create": rule(POST=R),
    "datasets:benchmark": rule("benchmark", GET=L),
    "quality:page": rule(GET=L),
    "quality:recompute": rule(POST=R),
    "quality:thresholds": rule(POST=R),
    "quality:label": rule(POST=L),
    # --- Production ---------------------------------------------------------------------------
    "production:dashboard": rule(GET=R, POST=R),  # answers a POST like a GET
    "production:review": rule(GET=R, POST=R),
    # --- Django admin: user management --------------------------------------------------------
    "admin:*": rule(GET=A, POST=A),
    # The autocomplete answers 403 to a request that names no admin field to complete; roles
    # below admin are sent to the sign-in page before it looks.
    "admin:autocomplete": rule(GET=A, also_allowed=frozenset({403})),
    "admin:password_change_done": rule(GET=A),
    "admin:jsi18n": rule(GET=A),
    "admin/*": rule(GET=A, POST=A),  # the admin's unnamed routes (object redirects, catch-all)
    # --- REST API -----------------------------------------------------------------------------
    "api:api-root": rule(GET=L),
    "schema": rule(GET=L),
    "api-docs": rule(GET=L),
    "api:image-list": rule(GET=L, POST=L),
    "api:image-detail": rule("image", GET=L, PATCH=L, DELETE=R),
    "api:image-file": rule("image", GET=L),
    "api:image-display": rule("image", GET=L),
    "api:image-history": rule("image", GET=L),
    "api:image-thumbnail": rule("image", GET=L),
    "api:image-restore": rule("trashed", POST=R),
    "api:image-similar": rule("image", GET=L),
    "api:image-embeddings": rule(POST=R),
    "api:import-list": rule(GET=L, POST=L),
    "api:import-detail": rule("batch", GET=L),
    "api:import-items": rule("batch", GET=L),
    "api:class-list": rule(GET=L, POST=R),
    "api:class-detail": rule("label_class", GET=L, PUT=R, PATCH=R, DELETE=R),
    "api:subclass-list": rule(GET=L, POST=R),
    "api:subclass-detail": rule("subclass", GET=L, PUT=R, PATCH=R, DELETE=R),
    "api:job-list": rule(GET=L),
    "api:job-detail": rule("job", GET=L),
    "api:duplicate-list": rule(GET=L),
    "api:duplicate-detail": rule("duplicate", GET=L),
    "api:duplicate-scan": rule(POST=R),
    "api:duplicate-resolve": rule("duplicate", POST=R),
    "api:duplicate-dismiss": rule("duplicate", POST=R),
    "api:dataset-list": rule(GET=L, POST=R),
    "api:dataset-detail": rule("dataset", GET=L),
    "api:dataset-export": rule("dataset", POST=R),
    "api:dataset-exports": rule(GET=R),
    "api:dataset-export-detail": rule("job", GET=R),
    "api:dataset-export-file": rule("job", GET=R),
    "api:dataset-export-archive": rule("job", GET=R),
    "api:benchmark-set-list": rule(GET=L, POST=R),
    "api:benchmark-set-detail": rule("benchmark", GET=L),
    "api:benchmark-set-members": rule("benchmark", GET=L),
    "api:token-list": rule(GET=L, POST=L),
    "api:token-detail": rule(DELETE=L),
    "api:token-logout": rule(POST=L),
    "api:token-logout-all": rule(POST=L),
    "api:model-version-list": rule(GET=L, POST=R),
    "api:model-version-detail": rule("model", GET=L, PATCH=R),
    "api:model-version-activate": rule("model", POST=R),
    "api:model-version-create-classes": rule("model", POST=R),
    "api:predict-list": rule(POST=L),
    "api:identification-list": rule(POST=R),
    "api:evaluation-list": rule(GET=R, POST=R),
    "api:evaluation-detail": rule("evaluation", GET=R),
    "api:evaluation-confused-pairs": rule("evaluation", PUT=R),
    "api:evaluation-double-check": rule("evaluation", GET=R),
    "api:evaluation-double-check-answer": rule("evaluation", POST=R),
    "api:training-list": rule(GET=R, POST=R),
    "api:training-detail": rule(GET=R),  # no training in the world: 404 for allowed roles
    "api:label-error-ranking-list": rule(POST=R),
    # Serving systems (labeller tokens) write logs; reading them is the dashboard's role.
    "api:prediction-log-list": rule(GET=R, POST=L),
    "api:prediction-log-batch": rule(POST=L),
    "api:prediction-log-detail": rule("prediction_log", GET=R),
    "api:labelling-queue": rule(GET=L),
    "api:labelling-action": rule(POST=L),
    "api:labelling-undo": rule(POST=L),
    "api:second-opinions": rule(GET=R),
    "api:second-opinion-settle": rule("opinion", POST=R),
    "api:labelling-agreement": rule(GET=R),
}

ROLES: list[Role | None] = [None, L, R, A]
_RANK = {None: 0, ANYONE: 0, L: 1, R: 2, A: 3}
LOGIN_PATHS = {"/login/", "/admin/login/"}


# --- Walking the URL configuration ------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    key: str  # the URL name with its namespaces, or the route for an unnamed pattern
    route: str
    callback: Any = field(compare=False)

    @property
    def section(self) -> str:
        return self.key.split(":", 1)[0] if ":" in self.key else self.key.split("/", 1)[0]

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")

    def api_methods(self) -> set[str] | None:
        """The HTTP methods a DRF view answers (its router actions, or its handlers)."""
        actions = getattr(self.callback, "actions", None)
        if actions:
            # DRF adds "head" to a route's actions the first time it answers a GET: HEAD
            # follows GET and is not a decision of its own.
            return {method.upper() for method in actions if method not in ("options", "head")}
        view_class = getattr(self.callback, "cls", None) or getattr(
            self.callback, "view_class", None
        )
        if view_class is None or not hasattr(view_class, "http_method_names"):
            return None
        return {
            method.upper()
            for method in view_class.http_method_names
            if method not in ("options", "head") and hasattr(view_class, method)
        }


def _walk(resolver: URLResolver, prefix: str, namespaces: tuple[str, ...]) -> Iterator[Endpoint]:
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = namespaces + ((pattern.namespace,) if pattern.namespace else ())
            yield from _walk(pattern, route, inner)
        elif isinstance(pattern, URLPattern):
            if "<drf_format_suffix:" in route or "(?P<format>" in route:
                continue  # the same view as its route without the suffix
            key = ":".join((*namespaces, pattern.name)) if pattern.name else route
            yield Endpoint(key=key, route=route, callback=pattern.callback)


def endpoints() -> list[Endpoint]:
    return list(_walk(get_resolver(), "", ()))


def rule_for(key: str) -> Rule | None:
    if key in ACCESS:
        return ACCESS[key]
    for pattern, found in ACCESS.items():
        if "*" in pattern and fnmatchcase(key, pattern):
            return found
    return None


# --- Filling URLs -----------------------------------------------------------------------------

_PARAM = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")


def url_value(param: str, found: Rule, world: World) -> str:
    if param == "pk":
        return str(getattr(world, found.ids).pk) if found.ids else "1"
    values: dict[str, Any] = {
        "number": world.model.number,
        "other": world.other_evaluation.pk,
        "item_id": world.double_check.pk,
        "rank": world.double_check.rank,
        "spec": f"class:{world.label_class.pk}",
        "flag": "too_dark",
        "path": "happy",
        "token_key": world.token_key,
        "id": world.admin.pk,
        "object_id": world.admin.pk,
        "content_type_id": 1,
        "app_label": "accounts",
        "url": "no-such-admin-page/",
        "version_pk": world.dataset.pk,
        "export_id": world.job.pk,
        "name": "manifest.csv",
    }
    return str(values[param])


def url_of(endpoint: Endpoint, found: Rule, world: World) -> str:
    def fill(match: re.Match[str]) -> str:
        return url_value(match.group(1) or match.group(2), found, world)

    path = _PARAM.sub(fill, endpoint.route)
    return "/" + path.replace("^", "").replace("$", "").replace("\\.", ".")


def request(client: Any, method: str, url: str, *, api: bool) -> HttpResponse:
    if method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return getattr(client, method.lower())(url)
    if api:
        return getattr(client, method.lower())(url, "{}", content_type="application/json")
    return getattr(client, method.lower())(url, {})


def refused(response: HttpResponse) -> bool:
    if response.status_code in (401, 403):
        return True
    if response.status_code == 302:
        return urlsplit(response["Location"]).path in LOGIN_PATHS
    return False


def _describe(response: HttpResponse) -> str:
    where = f" to {response['Location']}" if response.status_code in (301, 302) else ""
    return f"{response.status_code}{where}"


def _client(world: World, role: Role | None, *, api: bool) -> Client:
    """A browser session for pages; for the API, what machines use: a token."""
    user = world.user(role)
    if api and user is not None:
        _, token = token_issue(user=user)
        return Client(HTTP_AUTHORIZATION=f"Token {token}")
    return signed_in(user)


def check_endpoint(endpoint: Endpoint, found: Rule, world: World) -> list[str]:
    """Every role against every method of one endpoint, each inside a savepoint rolled back
    afterwards, so what an allowed role changes never hides what the next URL needs."""
    problems: list[str] = []
    url = url_of(endpoint, found, world)
    methods = found.methods
    for method in ("GET", "POST"):
        # A page answers only what its decorators allow; anything else it answers needs a
        # decision too (a GET page that also acts on POST would otherwise go unchecked).
        if endpoint.is_api or method in methods:
            continue
        with transaction.atomic():
            response = request(signed_in(world.admin), method, url, api=False)
            transaction.set_rollback(True)
        if response.status_code != 405:
            problems.append(
                f"{endpoint.key}: {method} {url} answers {_describe(response)}, "
                f"but the table has no {method} decision"
            )
    for method, minimum in methods.items():
        for role in ROLES:
            with transaction.atomic():
                client = _client(world, role, api=endpoint.is_api)
                response = request(client, method, url, api=endpoint.is_api)
                transaction.set_rollback(True)
            who = role.value if role else "anonymous"
            allowed = minimum == ANYONE or _RANK[role] >= _RANK[minimum]
            if response.status_code == 405:
                if allowed:
                    problems.append(f"{endpoint.key}: {method} {url} is 405 for {who}")
            elif (
                allowed
                and response.status_code not in found.also_allowed
                and (
                    response.status_code in (401, 403) or (minimum != ANYONE and refused(response))
                )
            ):
                problems.append(
                    f"{endpoint.key}: {method} {url} refused {who} ({_describe(response)}), "
                    f"minimum is {minimum}"
                )
            elif not allowed and not refused(response):
                problems.append(
                    f"{endpoint.key}: {method} {url} let {who} through "
                    f"({_describe(response)}), minimum is {minimum}"
                )
    return problems


# --- The tests --------------------------------------------------------------------------------


def test_every_url_has_an_access_decision() -> None:
    missing = sorted({e.key for e in endpoints() if rule_for(e.key) is None})

    assert not missing, (
        "These URLs have no entry in tests/security/test_access.py ACCESS; decide who may use "
        "them and add one: " + ", ".join(missing)
    )


def test_every_api_method_has_its_own_decision() -> None:
    problems = []
    for endpoint in endpoints():
        found = rule_for(endpoint.key)
        answered = endpoint.api_methods() if endpoint.is_api else None
        if found is None or answered is None:
            continue
        decided = set(found.methods)
        if answered - decided:
            problems.append(f"{endpoint.key}: no decision for {sorted(answered - decided)}")
        if decided - answered:
            problems.append(f"{endpoint.key}: decided {sorted(decided - answered)}, not answered")

    assert not problems, "\n".join(problems)


def test_every_table_entry_names_a_url() -> None:
    keys = {e.key for e in endpoints()}
    stale = [
        name
        for name in ACCESS
        if not any(fnmatchcase(key, name) if "*" in name else key == name for key in keys)
    ]

    assert not stale, f"ACCESS entries for URLs that no longer exist: {stale}"


def _sections() -> list[str]:
    return sorted({e.section for e in endpoints()})


@pytest.mark.parametrize("section", _sections())
def test_each_role_reaches_exactly_what_the_table_allows(section: str) -> None:
    world = build_world()
    problems: list[str] = []
    for endpoint in endpoints():
        found = rule_for(endpoint.key)
        if endpoint.section != section or found is None:
            continue
        problems += check_endpoint(endpoint, found, world)

    assert not problems, "\n".join(problems)


def test_the_check_itself_catches_a_page_open_to_the_wrong_role() -> None:
    """A table that said labellers may review duplicates would fail: the check can fail."""
    world = build_world()
    endpoint = next(e for e in endpoints() if e.key == "duplicates:review")

    problems = check_endpoint(endpoint, rule(GET=L), world)
    assert problems and "refused labeller" in problems[0]

    problems = check_endpoint(endpoint, rule(GET=A), world)
    assert problems and "let reviewer through" in problems[0]
