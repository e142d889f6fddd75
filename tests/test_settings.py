"""Loupe's environment is read in one place, ``config/settings`` (through ``config/env.py``);
everything else reads ``django.conf.settings``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ("accounts", "config", "curation", "inference", "labelling")
READS_ENV = re.compile(r"(os\.environ|os\.getenv|getenv\()[^\n]*LOUPE_")
SHOWN = ("LOUPE_HOST", "LOUPE_PORT", "LOUPE_ADMIN_USER", "LOUPE_ADMIN_PASSWORD")


def settings_in_a_fresh_process(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py shell`` printing the settings below as JSON, on its last line of output,
    with only ``env`` of Loupe's environment."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LOUPE_", "DJANGO_")) and key not in ("DATABASE_URL", "REDIS_URL")
    }
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {SHOWN!r}}}))"
    )
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**clean, "LOUPE_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _shown(result: subprocess.CompletedProcess[str]) -> object:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_only_the_settings_read_loupe_environment_variables() -> None:
    readers = [
        f"{path.relative_to(ROOT)}:{number}"
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if path.relative_to(ROOT).parts[:2] != ("config", "settings")
        and path.relative_to(ROOT).as_posix() != "config/env.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if READS_ENV.search(line)
    ]

    assert not readers, f"read LOUPE_* through django.conf.settings instead: {readers}"


def test_the_server_and_first_admin_settings_come_from_the_environment(tmp_path: Path) -> None:
    chosen = {
        "LOUPE_HOST": "192.0.2.10",
        "LOUPE_PORT": "9123",
        "LOUPE_ADMIN_USER": "head-curator",
        "LOUPE_ADMIN_PASSWORD": "a long passphrase of birds",
    }
    with_chosen = settings_in_a_fresh_process(tmp_path, **chosen)
    without = settings_in_a_fresh_process(tmp_path)

    assert with_chosen.returncode == 0, with_chosen.stderr
    assert _shown(with_chosen) == {**chosen, "LOUPE_PORT": 9123}
    assert without.returncode == 0, without.stderr
    assert _shown(without) == {
        "LOUPE_HOST": "127.0.0.1",
        "LOUPE_PORT": 8000,
        "LOUPE_ADMIN_USER": "admin",
        "LOUPE_ADMIN_PASSWORD": "",
    }


def test_a_port_that_is_not_a_number_is_refused_by_name(tmp_path: Path) -> None:
    result = settings_in_a_fresh_process(tmp_path, LOUPE_PORT="eighty")

    assert result.returncode != 0
    assert "LOUPE_PORT must be an integer, not 'eighty'" in result.stderr


def test_every_variable_the_settings_read_is_in_the_readme() -> None:
    read = set()
    for path in (ROOT / "config" / "settings").glob("*.py"):
        read |= set(
            re.findall(r"""env_\w+\(\s*["']((?:LOUPE|DATABASE|REDIS)_\w+)""", path.read_text())
        )
    assert {"LOUPE_DATA_DIR", "DATABASE_URL"} <= read
    readme = (ROOT / "README.md").read_text()
    assert sorted(name for name in read if f"`{name}`" not in readme) == []
