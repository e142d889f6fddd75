"""Where ``manage.py serve`` (``make run``) listens: ``LOUPE_HOST`` and ``LOUPE_PORT``, read
through the settings, unless ``--host`` and ``--port`` say otherwise; and the banner it ends
start-up with: the address and, while it works, the generated admin password."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from accounts.models import User
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


# --- The start-up banner ----------------------------------------------------------------------


class FakeProcess:
    """Stands in for the web server and the worker: runs for a few polls, then exits."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.polls = 0
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.polls += 1
        if self.polls > 3:
            self.returncode = 0
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.returncode = -signum

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode or 0

    def kill(self) -> None:
        self.returncode = -9


@pytest.fixture
def fake_servers(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> None:
    """``serve`` with the web server and worker faked (answering at once) and a fresh data
    folder."""
    import curation.management.commands.serve as serve

    settings.DATA_DIR = tmp_path / "data"
    settings.STATIC_ROOT = tmp_path / "static"
    monkeypatch.setattr(serve.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(serve, "_answering", lambda host, port: True)
    monkeypatch.setattr(serve.signal, "signal", lambda signum, handler: None)


def serve_output(*argv: str) -> list[str]:
    out = io.StringIO()
    call_command("serve", "--no-demo", *argv, stdout=out)
    return [line for line in out.getvalue().splitlines() if line.strip()]


@pytest.mark.django_db
def test_start_up_ends_with_the_address_and_the_generated_admin_password(
    fake_servers: None, settings: Any
) -> None:
    settings.LOUPE_ADMIN_USER, settings.LOUPE_ADMIN_PASSWORD = "admin", ""

    lines = serve_output("--port", "8123")

    password = (settings.DATA_DIR / "initial_admin_password").read_text().strip()
    assert User.objects.get(username="admin").check_password(password)
    banner = lines[-3:-1]  # between two rules, after everything else
    assert banner[0].startswith("Loupe is running at http://127.0.0.1:8123/")
    assert f"Sign in as 'admin' with the password {password!r}" in banner[1]
    assert set(lines[-1]) == {"="}


@pytest.mark.django_db
def test_the_banner_keeps_the_password_until_it_is_changed(
    fake_servers: None, settings: Any
) -> None:
    settings.LOUPE_ADMIN_USER, settings.LOUPE_ADMIN_PASSWORD = "admin", ""
    first = serve_output()
    password = (settings.DATA_DIR / "initial_admin_password").read_text().strip()
    assert password in first[-2]

    again = serve_output()  # a second start: the admin exists, the password still works
    assert password in again[-2]

    admin = User.objects.get(username="admin")
    admin.set_password("a new passphrase of birds")
    admin.save()
    changed = serve_output()
    assert not any(password in line for line in changed)
    assert changed[-2].startswith("Loupe is running at")


@pytest.mark.django_db
def test_a_chosen_password_is_not_repeated(fake_servers: None, settings: Any) -> None:
    settings.LOUPE_ADMIN_USER, settings.LOUPE_ADMIN_PASSWORD = "curator", "a long passphrase"

    lines = serve_output()

    assert not any("a long passphrase" in line for line in lines[-4:])
    assert "Sign in as 'curator' with the password set in LOUPE_ADMIN_PASSWORD." in lines[-2]
