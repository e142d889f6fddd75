"""Property-based requests generated from the OpenAPI schema (``/api/schema/``), sent through
the WSGI application (no server) as an admin with a token: no operation may answer with a 5xx,
whatever the generated path ids, query strings and bodies, valid ones (positive data) and
ones that break the schema on purpose (negative data).

Examples per operation are few (``EXAMPLES``) so the run stays around a minute; Hypothesis
shrinks a failure to a small request, printed in the failure message.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from accounts.services import token_issue
from tests.security.world import World, build_world

pytestmark = pytest.mark.django_db

EXAMPLES = 6

# Operations left out, each for a reason that is about the test, not the API.
EXCLUDED: dict[str, str] = {}


def _server_errors(world: World, app: Any) -> list[str]:
    _, schema_token = token_issue(user=world.admin)
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", app, headers={"Authorization": f"Token {schema_token}"}
    )
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, GenerationMode):
        if operation.label in EXCLUDED:
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            # A fresh token per request: generated calls may revoke the one they carry.
            _, token = token_issue(user=world.admin)
            response = case.call(headers={"Authorization": f"Token {token}"})
            assert response.status_code < 500, (
                f"{response.status_code} for {case.as_curl_command()}\n{response.text[:500]}"
            )

        try:
            run()
        except Unsatisfiable:
            continue  # nothing to break on purpose: no parameters and no body
        except AssertionError as failure:
            failures.append(f"{operation.label} ({mode.value} data): {failure}")
    return failures


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

    failures = _server_errors(world, wsgi_app)

    assert not failures, "\n\n".join(failures)
