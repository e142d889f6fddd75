"""Imports from uploads, zip archives and folder trees; all report per file the same way."""

from __future__ import annotations

import io
import lzma
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from django.conf import settings
from django.db import transaction

from accounts.models import User
from config.errors import Refused
from curation.models import (
    ImportBatch,
    ImportItem,
    ImportKind,
    ImportOutcome,
    LabelClass,
    Source,
    SubClass,
)
from curation.parallel import file_worker_pool
from curation.selectors import subclass_named
from curation.services.images import (
    ImportResult,
    Inspection,
    Pending,
    file_inspect,
    images_record,
    import_batch_create,
    inspection_store,
    size_rejection,
)
from curation.services.taxonomy import TaxonomyError, subclass_resolve

# Files recorded per transaction: large enough to amortise the commit, small enough that a
# progress bar moves and a crash loses little.
RECORD_CHUNK = 100

# Files that archivers and desktops scatter around; never images, never worth a report line.
_IGNORED_PARTS = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


class ArchiveRejected(Refused):
    """The archive as a whole is refused; the message names the problem."""


@dataclass(frozen=True)
class Destination:
    """Where an import puts its files: into the inbox, one fixed sub-class, or the sub-class
    each file's folder names."""

    subclass: SubClass | None = None
    from_folders: bool = True
    source: str = Source.REAL


def may_change_class_tree(actor: User | None) -> bool:
    """Whether an import by ``actor`` may create the classes and sub-classes its folders name:
    reviewers and admins may (as on ``POST /api/v1/classes/``), and so may the command line
    run without ``--user``; a labeller's folders only find existing ones."""
    return actor is None or actor.is_reviewer


class SubclassCache:
    def __init__(self, *, source: str, actor: User | None) -> None:
        self.source = source
        self.actor = actor
        self.may_create = may_change_class_tree(actor)
        self._cache: dict[tuple[str, str | None], SubClass | None] = {}

    def get(self, class_name: str, subclass_name: str | None) -> SubClass | None:
        """The sub-class the folders name, created when missing if the actor may; None when it
        does not exist and the actor may not create it."""
        key = (class_name.casefold(), subclass_name.casefold() if subclass_name else None)
        if key not in self._cache:
            if self.may_create:
                self._cache[key] = subclass_resolve(
                    class_name=class_name,
                    subclass_name=subclass_name,
                    source=self.source,
                    actor=self.actor,
                )
            else:
                self._cache[key] = subclass_named(
                    class_name=class_name, subclass_name=subclass_name, source=self.source
                )
        return self._cache[key]


def _not_in_tree_note(class_name: str, subclass_name: str | None) -> str:
    """The report line of a file whose folders name a class or sub-class that does not exist,
    imported by someone who may not create it."""
    if not LabelClass.objects.filter(name__iexact=" ".join(class_name.split())).exists():
        return (
            f"put in the inbox: there is no class {class_name!r}, and only reviewers create classes"
        )
    return (
        f"put in the inbox: class {class_name!r} has no sub-class "
        f"{subclass_name or 'for this source'!r}, and only reviewers create sub-classes"
    )


def folder_parts(relative: str) -> tuple[str | None, str | None]:
    """``<class>/<sub-class>/<file>`` or ``<class>/<file>`` → (class, sub-class).

    Raises ValueError naming the problem for any other shape.
    """
    parts = PurePosixPath(relative).parts
    if len(parts) == 1:
        return None, None
    if len(parts) == 2:
        return parts[0], None
    if len(parts) == 3:
        return parts[0], parts[1]
    raise ValueError("nested too deep: expected <class>/<sub-class>/<file> or <class>/<file>")


def _is_ignored(relative: str) -> bool:
    parts = PurePosixPath(relative).parts
    return any(p in _IGNORED_PARTS or p.startswith("._") for p in parts)


@dataclass(frozen=True)
class Placement:
    """Where one file goes: a sub-class or the inbox (None), or why it is refused
    (``problem``); ``note`` tells the report why a file went to the inbox instead."""

    subclass: SubClass | None
    problem: str = ""
    note: str = ""


def _subclass_for(relative: str, destination: Destination, cache: SubclassCache) -> Placement:
    """The sub-class for a file, or an error message."""
    if not destination.from_folders:
        return Placement(destination.subclass)
    try:
        class_name, subclass_name = folder_parts(relative)
    except ValueError as exc:
        return Placement(None, problem=str(exc))
    if class_name is None:
        if destination.subclass is not None:
            return Placement(destination.subclass)
        return Placement(None)  # top-level files go to the inbox
    try:
        subclass = cache.get(class_name, subclass_name)
    except TaxonomyError as exc:
        return Placement(None, problem=str(exc))
    if subclass is None:
        return Placement(None, note=_not_in_tree_note(class_name, subclass_name))
    return Placement(subclass)


def rejected(name: str, reason: str) -> Pending:
    return Pending(Inspection(name, "", 0, None, reason), None)


@dataclass(frozen=True)
class UploadReport:
    batch: ImportBatch
    results: list[ImportResult]


