"""Derivatives made by the worker after import, and the orphan sweeper."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from curation.imaging import ImageRejected, make_rendition, make_thumbnail, needs_rendition
from curation.models import Image, Job, JobStatus
from curation.storage import (
    ORIGINALS_PREFIX,
    RENDITIONS_PREFIX,
    THUMBNAILS_PREFIX,
    rendition_name,
)

logger = logging.getLogger(__name__)


ARCHIVES_PREFIX = "imports"


def thumbnails_make(*, image_ids: list[int]) -> int:
    """Make the missing thumbnails among ``image_ids``, and for a stored format browsers cannot
    display (TIFF) the full-size rendition pages show instead; ``thumbnail_ready`` means both
    exist. Idempotent: images that have them are skipped, and writing one twice writes the
    same bytes."""
    size: int = settings.LOUPE_THUMBNAIL_SIZE
    made = 0
    pending = Image.objects.filter(pk__in=image_ids, thumbnail_ready=False).only(
        "pk", "sha256", "extension"
    )
    for image in pending:
        try:
            with default_storage.open(image.storage_name, "rb") as original:
                data = make_thumbnail(original, size=size)
                if needs_rendition(image.extension):
                    original.seek(0)
                    rendition = make_rendition(original)
                    default_storage.save(rendition_name(image.sha256), ContentFile(rendition))
        except FileNotFoundError:
            logger.error("Image %s: original %s is missing", image.pk, image.storage_name)
            continue
        except ImageRejected as exc:
            logger.error("Image %s: cannot make a thumbnail: %s", image.pk, exc)
            continue
        default_storage.save(image.thumbnail_name, ContentFile(data))
        made += Image.objects.filter(pk=image.pk, thumbnail_ready=False).update(
            thumbnail_ready=True
        )
    return made


def images_needing_thumbnails(*, limit: int) -> list[int]:
    return list(
        Image.objects.filter(thumbnail_ready=False)
        .order_by("id")
        .values_list("pk", flat=True)[:limit]
    )


def chunked(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


@dataclass
class SweepResult:
    scanned: int = 0
    removed: list[str] = field(default_factory=list)
    kept_young: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "scanned": self.scanned,
            "removed": len(self.removed),
            "kept_young": self.kept_young,
            "removed_names": self.removed[:100],
        }


def _walk(prefix: str) -> list[tuple[str, list[str]]]:
    """(directory, file names) for each leaf directory ``prefix/xx/yy``."""
    leaves = []
    try:
        top_dirs, _ = default_storage.listdir(prefix)
    except FileNotFoundError:
        return []
    for a in sorted(top_dirs):
        sub_dirs, _ = default_storage.listdir(f"{prefix}/{a}")
        for b in sorted(sub_dirs):
            directory = f"{prefix}/{a}/{b}"
            _, files = default_storage.listdir(directory)
            leaves.append((directory, files))
    return leaves


def _is_old(name: str, grace_seconds: int, now: float) -> bool:
    try:
        modified = default_storage.get_modified_time(name).timestamp()
    except (NotImplementedError, OSError):
        return True
    return now - modified > grace_seconds


def orphans_sweep(*, grace_seconds: int | None = None, dry_run: bool = False) -> SweepResult:
    """Remove stored originals, thumbnails and renditions that no image row references.

    A file is removed only when no row, active or trashed, has its hash, and it is older than
    the grace period: a younger one may belong to an import whose row is not committed yet.
    Works one leaf directory at a time, so memory stays flat on a million files.
    """
    if grace_seconds is None:
        grace_seconds = settings.LOUPE_ORPHAN_GRACE_SECONDS
    result = SweepResult()
    now = time.time()
    for prefix in (ORIGINALS_PREFIX, THUMBNAILS_PREFIX, RENDITIONS_PREFIX):
        for directory, files in _walk(prefix):
            by_hash: dict[str, list[str]] = {}
            for filename in files:
                result.scanned += 1
                stem = filename.split(".", 1)[0] if not filename.startswith(".") else filename
                by_hash.setdefault(stem, []).append(filename)
            known = set(
                Image.objects.filter(sha256__in=list(by_hash)).values_list("sha256", flat=True)
            )
            for stem, filenames in by_hash.items():
                if stem in known:
                    continue
                for filename in filenames:
                    name = f"{directory}/{filename}"
                    if not _is_old(name, grace_seconds, now):
                        result.kept_young += 1
                        continue
                    result.removed.append(name)
                    if not dry_run:
                        default_storage.delete(name)
    _sweep_archives(result, grace_seconds=grace_seconds, now=now, dry_run=dry_run)
    return result


def _sweep_archives(result: SweepResult, *, grace_seconds: int, now: float, dry_run: bool) -> None:
    """Uploaded zip archives outlive their job only when the upload failed half-way or the job
    failed for good; keep any that a queued or running job still needs."""
    try:
        _, files = default_storage.listdir(ARCHIVES_PREFIX)
    except FileNotFoundError:
        return
    pending = Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
    needed = {params.get("archive") for params in pending.values_list("params", flat=True)}
    for filename in sorted(files):
        name = f"{ARCHIVES_PREFIX}/{filename}"
        result.scanned += 1
        if name in needed:
            continue
        if not _is_old(name, grace_seconds, now):
            result.kept_young += 1
            continue
        result.removed.append(name)
        if not dry_run:
            default_storage.delete(name)
