from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Role, User
from curation.models import Image, ImportKind, SubClass
from curation.services.images import file_inspect, image_import, import_batch_create
from tests.factories import UserFactory, image_bytes


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    """Every test stores files in its own temporary folder."""
    root = tmp_path / "media"
    settings.MEDIA_ROOT = root
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "curation.storage.AtomicFileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    return root


@pytest.fixture
def labeller(db: None) -> User:
    return UserFactory(username="lena", role=Role.LABELLER)


@pytest.fixture
def reviewer(db: None) -> User:
    return UserFactory(username="rui", role=Role.REVIEWER)


@pytest.fixture
def admin_user(db: None) -> User:
    return UserFactory(username="ada", role=Role.ADMIN, is_staff=True, is_superuser=True)


def _client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def api(labeller: User) -> APIClient:
    return _client_for(labeller)


@pytest.fixture
def reviewer_api(reviewer: User) -> APIClient:
    return _client_for(reviewer)


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()


@pytest.fixture
def make_image(db: None) -> Callable[..., Image]:
    """Store a real image through the import service; returns the Image row."""
    counter = iter(range(10_000_000))

    def make(subclass: SubClass | None = None, *, seed: int | None = None, **kwargs: Any) -> Image:
        data = image_bytes(seed=next(counter) if seed is None else seed, **kwargs)
        batch = import_batch_create(kind=ImportKind.UPLOAD, name="test", actor=None)
        result = image_import(
            inspection=file_inspect(data=data, name="test.jpg"),
            content=io.BytesIO(data),
            subclass=subclass,
            actor=None,
            batch=batch,
        )
        assert result.image is not None, result.reason
        return result.image

    return make
