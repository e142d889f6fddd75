"""``ensure_admin`` creates the first admin from the settings ``LOUPE_ADMIN_USER`` and
``LOUPE_ADMIN_PASSWORD`` (read from the environment in ``config/settings``, nowhere else)."""

from __future__ import annotations

import io
import stat
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from accounts.models import Role, User

pytestmark = pytest.mark.django_db

PASSPHRASE = "a long passphrase of birds"


@pytest.fixture
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path / "data"
    return settings.DATA_DIR


def ensure_admin(settings: Any, *args: str, user: str, password: str) -> None:
    settings.LOUPE_ADMIN_USER = user
    settings.LOUPE_ADMIN_PASSWORD = password
    call_command("ensure_admin", *args, stdout=io.StringIO())


def test_it_creates_the_admin_named_and_with_the_password_in_the_settings(
    settings: Any, data_dir: Path
) -> None:
    ensure_admin(settings, user="head-curator", password=PASSPHRASE)

    admin = User.objects.get(username="head-curator")
    assert admin.role == Role.ADMIN and admin.is_superuser
    assert admin.check_password(PASSPHRASE)
    assert not (data_dir / "initial_admin_password").exists()  # chosen, so not written down


def test_without_a_password_it_generates_one_and_keeps_it_for_the_owner_only(
    settings: Any, data_dir: Path
) -> None:
    ensure_admin(settings, user="admin", password="")

    kept = data_dir / "initial_admin_password"
    password = kept.read_text().strip()
    assert User.objects.get(username="admin").check_password(password)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_the_username_option_overrides_the_setting(settings: Any, data_dir: Path) -> None:
    ensure_admin(settings, "--username", "ada", user="head-curator", password=PASSPHRASE)

    assert list(User.objects.values_list("username", flat=True)) == ["ada"]


def test_it_creates_no_second_admin(settings: Any, data_dir: Path, admin_user: User) -> None:
    ensure_admin(settings, user="head-curator", password=PASSPHRASE)

    assert not User.objects.filter(username="head-curator").exists()
