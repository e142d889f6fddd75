"""Where ``manage.py serve`` (``make run``) listens: ``LOUPE_HOST`` and ``LOUPE_PORT``, read
through the settings, unless ``--host`` and ``--port`` say otherwise."""

from __future__ import annotations

from typing import Any

from curation.management.commands.serve import Command


def _options(*argv: str) -> dict[str, Any]:
    parser = Command().create_parser("manage.py", "serve")
    return vars(parser.parse_args(list(argv)))


def test_it_listens_where_the_settings_say(settings: Any) -> None:
    settings.LOUPE_HOST = "192.0.2.10"
    settings.LOUPE_PORT = 9123

    options = _options()

    assert (options["host"], options["port"]) == ("192.0.2.10", 9123)


def test_the_options_override_the_settings(settings: Any) -> None:
    settings.LOUPE_HOST = "192.0.2.10"
    settings.LOUPE_PORT = 9123

    options = _options("--host", "127.0.0.2", "--port", "8080")

    assert (options["host"], options["port"]) == ("127.0.0.2", 8080)
