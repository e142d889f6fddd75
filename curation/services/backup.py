"""Backup and restore of a whole installation in one zip archive.

The archive holds:

- ``database.jsonl``: every row, in Django's serialised JSON Lines (what ``dumpdata --format
  jsonl --natural-foreign`` writes), read from one consistent snapshot of the database;
- ``media/originals/…`` and ``media/models/…``: the stored original of every image row and
  the ONNX file of every model version, byte for byte;
- ``checksums.sha256``: the SHA-256 of every other member, in ``sha256sum`` format;
- ``manifest.json``: the format, the applied migrations, row counts per model, file counts and
  bytes, and the checksum of ``checksums.sha256``.

Derivatives (thumbnails) are left out and rebuilt by the worker after a restore. Content types,
permissions and sessions are left out: ``migrate`` makes the first two, and sessions only sign
people out.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import django
from django.apps import apps
from django.core import serializers
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Model
from django.utils import timezone

from curation.models import Image, Job, JobStatus
from curation.plugins import stored_files
from curation.services.images import subclass_counts_rebuild
from curation.storage import original_name

FORMAT = "loupe-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "database.jsonl"
CHECKSUMS = "checksums.sha256"
MEDIA = "media/"

# Made by ``migrate`` (content types, permissions) or not worth keeping (sessions).
NOT_BACKED_UP = frozenset({"contenttypes.contenttype", "auth.permission", "sessions.session"})
# Rows that ``migrate`` itself writes: their presence does not make an installation non-empty.
SEEDED_BY_MIGRATIONS = frozenset({"curation.librarycounter"})
# The only media names an archive may hold: nothing in one can name a path outside storage.
_MEDIA_NAME = re.compile(
    r"(originals/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.[a-z0-9]{1,8}|models/[0-9a-f]{64}\.onnx)"
)
_CHUNK = 1024 * 1024
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

Progress = Callable[[str, int, int], None]


class BackupError(Exception):
    """The backup or restore cannot go on; the message names the problem."""


@dataclass
class BackupResult:
    path: str
    objects: int
    counts: dict[str, int]
    files: int
    bytes: int
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RestoreResult:
    path: str
    objects: int
    counts: dict[str, int]
    files: int
    bytes: int
    thumbnails_queued: int
    jobs_interrupted: int
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(model: type[Model]) -> str:
    return model._meta.label_lower


def backed_up_models() -> list[type[Model]]:
    """Every concrete model whose rows go into a backup, in dependency order."""
    ordered = serializers.sort_dependencies(
        [(config, None) for config in apps.get_app_configs()], allow_cycles=True
    )
    return [
        model
        for model in ordered
        if model._meta.managed
        and not model._meta.proxy
        and not model._meta.auto_created
        and _label(model) not in NOT_BACKED_UP
    ]


class _HashingWriter(io.RawIOBase):
    """Writes through to ``target`` while keeping the SHA-256 and size of what went by."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.target.write(view)
        self.digest.update(view)
        self.size += len(view)
        return len(view)


@contextlib.contextmanager
def _snapshot() -> Iterator[None]:
    """Read the whole database as of one moment, without blocking writers: REPEATABLE READ on
    PostgreSQL, a deferred (read) transaction on SQLite in WAL mode. Inside a caller's
    transaction its snapshot is used."""
    if connection.in_atomic_block:
        yield
    elif connection.vendor == "postgresql":
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    elif connection.vendor == "sqlite":
        # Django would open an IMMEDIATE transaction, which takes the write lock for as long as
        # the backup runs; a deferred one only reads.
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("COMMIT")
    else:
        with transaction.atomic():
            yield


def _applied_migrations() -> dict[str, list[str]]:
    applied: dict[str, list[str]] = {}
    for app, name in MigrationRecorder(connection).applied_migrations():
        applied.setdefault(app, []).append(name)
    return {app: sorted(names) for app, names in sorted(applied.items())}


