"""Shared fixtures of the security battery: the checks that a refused upload left nothing
behind (no row, no stored file, no spilled temporary file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from curation.models import Image, ImportItem
from inference.models import ModelVersion


@pytest.fixture
def upload_spill_dir(settings: Any, tmp_path: Path) -> Path:
    """Uploads over 1 kB spill to temporary files in this folder instead of memory, so a test
    sees whether a refused request leaves any of them behind."""
    folder = tmp_path / "upload-spill"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    return folder


def stored_files(root: Path) -> list[str]:
    """Every file under ``root`` (hidden temporary files included), relative, sorted."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())


@pytest.fixture
def nothing_stored(media_root: Path, upload_spill_dir: Path) -> Callable[[], None]:
    """Call after a refused request: no image, model or import row, no file under MEDIA_ROOT
    and no spilled upload left in the temporary folder."""

    def check() -> None:
        assert not Image.objects.exists()
        assert not ImportItem.objects.filter(image__isnull=False).exists()
        assert not ModelVersion.objects.exists()
        assert stored_files(media_root) == []
        assert stored_files(upload_spill_dir) == []

    return check
