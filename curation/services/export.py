"""Export of a dataset version: WebDataset tar shards or an ImageFolder tree.

WebDataset: one shard set per split (``train-000000.tar``…), each member ``<sha256>.<ext>``,
``<sha256>.cls`` (the class index) and ``<sha256>.json``, members sorted by SHA-256. Tar
headers carry fixed times, owners and modes, so exporting the same version twice gives
byte-identical shards. Shards are written by a pool of processes, one shard per task.

Folder: ``<split>/<class>/<sha256>.<ext>``, each file a copy of its original: a reflink where
the file system shares blocks copy-on-write (Btrfs, XFS, bcachefs), an in-kernel copy
elsewhere. Either way the exported file is an inode of its own, so nothing written to an
export can reach the library. Hard links (``hard_links=True``) only on explicit request: a
hard link *is* the original, and the original's read-only mode stops only users other than
root, so an ``echo x >> file`` run as root in such an export changes the library.

Both write ``manifest.csv`` (sha256, class, sub-class, split, source, file), ``label_map.json``
and ``dataset.json`` (the version and its parameters). With ``letterbox`` every image becomes a
square PNG of that size, aspect ratio kept, black padding.

Everything is written into a hidden staging folder beside ``out`` and renamed into place when
complete, so a failed export (a full disk, a killed worker) never leaves half an export where a
training job could read it, and an earlier export in ``out`` stays whole until then.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import re
import shutil
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage

from curation.imaging import open_for_pixels, resize
from curation.models import DatasetAssignment, DatasetStatus, DatasetVersion
from curation.parallel import file_worker_pool
from curation.storage import original_name

EXPORT_FORMATS = ("webdataset", "folder")
DEFAULT_SHARD_SIZE = 10_000
MARKER = "dataset.json"
# Fixed tar header fields: nothing in a shard depends on when or by whom it was written.
TAR_MTIME = 0
TAR_MODE = 0o644
_SHA = re.compile(r"[0-9a-f]{64}")
_EXTENSION = re.compile(r"[a-z0-9]{1,8}")
_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


class ExportError(Exception):
    pass


@dataclass(frozen=True)
class ExportRow:
    sha256: str
    extension: str
    split: str
    class_name: str
    subclass_name: str
    source: str
    label: int

    @property
    def storage_name(self) -> str:
        return original_name(self.sha256, self.extension)


@dataclass
class ExportResult:
    format: str
    out: str
    images: int
    files: list[str] = field(default_factory=list)
    # Images written as letterboxed PNGs (their bytes are in bytes_written); none is copied.
    letterboxed: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    linked: int = 0
    copied: int = 0
    reflinked: int = 0

    @property
    def message(self) -> str:
        return f"{self.images} images exported as {self.format} to {self.out}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def safe_member_name(sha256: str, extension: str) -> str:
    """``<sha256>.<ext>``, refusing anything that could name a path (``/``, ``..``)."""
    if not _SHA.fullmatch(sha256) or not _EXTENSION.fullmatch(extension):
        raise ExportError(f"Refusing unsafe member name {sha256!r}.{extension!r}")
    return f"{sha256}.{extension}"


def safe_folder_name(name: str) -> str:
    """A class name usable as one folder: no separators, never ``.``/``..`` or hidden."""
    cleaned = name.replace("/", "_").replace("\\", "_").replace("\x00", "").strip()
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned


def export_rows(version: DatasetVersion) -> list[ExportRow]:
    """The version's images by split (train, val, test), then SHA-256."""
    label_map: dict[str, int] = version.summary.get("label_map", {})
    rows: list[ExportRow] = []
    last = 0
    queryset = DatasetAssignment.objects.filter(version=version)
    while True:
        chunk = list(
            queryset.filter(pk__gt=last)
            .order_by("pk")
            .values_list(
                "pk",
                "image__sha256",
                "image__extension",
                "split",
                "label_class__name",
                "subclass__name",
                "source",
            )[:5000]
        )
        if not chunk:
            break
        last = chunk[-1][0]
        for _, sha256, extension, split, class_name, subclass_name, source in chunk:
            rows.append(
                ExportRow(
                    sha256,
                    extension,
                    split,
                    class_name,
                    subclass_name,
                    source,
                    label_map.get(class_name, -1),
                )
            )
    rows.sort(key=lambda row: (_SPLIT_ORDER.get(row.split, 9), row.sha256))
    return rows