def upload_batch_name(names: list[str]) -> str:
    """An upload batch is named after its first three files."""
    return ", ".join(names[:3]) + (" …" if len(names) > 3 else "")


def upload_import(
    *,
    files: list[tuple[str | None, IO[bytes]]],
    destination: Destination,
    actor: User | None,
    batch: ImportBatch | None,
) -> UploadReport:
    """Import uploaded files (name, stream) into one destination, recorded together, into
    ``batch`` or, with None, a new upload batch. The new batch is created in the transaction
    that records the files, so a failure half-way leaves no batch without images; the files
    are stored before it, and the orphan sweeper removes them if no row ever names them.

    A client may send a file without a name (the format is read from the content, so nothing
    needs one); such a file is reported, and kept, by its place in the request."""
    named = [
        (name or f"file {position} (no name)", stream)
        for position, (name, stream) in enumerate(files, start=1)
    ]
    pending = []
    for name, stream in named:
        # An upload knows its size: one over the cap is refused without reading it into memory.
        too_large = size_rejection(getattr(stream, "size", 0) or 0)
        if too_large:
            pending.append(rejected(name, too_large))
            continue
        data = stream.read()
        inspection = file_inspect(data=data, name=name)
        inspection_store(inspection=inspection, content=io.BytesIO(data))
        pending.append(Pending(inspection, destination.subclass))
    with transaction.atomic():
        if batch is None:
            batch = import_batch_create(
                kind=ImportKind.UPLOAD,
                name=upload_batch_name([name for name, _ in named]),
                actor=actor,
            )
        results = images_record(pending=pending, actor=actor, batch=batch)
    return UploadReport(batch=batch, results=results)


# --- Zip archives ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveMember:
    info: zipfile.ZipInfo
    problem: str


def _entry_problem(info: zipfile.ZipInfo) -> str:
    name = info.filename
    if "\x00" in name:
        return "entry name contains a NUL byte"
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return "absolute path in the archive"
    if ".." in PurePosixPath(normalised).parts:
        return "path leaves the archive ('..')"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    max_ratio: int = settings.LOUPE_ZIP_MAX_RATIO
    if info.file_size > 0 and info.file_size / max(info.compress_size, 1) > max_ratio:
        ratio = info.file_size // max(info.compress_size, 1)
        return f"compression ratio {ratio}:1 is over the limit of {max_ratio}:1 (zip bomb?)"
    max_bytes: int = settings.LOUPE_MAX_IMAGE_BYTES
    if info.file_size > max_bytes:
        return f"entry is {info.file_size:,} bytes; the limit is {max_bytes:,}"
    return ""


# The end of central directory record, and the zip64 locator and record that may precede it.
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")


def _declared_entry_count(stream: IO[bytes]) -> int:
    """The number of entries the archive's end record declares (0 when there is none).

    Read before ``zipfile`` parses the central directory, which builds an object per entry:
    an archive declaring millions of entries is refused without that memory being spent.
    """
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    tail_size = min(size, _END_RECORD.size + 0xFFFF + _ZIP64_LOCATOR.size)
    stream.seek(size - tail_size)
    tail = stream.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END_RECORD.size > len(tail):
        return 0  # not a zip: zipfile says so in its own words
    count = int(_END_RECORD.unpack_from(tail, at)[4])
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        offset = int(_ZIP64_LOCATOR.unpack_from(tail, locator)[2])
        stream.seek(offset)
        record = stream.read(_ZIP64_END_RECORD.size)
        if len(record) == _ZIP64_END_RECORD.size and record[:4] == b"PK\x06\x06":
            count = max(count, int(_ZIP64_END_RECORD.unpack(record)[7]))
    return count


def _check_entry_count(count: int) -> None:
    max_entries: int = settings.LOUPE_ZIP_MAX_ENTRIES
    if count > max_entries:
        raise ArchiveRejected(f"the archive has {count:,} entries; the limit is {max_entries:,}")


def archive_inspect(stream: IO[bytes]) -> list[ArchiveMember]:
    """Read the archive's directory and judge each entry, without extracting anything.

    Raises ArchiveRejected when the archive as a whole is over a cap or not a zip. Folder
    entries count towards the entry cap: they cost as much to list as files.
    """
    _check_entry_count(_declared_entry_count(stream))
    stream.seek(0)
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveRejected(f"not a readable zip archive: {exc}") from None
    with archive:
        everything = archive.infolist()
    _check_entry_count(len(everything))
    infos = [i for i in everything if not i.is_dir()]
    total = sum(i.file_size for i in infos)
    max_total: int = settings.LOUPE_ZIP_MAX_UNCOMPRESSED_BYTES
    if total > max_total:
        raise ArchiveRejected(
            f"the archive unpacks to {total:,} bytes; the limit is {max_total:,} (zip bomb?)"
        )
    return [
        ArchiveMember(info=i, problem=_entry_problem(i))
        for i in infos
        if not _is_ignored(i.filename.replace("\\", "/"))
    ]