def _member(name: str, *, compress: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _dump_database(archive: zipfile.ZipFile) -> tuple[Counter[str], str, int]:
    """Serialise every backed-up row into ``database.jsonl``; (counts, sha256, bytes)."""
    counts: Counter[str] = Counter()
    with archive.open(_member(DATABASE, compress=True), "w", force_zip64=True) as entry:
        raw = _HashingWriter(entry)
        text = io.TextIOWrapper(io.BufferedWriter(raw, _CHUNK), encoding="utf-8", newline="\n")
        for model in backed_up_models():
            label = _label(model)

            def counted(rows: Iterator[Model], label: str = label) -> Iterator[Model]:
                for row in rows:
                    counts[label] += 1
                    yield row

            queryset = model._base_manager.order_by(model._meta.pk.name)
            serializers.serialize(
                "jsonl",
                counted(queryset.iterator(chunk_size=2000)),
                stream=text,
                use_natural_foreign_keys=True,
            )
        text.flush()
        text.detach()
    return counts, raw.digest.hexdigest(), raw.size


def _stored_files() -> Iterator[tuple[str, str]]:
    """(storage name, expected SHA-256) of every file a row needs, in primary-key order: the
    originals, then the files of the apps above the library (curation.plugins)."""
    rows = Image.objects.order_by("pk").values_list("sha256", "extension")
    for sha256, extension in rows.iterator(chunk_size=2000):
        yield original_name(sha256, extension), sha256
    yield from stored_files()


def backup_create(*, path: Path, progress: Progress | None = None) -> BackupResult:
    """Write a backup archive of the whole installation to ``path`` (replaced atomically: a
    failed backup leaves no half archive). Safe while Loupe runs: rows come from one snapshot,
    and every original a row of that snapshot references already exists (files are stored
    before their rows commit)."""
    started = time.monotonic()
    report = progress or (lambda stage, done, total: None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:12]}")
    missing: list[str] = []
    damaged: list[str] = []
    try:
        with (
            zipfile.ZipFile(partial, "w", allowZip64=True) as archive,
            tempfile.TemporaryFile("w+", encoding="utf-8") as checksums,
            _snapshot(),
        ):
            report("database", 0, 1)
            counts, db_sha, db_bytes = _dump_database(archive)
            checksums.write(f"{db_sha}  {DATABASE}\n")
            report("database", 1, 1)
            total = Image.objects.count()
            files = size = 0
            for done, (name, expected) in enumerate(_stored_files(), start=1):
                try:
                    with default_storage.open(name, "rb") as source:
                        digest, copied = _copy_into(archive, source, MEDIA + name)
                except FileNotFoundError:
                    missing.append(name)
                    continue
                if digest != expected:
                    damaged.append(name)
                checksums.write(f"{digest}  {MEDIA}{name}\n")
                files += 1
                size += copied
                if done % 500 == 0:
                    report("files", done, total)
            report("files", total, total)
            checksums.seek(0)
            listing = checksums.read().encode("utf-8")
            archive.writestr(_member(CHECKSUMS, compress=True), listing)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": timezone.now().isoformat(),
                "django": django.get_version(),
                "database_vendor": connection.vendor,
                "migrations": _applied_migrations(),
                "database": {
                    "file": DATABASE,
                    "objects": sum(counts.values()),
                    "counts": dict(sorted(counts.items())),
                    "sha256": db_sha,
                    "bytes": db_bytes,
                },
                "media": {"files": files, "bytes": size, "missing": missing, "damaged": damaged},
                "checksums": {"file": CHECKSUMS, "sha256": hashlib.sha256(listing).hexdigest()},
            }
            archive.writestr(_member(MANIFEST), json.dumps(manifest, indent=2) + "\n")
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    return BackupResult(
        path=str(path),
        objects=sum(counts.values()),
        counts=dict(sorted(counts.items())),
        files=files,
        bytes=size,
        missing=missing,
        damaged=damaged,
        seconds=round(time.monotonic() - started, 3),
    )


