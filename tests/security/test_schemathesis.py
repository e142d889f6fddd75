"""Property-based requests generated from the OpenAPI schema (``/api/schema/``), sent through
the WSGI application (no server) as an admin with a token: no operation may answer with a 5xx,
whatever the generated path ids, query strings and bodies, valid ones (positive data) and
ones that break the schema on purpose (negative data).

Each operation gets ``EXAMPLES`` generated requests per kind (valid, invalid, and valid for
the library's own rows) plus its first ``BOUNDARY_CASES`` coverage cases (values at the edges
of the schema, bodies of the wrong JSON type), so the run stays near two minutes; Hypothesis
shrinks a failure to a small request, printed in the failure message. A longer exploratory
run (``EXAMPLES = 30``) takes about 20 minutes on two cores.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.urls import resolve
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from accounts.services import token_issue
from tests.security.test_access import rule_for, url_value
from tests.security.world import World, build_world

pytestmark = pytest.mark.django_db

EXAMPLES = 4
BOUNDARY_CASES = 15

# Operations left out, each for a reason that is about the test, not the API.
EXCLUDED: dict[str, str] = {}


def real_ids(operation: Any, world: World) -> dict[str, Any] | None:
    """Path parameters naming the world's own rows (the row the access table names for that
    URL), so generated bodies and queries also reach past the 404 of a random id."""
    names = re.findall(r"{(\w+)}", operation.path)
    if not names:
        return None
    match = resolve(re.sub(r"{\w+}", "1", operation.path))
    found = rule_for(":".join([*match.namespaces, match.url_name]))
    if found is None:
        return None
    values = {}
    for name in names:
        param = "pk" if name == "id" else name
        values[name] = url_value(param, found, world)
    return values


def _generated(operation: Any, world: World) -> Iterator[tuple[str, Any]]:
    yield "positive data", operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    yield "negative data", operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    ids = real_ids(operation, world)
    if ids:
        yield f"positive data for {ids}", operation.as_strategy(path_parameters=ids)


def _server_errors(world: World, app: Any) -> tuple[list[str], int]:
    _, schema_token = token_issue(user=world.admin)
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", app, headers={"Authorization": f"Token {schema_token}"}
    )
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in EXCLUDED:
            continue
        for description, strategy in _generated(operation, world):

            @given(case=strategy)
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                nonlocal calls
                # A fresh token per request: generated calls may revoke the one they carry.
                _, token = token_issue(user=world.admin)
                response = case.call(headers={"Authorization": f"Token {token}"})
                calls += 1
                assert response.status_code < 500, (
                    f"{response.status_code} for {case.as_curl_command()}\n{response.text[:500]}"
                )

            try:
                run()
            except Unsatisfiable:
                continue  # nothing to break on purpose: no parameters and no body
            except AssertionError as failure:
                failures.append(f"{operation.label} ({description}): {failure}")
        calls += _boundary_cases(schema, operation, world, failures)
    return failures, calls


def _boundary_cases(schema: Any, operation: Any, world: World, failures: list[str]) -> int:
    """Schemathesis' coverage cases: each parameter at the edges the schema allows (the largest
    integers, empty and longest strings, missing required fields), one request each."""
    calls = 0
    cases = schema.iter_coverage_cases(
        operation,
        generation_modes=list(GenerationMode),
        generation_config=schema.config.generation_for(operation=operation),
    )
    for case in itertools.islice(cases, BOUNDARY_CASES):
        _, token = token_issue(user=world.admin)
        response = case.call(headers={"Authorization": f"Token {token}"})
        calls += 1
        if response.status_code >= 500:
            failures.append(
                f"{operation.label} (boundary values): {response.status_code} for "
                f"{case.as_curl_command()}\n{response.text[:500]}"
            )
    return calls


@pytest.fixture
def wsgi_app() -> Iterator[Any]:
    """The WSGI application, minus the per-request connection closing that would end the test's
    transaction (Django's own test client disconnects it the same way)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_no_generated_request_gets_a_server_error(wsgi_app: Any) -> None:
    world = build_world()

    failures, calls = _server_errors(world, wsgi_app)

    assert calls > 300  # every operation was reached, most of them several times
    assert not failures, "\n\n".join(failures)
