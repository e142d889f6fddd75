"""A request whose database connection fails half-way answers 503 with Retry-After, leaves no
partial rows, and the orphan sweeper removes the file it stored before the failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.db.models import QuerySet
from django.test import Client
from rest_framework.test import APIClient

from curation.models import Image, ImportBatch, ImportItem, LabelEvent
from curation.services import imports
from curation.services.processing import orphans_sweep
from tests.factories import LabelClassFactory, image_bytes
from tests.reliability.conftest import TcpProxy, on_postgresql


def stored_originals(media_root: Path) -> list[Path]:
    return sorted(p for p in (media_root / "originals").rglob("*") if p.is_file())


def assert_nothing_recorded() -> None:
    assert Image.objects.count() == 0
    assert ImportItem.objects.count() == 0
    assert LabelEvent.objects.count() == 0
    # A new upload batch commits with its files' rows or not at all: no empty batch is listed.
    assert ImportBatch.objects.count() == 0


def upload(client: APIClient, label_class_id: int) -> Any:
    return client.post(
        "/api/v1/images/",
        {
            "files": [
                SimpleUploadedFile("a.jpg", image_bytes(seed=7101), "image/jpeg"),
                SimpleUploadedFile("b.jpg", image_bytes(seed=7102), "image/jpeg"),
            ],
            "label_class": label_class_id,
        },
        format="multipart",
    )


def assert_sweeper_leaves_no_orphans(media_root: Path) -> None:
    assert len(stored_originals(media_root)) == 2  # stored before the rows, as designed
    result = orphans_sweep(grace_seconds=0)
    assert len(result.removed) == 2
    assert stored_originals(media_root) == []


@pytest.mark.django_db
def test_an_upload_whose_database_write_fails_answers_503_and_leaves_nothing_behind(
    api: APIClient, media_root: Path
) -> None:
    robin = LabelClassFactory(name="Robin")
    failure = OperationalError("disk I/O error")
    with mock.patch.object(QuerySet, "bulk_create", side_effect=failure):
        response = upload(api, robin.pk)

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    body = response.json()
    assert "database is unavailable" in body["detail"]
    assert body["error"] == "OperationalError"
    assert "disk I/O" not in response.content.decode()  # no server detail leaks
    assert_nothing_recorded()
    assert_sweeper_leaves_no_orphans(media_root)


def fail_on_insert_into(table: str) -> Callable[..., Any]:
    """A database execute wrapper: the first INSERT into ``table`` fails as a lost disk would,
    after the statements before it (the batch, the images, their events) went through."""

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        if sql.lstrip().upper().startswith("INSERT") and f'"{table}"' in sql:
            raise OperationalError("disk I/O error")
        return execute(sql, params, many, context)

    return wrapper


@pytest.mark.django_db
def test_an_upload_whose_report_cannot_be_written_leaves_no_empty_batch(
    api: APIClient, media_root: Path
) -> None:
    robin = LabelClassFactory(name="Robin")
    with connection.execute_wrapper(fail_on_insert_into(ImportItem._meta.db_table)):
        response = upload(api, robin.pk)

    assert response.status_code == 503
    assert_nothing_recorded()
    assert api.get("/api/v1/imports/").json()["results"] == []
    assert_sweeper_leaves_no_orphans(media_root)


@pytest.mark.django_db
def test_a_failed_upload_into_an_existing_batch_keeps_that_batch_and_its_images(
    api: APIClient, media_root: Path
) -> None:
    robin = LabelClassFactory(name="Robin")
    first = upload(api, robin.pk)
    batch_id = first.json()["batch"]
    more = [SimpleUploadedFile("c.jpg", image_bytes(seed=7103), "image/jpeg")]
    with connection.execute_wrapper(fail_on_insert_into(ImportItem._meta.db_table)):
        response = api.post(
            "/api/v1/images/", {"files": more, "batch": batch_id}, format="multipart"
        )

    assert first.status_code == 201 and response.status_code == 503
    batch = ImportBatch.objects.get(pk=batch_id)
    assert batch.items.count() == 2
    assert sorted(Image.objects.values_list("original_filename", flat=True)) == ["a.jpg", "b.jpg"]


@pytest.mark.django_db
def test_a_page_whose_database_is_gone_answers_a_503_page(labeller: Any) -> None:
    client = Client()
    client.force_login(labeller)
    failure = OperationalError("server closed the connection unexpectedly")
    with mock.patch("django.db.models.sql.compiler.SQLCompiler.execute_sql", side_effect=failure):
        response = client.get("/")

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response["Content-Type"].startswith("text/html")
    assert b"The database is unavailable" in response.content
    assert b"server closed" not in response.content


@pytest.fixture
def proxied_database() -> Iterator[TcpProxy]:
    """This test's database connection, re-opened through a proxy the test can cut."""
    original = dict(connection.settings_dict)
    proxy = TcpProxy((original["HOST"] or "127.0.0.1", int(original["PORT"] or 5432)))
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(proxy.port))
    try:
        yield proxy
    finally:
        proxy.cut()
        connection.close()
        connection.settings_dict.update(HOST=original["HOST"], PORT=original["PORT"])


@pytest.mark.skipif(not on_postgresql, reason="cuts a real PostgreSQL connection")
@pytest.mark.django_db(transaction=True)
def test_an_upload_whose_postgresql_connection_is_cut_answers_503_and_leaves_nothing_behind(
    labeller: Any, media_root: Path, proxied_database: TcpProxy
) -> None:
    robin = LabelClassFactory(name="Robin")
    client = APIClient()
    client.force_authenticate(labeller)
    real_store = imports.inspection_store
    stored = []

    def store_then_lose_the_database(**kwargs: Any) -> None:
        real_store(**kwargs)
        stored.append(kwargs["inspection"].name)
        if len(stored) == 2:  # both files are on disk; their rows are next
            proxied_database.cut()

    with mock.patch.object(imports, "inspection_store", store_then_lose_the_database):
        response = upload(client, robin.pk)

    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "30"
    assert response.json()["error"] in ("OperationalError", "InterfaceError")

    connection.close()
    connection.settings_dict.update(HOST=proxied_database.target[0])
    connection.settings_dict.update(PORT=str(proxied_database.target[1]))
    assert_nothing_recorded()
    assert_sweeper_leaves_no_orphans(media_root)