def _copy_into(archive: zipfile.ZipFile, source: IO[bytes], name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    copied = 0
    with archive.open(_member(name), "w", force_zip64=True) as entry:
        while chunk := source.read(_CHUNK):
            entry.write(chunk)
            digest.update(chunk)
            copied += len(chunk)
    return digest.hexdigest(), copied


# --- Restore ----------------------------------------------------------------------------------


def installation_rows() -> dict[str, int]:
    """Rows per model that a restore would replace (those ``migrate`` writes aside)."""
    found = {}
    for model in backed_up_models():
        label = _label(model)
        if label not in SEEDED_BY_MIGRATIONS and model._base_manager.exists():
            found[label] = model._base_manager.count()
    return found


def _read_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise BackupError(f"This is not a Loupe backup: it has no {MANIFEST}.") from None
    except ValueError as exc:
        raise BackupError(f"The backup's {MANIFEST} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"This is not a Loupe backup ({MANIFEST} names no {FORMAT!r} format).")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"This backup has format version {manifest.get('format_version')}; this Loupe "
            f"reads version {FORMAT_VERSION}."
        )
    return manifest


def _check_migrations(manifest: dict[str, Any]) -> None:
    """Every migration the backed-up database had must be applied here (a newer Loupe is fine:
    rows load into the newer schema; an older one is not)."""
    applied = _applied_migrations()
    absent = [
        f"{app}.{name}"
        for app, names in manifest.get("migrations", {}).items()
        for name in names
        if name not in applied.get(app, [])
    ]
    if absent:
        raise BackupError(
            f"This installation lacks {len(absent)} migration(s) the backup was made with "
            f"({', '.join(absent[:5])}{' …' if len(absent) > 5 else ''}). Run "
            "'python manage.py migrate' with a Loupe at least as new as the backup's, then "
            "restore."
        )


def _read_checksums(archive: zipfile.ZipFile, manifest: dict[str, Any]) -> dict[str, str]:
    """The checksum list, itself checked against the manifest; every member is listed once."""
    listing = archive.read(CHECKSUMS)
    if hashlib.sha256(listing).hexdigest() != manifest["checksums"]["sha256"]:
        raise BackupError(f"The backup is damaged: {CHECKSUMS} does not match its manifest.")
    expected: dict[str, str] = {}
    for line in listing.decode("utf-8").splitlines():
        digest, _, name = line.partition("  ")
        expected[name] = digest
    members = {info.filename for info in archive.infolist()} - {MANIFEST, CHECKSUMS}
    if members != set(expected):
        extra = sorted(members - set(expected))[:3]
        absent = sorted(set(expected) - members)[:3]
        raise BackupError(
            f"The backup is damaged: members unlisted {extra} or listed but absent {absent}."
        )
    for name in expected:
        if name != DATABASE and not (
            name.startswith(MEDIA) and _MEDIA_NAME.fullmatch(name[len(MEDIA) :])
        ):
            raise BackupError(f"The backup holds a member Loupe never writes: {name!r}.")
    return expected


def _extract_verified(archive: zipfile.ZipFile, name: str, expected: str, target: IO[bytes]) -> int:
    digest = hashlib.sha256()
    size = 0
    with archive.open(name) as source:
        while chunk := source.read(_CHUNK):
            target.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    if digest.hexdigest() != expected:
        raise BackupError(f"The backup is damaged: {name} does not match its checksum.")
    return size


def backup_restore(
    *, path: Path, force: bool = False, progress: Progress | None = None
) -> RestoreResult:
    """Restore the archive at ``path`` into this installation.

    Precondition: ``migrate`` has run. Refuses an installation that holds any rows (users,
    classes, images…) unless ``force``, which replaces everything. The database dump and every
    file are checked against their checksums before the first row is written: a damaged
    archive changes no row (the verified files stored before the damaged one was found have
    no row; the orphan sweeper removes the originals among them). Rows load in one
    transaction. Thumbnails are rebuilt by the worker; jobs that were queued or running at
    backup time are marked failed.
    """
    started = time.monotonic()
    report = progress or (lambda stage, done, total: None)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BackupError(f"Cannot read {path} as a zip archive: {exc}") from None
    with archive, tempfile.TemporaryDirectory(prefix="loupe-restore-") as scratch:
        manifest = _read_manifest(archive)
        _check_migrations(manifest)
        present = installation_rows()
        if present and not force:
            summary = ", ".join(f"{n} {label}" for label, n in sorted(present.items())[:6])
            raise BackupError(
                f"This installation is not empty ({summary}). Restore into a freshly migrated "
                "installation, or pass --force to replace everything in it."
            )
        expected = _read_checksums(archive, manifest)
        dump = Path(scratch) / "loupe.jsonl"  # loaddata knows the format by the extension
        with dump.open("wb") as target:
            _extract_verified(archive, DATABASE, expected[DATABASE], target)
        media = [name for name in expected if name != DATABASE]
        size = 0
        for done, name in enumerate(media, start=1):
            size += _store_verified(archive, name, expected[name], Path(scratch))
            if done % 500 == 0:
                report("files", done, len(media))
        report("files", len(media), len(media))
        report("database", 0, 1)
        with transaction.atomic():
            if force:
                _flush()
            call_command("loaddata", str(dump), verbosity=0)
            image_ids = list(Image.objects.order_by("pk").values_list("pk", flat=True))
            Image.objects.filter(thumbnail_ready=True).update(thumbnail_ready=False)
            interrupted = Job.objects.filter(
                status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
            ).update(
                status=JobStatus.FAILED,
                message="Interrupted: it was in progress when the backup was made; start it again.",
                finished_at=timezone.now(),
            )
            # Counters are derived: count them from the restored rows.
            subclass_counts_rebuild()
            from curation.tasks import enqueue_processing

            enqueue_processing(image_ids)  # thumbnails, once the rows commit
        report("database", 1, 1)
    counts = manifest["database"]["counts"]
    return RestoreResult(
        path=str(path),
        objects=manifest["database"]["objects"],
        counts=counts,
        files=len(media),
        bytes=size,
        thumbnails_queued=len(image_ids),
        jobs_interrupted=interrupted,
        seconds=round(time.monotonic() - started, 3),
    )


def _flush() -> None:
    """Delete every row (``flush``: ``migrate``'s own rows are made again)."""
    if connection.vendor == "postgresql":
        # TRUNCATE refuses tables with foreign-key checks still pending in this transaction
        # (rows a caller's transaction wrote): run those checks now, defer them again after.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        call_command("flush", interactive=False, verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    else:
        call_command("flush", interactive=False, verbosity=0)


def _store_verified(archive: zipfile.ZipFile, member: str, expected: str, scratch: Path) -> int:
    """Check one file against its checksum on the way to a scratch copy, then store it under its
    name (content addressed: a file already there by that name has these bytes)."""
    name = member[len(MEDIA) :]
    with tempfile.NamedTemporaryFile(dir=scratch) as staged:
        size = _extract_verified(archive, member, expected, staged)
        staged.flush()
        staged.seek(0)
        if not default_storage.exists(name):
            default_storage.save(name, File(staged, name=os.path.basename(name)))
    return size
