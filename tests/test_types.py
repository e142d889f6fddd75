"""Loupe type-checks clean: mypy with the django-stubs and DRF plugins over the packages that
``[tool.mypy] files`` names, as ``make lint`` runs it, so the test command CI runs enforces it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A cache per checkout under the system temp dir: reruns take seconds instead of half a minute,
# and two checkouts on one machine do not keep invalidating each other's cache.
CACHE_DIR = (
    Path(tempfile.gettempdir())
    / f"loupe-mypy-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}"
)


def test_mypy_finds_no_type_errors() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    # The plugin imports the settings; with a key given they do not write one under var/.
    env["LOUPE_SECRET_KEY"] = "mypy-only"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(CACHE_DIR)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 0, (
        f"mypy found {len(errors)} errors:\n" + "\n".join(errors)
        if errors
        else f"mypy failed:\n{result.stdout}{result.stderr}"
    )