# What reading one entry may raise: a damaged or lying header, a corrupt compressed stream
# (zlib, bz2, lzma each have their own error) or a compression method zipfile lacks (Deflate64).
# Each is that entry's problem, reported against it; the rest of the archive still imports.
_UNPACK_ERRORS = (
    ArchiveRejected,
    zipfile.BadZipFile,
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read an entry, trusting its declared size no further than the bytes that come out."""
    limit = info.file_size
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise ArchiveRejected("entry unpacks to more bytes than its header declares")
    return data


def _archive_entry(
    archive: zipfile.ZipFile, member: ArchiveMember, destination: Destination, cache: SubclassCache
) -> Pending:
    name = member.info.filename
    if member.problem:
        return rejected(name, member.problem)
    placement = _subclass_for(name, destination, cache)
    if placement.problem:
        return rejected(name, placement.problem)
    try:
        data = _read_member(archive, member.info)
    except _UNPACK_ERRORS as exc:
        return rejected(name, f"cannot unpack entry: {exc}")
    inspection = file_inspect(data=data, name=name)
    inspection_store(inspection=inspection, content=io.BytesIO(data))
    return Pending(inspection, placement.subclass, note=placement.note)


def archive_import(
    *,
    stream: IO[bytes],
    destination: Destination,
    actor: User | None,
    batch: ImportBatch,
    progress: Callable[[int, int], None] | None = None,
) -> ImportBatch:
    """Import every good entry of a zip archive and report the others.

    Safe to run again on the same batch (a retried job): entries already reported are skipped.
    """
    members = archive_inspect(stream)
    already = set(ImportItem.objects.filter(batch=batch).values_list("name", flat=True))
    cache = SubclassCache(source=destination.source, actor=actor)
    total = len(members)
    pending: list[Pending] = []

    def flush(done: int) -> None:
        if pending:
            images_record(pending=pending, actor=actor, batch=batch)
            pending.clear()
        if progress is not None:
            progress(done, total)

    stream.seek(0)
    with zipfile.ZipFile(stream) as archive:
        for done, member in enumerate(members, start=1):
            name = member.info.filename
            if name not in already:
                pending.append(_archive_entry(archive, member, destination, cache))
            if len(pending) >= RECORD_CHUNK:
                flush(done)
        flush(total)
    return batch


# --- Folder trees ---------------------------------------------------------------------------


def folder_files(root: Path) -> list[str]:
    """Every file under ``root`` as a POSIX path relative to it, sorted, ignoring hidden
    files and archiver litter. Symbolic links are not followed out of the tree."""
    found = []
    root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if filename.startswith("."):
                continue
            relative = Path(dirpath, filename).relative_to(root).as_posix()
            if not _is_ignored(relative):
                found.append(relative)
    found.sort()
    return found


def _inspect_path(args: tuple[str, str]) -> tuple[str, object]:
    root, relative = args
    path = Path(root, relative)
    try:
        if path.is_symlink() and not path.resolve().is_relative_to(Path(root).resolve()):
            return relative, "symbolic link pointing outside the imported folder"
        data = path.read_bytes()
    except OSError as exc:
        return relative, f"cannot read file: {exc.strerror or exc}"
    inspection = file_inspect(data=data, name=relative)
    # Storing here, in the pool, keeps the copy off the process that records rows.
    inspection_store(inspection=inspection, content=io.BytesIO(data))
    return relative, inspection


def folder_inspections(
    root: Path, relatives: list[str], *, workers: int
) -> Iterator[tuple[str, object]]:
    """Inspect files (hash and decode) in a pool of processes, in order."""
    jobs = [(str(root), r) for r in relatives]
    with file_worker_pool(workers) as pool:
        yield from pool.imap(_inspect_path, jobs, chunksize=8)


def folder_import(
    *,
    root: Path,
    destination: Destination,
    actor: User | None,
    batch: ImportBatch,
    workers: int = 1,
    progress: Callable[[ImportResult], None] | None = None,
    on_created: Callable[[int], None] | None = None,
) -> ImportBatch:
    """Import a folder tree ``<class>/<sub-class>/*`` or ``<class>/*`` (or everything into one
    destination). Running it again on the same tree creates nothing new."""
    relatives = folder_files(root)
    cache = SubclassCache(source=destination.source, actor=actor)
    pending: list[Pending] = []

    def flush() -> None:
        for result in images_record(pending=pending, actor=actor, batch=batch):
            if result.outcome == ImportOutcome.CREATED and result.image and on_created:
                on_created(result.image.pk)
            if progress is not None:
                progress(result)
        pending.clear()

    for relative, inspected in folder_inspections(root, relatives, workers=workers):
        placement = _subclass_for(relative, destination, cache)
        if isinstance(inspected, str):
            pending.append(rejected(relative, inspected))
        elif placement.problem:
            pending.append(rejected(relative, placement.problem))
        else:
            assert isinstance(inspected, Inspection)
            pending.append(Pending(inspected, placement.subclass, note=placement.note))
        if len(pending) >= RECORD_CHUNK:
            flush()
    flush()
    return batch