def _local_path(name: str) -> str | None:
    try:
        return str(default_storage.path(name))
    except NotImplementedError:  # object storage: read through the storage API
        return None


def _read_original(row: ExportRow) -> bytes:
    path = _local_path(row.storage_name)
    if path is not None:
        with open(path, "rb") as handle:
            return handle.read()
    with default_storage.open(row.storage_name, "rb") as stream:
        data: bytes = stream.read()
        return data


def letterboxed_png(data: bytes, size: int) -> bytes:
    """A ``size`` by ``size`` PNG: the image scaled to fit, centred on black."""
    image = resize(open_for_pixels(io.BytesIO(data)), size=size, mode="letterbox")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _payload(row: ExportRow, letterbox: int | None) -> tuple[str, bytes]:
    data = _read_original(row)
    if letterbox:
        return "png", letterboxed_png(data, letterbox)
    return row.extension, data


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = TAR_MTIME
    info.mode = TAR_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


@dataclass(frozen=True)
class _ShardTask:
    path: str
    rows: list[ExportRow]
    letterbox: int | None


def _member(name: str, body: bytes) -> bytes:
    return _header(name, len(body)) + body + _padding(len(body))


def _header(name: str, size: int) -> bytes:
    """The ustar header ``tarfile`` writes for ``_tar_info(name, size)``, built directly:
    every field but the name, size and checksum is fixed, and ``TarInfo.tobuf`` would
    otherwise cost more than copying a small image."""
    encoded = name.encode("utf-8")
    if len(encoded) > 100 or size >= 8**11:
        return _tar_info(name, size).tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    block = bytearray(_HEADER_TEMPLATE)
    block[0 : len(encoded)] = encoded
    block[124:136] = b"%011o\0" % size
    checksum = sum(block)  # the checksum field holds eight spaces while summing
    block[148:155] = b"%06o\0" % checksum
    return bytes(block)


_HEADER_TEMPLATE = _tar_info("", 0).tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
_HEADER_TEMPLATE = _HEADER_TEMPLATE[:148] + b" " * 8 + _HEADER_TEMPLATE[156:]


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _send_file(out_fd: int, path: str, size: int) -> None:
    """Copy ``size`` bytes of ``path`` to ``out_fd`` in the kernel (as ``shutil.copyfile``
    does), so a shard costs what a plain copy of its images costs."""
    with open(path, "rb") as source:
        offset = 0
        while offset < size:
            sent = os.sendfile(out_fd, source.fileno(), offset, size - offset)
            if sent == 0:
                raise ExportError(f"{path} is shorter than its recorded size")
            offset += sent


def _write_shard(task: _ShardTask) -> tuple[str, int, int]:
    """Write one POSIX (ustar) tar shard to a temporary name and rename it into place.

    Headers are written here rather than through ``tarfile.addfile`` so the image bytes can
    go from the original to the shard without passing through Python; the layout is the one
    ``tarfile`` writes (512-byte blocks, two empty blocks, padded to a 10 KiB record).
    """
    partial = task.path + ".partial"
    root = _local_path("")
    written = 0
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:

        def write(data: bytes) -> None:
            nonlocal written
            view = memoryview(data)
            while view:
                count = os.write(fd, view)
                view = view[count:]
            written += len(data)

        for row in task.rows:
            key = row.sha256
            meta = json.dumps(
                {
                    "sha256": row.sha256,
                    "class": row.class_name,
                    "subclass": row.subclass_name,
                    "label": row.label,
                    "split": row.split,
                    "source": row.source,
                },
                sort_keys=True,
                ensure_ascii=False,
            ).encode()
            name = safe_member_name(key, row.extension)  # checks what the path is made of
            path = None if task.letterbox or root is None else os.path.join(root, row.storage_name)
            if path is not None:
                size = os.stat(path).st_size
                write(_header(name, size))
                _send_file(fd, path, size)
                written += size
                tail = _padding(size)
            else:
                extension, data = _payload(row, task.letterbox)
                write(_member(safe_member_name(key, extension), data))
                tail = b""
            write(
                tail
                + _member(safe_member_name(key, "cls"), str(row.label).encode())
                + _member(safe_member_name(key, "json"), meta)
            )
        end = b"\0" * (2 * tarfile.BLOCKSIZE)
        end += b"\0" * (-(written + len(end)) % tarfile.RECORDSIZE)
        write(end)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    os.close(fd)
    os.replace(partial, task.path)
    return task.path, len(task.rows), written


