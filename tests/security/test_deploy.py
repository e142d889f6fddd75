"""``manage.py check --deploy`` under the production settings the README documents, run in a
fresh process with only that environment (the test settings never leak into it)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def check_deploy(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LOUPE_", "DJANGO_")) and key not in ("DATABASE_URL", "REDIS_URL")
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**clean, "LOUPE_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def production(**overrides: str) -> dict[str, str]:
    return {
        "LOUPE_HTTPS": "true",
        "LOUPE_SECRET_KEY": secrets.token_urlsafe(50),
        "LOUPE_ALLOWED_HOSTS": "loupe.example.com",
        "LOUPE_DEBUG": "false",
        **overrides,
    }


def test_the_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    result = check_deploy(tmp_path, **production())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_embedded_default_served_over_http_is_what_check_deploy_complains_about(
    tmp_path: Path,
) -> None:
    """Without LOUPE_HTTPS the cookies are not secure and there is no HSTS: the check says so,
    so the passing test above is not passing by accident."""
    result = check_deploy(tmp_path, **production(LOUPE_HTTPS="false"))

    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr


def test_debug_or_a_weak_secret_key_fails_check_deploy(tmp_path: Path) -> None:
    result = check_deploy(tmp_path, **production(LOUPE_DEBUG="true", LOUPE_SECRET_KEY="short"))

    assert result.returncode != 0
    assert "security.W018" in result.stderr  # DEBUG
    assert "security.W009" in result.stderr  # the secret key