def _shard_tasks(
    rows: list[ExportRow], out: Path, shard_size: int, letterbox: int | None
) -> list[_ShardTask]:
    tasks: list[_ShardTask] = []
    for split in ("train", "val", "test"):
        split_rows = [row for row in rows if row.split == split]
        for index, start in enumerate(range(0, len(split_rows), shard_size)):
            tasks.append(
                _ShardTask(
                    path=str(out / f"{split}-{index:06d}.tar"),
                    rows=split_rows[start : start + shard_size],
                    letterbox=letterbox,
                )
            )
    return tasks


def _pool(workers: int) -> Any:
    """Workers that read originals and write files; they never touch the database."""
    return file_worker_pool(workers)


# A full disk or an exhausted quota: retrying will not help until someone frees space.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_STAGING_MARK = ".partial-"


def _check_target(out: Path) -> None:
    """``out`` must be new, empty, or an earlier export of ours (replaced once this one is
    complete)."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ExportError(f"{out} is not empty and holds no earlier export; choose another.")


def _staging_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` (same file system: hard links work and the final
    rename is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}{_STAGING_MARK}{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    return staging


def _put_in_place(staging: Path, out: Path) -> None:
    """Replace ``out`` (absent, empty or an earlier export) with the complete ``staging``."""
    previous = None
    if out.exists():
        previous = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:12]}"
        out.rename(previous)
    staging.rename(out)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def stale_staging_folders(out: Path) -> list[Path]:
    """Staging folders of earlier exports to ``out`` that never finished (their process was
    killed before it could clean up): those untouched for longer than the orphan grace
    period, so that an export still running into its own is left alone."""
    if not out.parent.exists():
        return []
    cutoff = time.time() - settings.LOUPE_ORPHAN_GRACE_SECONDS
    return sorted(
        folder
        for folder in out.parent.glob(f".{glob_escape(out.name)}{_STAGING_MARK}*")
        if folder.stat().st_mtime < cutoff
    )


def _write_metadata(
    version: DatasetVersion, rows: list[ExportRow], out: Path, files: dict[str, str], **extra: Any
) -> None:
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["sha256", "class", "subclass", "split", "source", "label", "file"])
        for row in rows:
            writer.writerow(
                [
                    row.sha256,
                    row.class_name,
                    row.subclass_name,
                    row.split,
                    row.source,
                    row.label,
                    files[row.sha256],
                ]
            )
    label_map = version.summary.get("label_map", {})
    (out / "label_map.json").write_text(
        json.dumps(label_map, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    (out / MARKER).write_text(
        json.dumps(
            {
                "name": version.name,
                "version_id": version.pk,
                "params": version.params,
                "exploratory": version.exploratory,
                "images": len(rows),
                **extra,
            },
            indent=2,
            sort_keys=True,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )


def _link_or_copy(source: str, target: Path) -> bool:
    """Hard-link ``source`` at ``target``; copy when linking is impossible. True if linked."""
    try:
        os.link(source, target)
        return True
    except OSError:
        shutil.copyfile(source, target)
        return False


# linux/fs.h: FICLONE = _IOW(0x94, 9, int), share all of one file's blocks with another.
FICLONE = 0x40049409
# What a file system or kernel without reflinks (or without copy_file_range) answers.
_UNSUPPORTED = {
    errno.EOPNOTSUPP,
    errno.ENOTTY,
    errno.EINVAL,
    errno.EXDEV,
    errno.ENOSYS,
    errno.EPERM,
}


class FileCopier:
    """Copies originals into an export without ever sharing an inode with them.

    Each copy first asks for a reflink (``FICLONE``: the new file shares the original's blocks
    until either is written, so it costs no data and no time); where the file system has none
    it copies in the kernel (``copy_file_range``, or ``sendfile`` as ``shutil.copyfile`` does).
    What the file system refused once is not asked again for the rest of the export.
    """

    def __init__(self) -> None:
        self.try_reflink = True
        self.try_copy_range = True

    def copy(self, source: str, target: Path) -> bool:
        """Copy ``source`` to the new file ``target``; True if it was reflinked."""
        with open(source, "rb") as src:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                if self.try_reflink:
                    try:
                        fcntl.ioctl(fd, FICLONE, src.fileno())
                        return True
                    except OSError as exc:
                        if exc.errno not in _UNSUPPORTED:
                            raise
                        self.try_reflink = False
                size = os.fstat(src.fileno()).st_size
                if self.try_copy_range and self._copy_range(src.fileno(), fd, size):
                    return False
                src.seek(0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                offset = 0
                while offset < size:
                    sent = os.sendfile(fd, src.fileno(), offset, size - offset)
                    if sent == 0:
                        raise ExportError(f"{source} is shorter than its recorded size")
                    offset += sent
                return False
            finally:
                os.close(fd)

    def _copy_range(self, src: int, dst: int, size: int) -> bool:
        copied = 0
        try:
            while copied < size:
                count = os.copy_file_range(src, dst, size - copied)
                if count == 0:
                    break
                copied += count
        except OSError as exc:
            if copied or exc.errno not in _UNSUPPORTED:
                raise
            self.try_copy_range = False
            return False
        return copied == size


def _write_letterboxed(task: tuple[list[tuple[ExportRow, str]], int]) -> tuple[int, int]:
    """Write each image as a letterboxed PNG; (how many, how many bytes)."""
    pairs, size = task
    written = 0
    for row, target in pairs:
        _, data = _payload(row, size)
        with open(target, "wb") as handle:
            handle.write(data)
        written += len(data)
    return len(pairs), written


def dataset_export(
    *,
    version: DatasetVersion,
    out: str | Path,
    format: str,
    letterbox: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    hard_links: bool = False,
) -> ExportResult:
    """Write the version to ``out``. Precondition: the version is built (``ready``).

    A folder export copies (or reflinks) its files; ``hard_links`` links them to the originals
    instead, which costs no space but lets anyone running as root change an original by
    writing to the export."""
    if format not in EXPORT_FORMATS:
        raise ExportError(f"Unknown export format {format!r}; use {' or '.join(EXPORT_FORMATS)}.")
    if version.status != DatasetStatus.READY:
        raise ExportError(f"Dataset version {version.name!r} is not built ({version.status}).")
    if shard_size < 1:
        raise ExportError("The shard size must be at least 1.")
    if letterbox is not None and not 16 <= letterbox <= 4096:
        raise ExportError("The letterbox size must be between 16 and 4096 pixels.")
    out = Path(out)
    report = progress or (lambda done, total: None)
    workers = max(1, workers or os.cpu_count() or 1)
    started = time.monotonic()
    rows = export_rows(version)
    _check_target(out)
    for leftover in stale_staging_folders(out):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = _staging_folder(out)
    try:
        result = _export_into(
            version, rows, staging, format, letterbox, shard_size, workers, report, hard_links
        )
        _put_in_place(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno in _NO_SPACE:
            raise ExportError(
                f"No space left on the device holding {out.parent} ({exc.strerror or exc}) "
                f"while exporting {version.name!r}; the partial export was removed. Free "
                "some space or export elsewhere, then export again."
            ) from exc
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out = str(out)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _export_into(
    version: DatasetVersion,
    rows: list[ExportRow],
    out: Path,
    format: str,
    letterbox: int | None,
    shard_size: int,
    workers: int,
    report: Callable[[int, int], None],
    hard_links: bool = False,
) -> ExportResult:
    """Write the whole export into the empty folder ``out``."""
    result = ExportResult(format=format, out=str(out), images=len(rows))
    report(0, len(rows))
    files: dict[str, str] = {}
    if format == "webdataset":
        tasks = _shard_tasks(rows, out, shard_size, letterbox)
        for task in tasks:
            for row in task.rows:
                files[row.sha256] = os.path.basename(task.path)
        done = 0
        with _pool(min(workers, max(1, len(tasks)))) as pool:
            for _path, count, size in pool.imap_unordered(_write_shard, tasks):
                done += count
                result.bytes_written += size
                report(done, len(rows))
        result.files = [os.path.basename(task.path) for task in tasks]
        result.letterboxed = len(rows) if letterbox else 0
    else:
        _export_folder(rows, out, letterbox, workers, result, files, report, hard_links)
    _write_metadata(
        version, rows, out, files, format=format, letterbox=letterbox, shard_size=shard_size
    )
    return result


def _export_folder(
    rows: list[ExportRow],
    out: Path,
    letterbox: int | None,
    workers: int,
    result: ExportResult,
    files: dict[str, str],
    report: Callable[[int, int], None],
    hard_links: bool = False,
) -> None:
    targets: list[tuple[ExportRow, Path]] = []
    for row in rows:
        folder = out / row.split / safe_folder_name(row.class_name)
        extension = "png" if letterbox else row.extension
        target = folder / safe_member_name(row.sha256, extension)
        files[row.sha256] = str(target.relative_to(out))
        targets.append((row, target))
    for folder in sorted({target.parent for _, target in targets}):
        folder.mkdir(parents=True, exist_ok=True)
    if letterbox:
        chunks = [
            ([(row, str(target)) for row, target in targets[start : start + 200]], letterbox)
            for start in range(0, len(targets), 200)
        ]
        done = 0
        with _pool(min(workers, max(1, len(chunks)))) as pool:
            for count, written in pool.imap_unordered(_write_letterboxed, chunks):
                done += count
                result.letterboxed += count
                result.bytes_written += written
                report(done, len(rows))
        return
    root = _local_path("")
    if root is not None and not hard_links:
        _copy_in_parallel(root, targets, workers, result, report)
        return
    for done, (row, target) in enumerate(targets, start=1):
        source = _local_path(row.storage_name)
        if source is None:
            with default_storage.open(row.storage_name, "rb") as stream, open(target, "wb") as f:
                shutil.copyfileobj(stream, f)
            result.copied += 1
        elif _link_or_copy(source, target):
            result.linked += 1
        else:
            result.copied += 1
        if done % 1000 == 0:
            report(done, len(rows))
    report(len(rows), len(rows))


_COPY_CHUNK = 500


def _copy_files(pairs: list[tuple[str, str]]) -> tuple[int, int]:
    """Copy each ``(original, target)``; (how many were copied, how many reflinked)."""
    copier = FileCopier()
    reflinked = sum(copier.copy(source, Path(target)) for source, target in pairs)
    return len(pairs) - reflinked, reflinked


def _copy_in_parallel(
    root: str,
    targets: list[tuple[ExportRow, Path]],
    workers: int,
    result: ExportResult,
    report: Callable[[int, int], None],
) -> None:
    """Copies (or reflinks) of local originals, chunks of them spread over the worker pool:
    a copy is the kernel moving bytes, and more than one core moves them faster."""
    chunks = [
        [
            (os.path.join(root, row.storage_name), str(target))
            for row, target in targets[start : start + _COPY_CHUNK]
        ]
        for start in range(0, len(targets), _COPY_CHUNK)
    ]
    done = 0
    with _pool(min(workers, max(1, len(chunks)))) as pool:
        for copied, reflinked in pool.imap_unordered(_copy_files, chunks):
            result.copied += copied
            result.reflinked += reflinked
            done += copied + reflinked
            report(done, len(targets))
    report(len(targets), len(targets))
