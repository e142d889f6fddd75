from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from curation.imaging import DecodedImage, ImageRejected, decode_image
from curation.models import (
    Image,
    ImageStatus,
    ImportBatch,
    ImportItem,
    ImportOutcome,
    LabelEvent,
    LabelReason,
    SubClass,
)
from curation.storage import store_original


@dataclass(frozen=True)
class Inspection:
    """What Loupe learnt from a file's bytes, before anything is stored. Picklable, so a pool of
    processes can inspect while the main process writes."""

    name: str
    sha256: str
    size: int
    decoded: DecodedImage | None
    rejection: str


def file_inspect(*, data: bytes, name: str) -> Inspection:
    size = len(data)
    if size == 0:
        return Inspection(name, "", 0, None, "empty file (zero bytes)")
    max_bytes: int = settings.LOUPE_MAX_IMAGE_BYTES
    if size > max_bytes:
        return Inspection(
            name, "", size, None, f"file is {size:,} bytes; the limit is {max_bytes:,}"
        )
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        decoded = decode_image(io.BytesIO(data))
    except ImageRejected as exc:
        return Inspection(name, sha256, size, None, str(exc))
    return Inspection(name, sha256, size, decoded, "")


@dataclass(frozen=True)
class ImportResult:
    name: str
    outcome: ImportOutcome
    image: Image | None
    reason: str


def _report(batch: ImportBatch | None, result: ImportResult) -> ImportResult:
    if batch is not None:
        ImportItem.objects.create(
            batch=batch,
            name=result.name[:1000],
            outcome=result.outcome,
            image=result.image,
            reason=result.reason[:500],
        )
        counter = {
            ImportOutcome.CREATED: "created_count",
            ImportOutcome.DUPLICATE: "duplicate_count",
            ImportOutcome.REJECTED: "rejected_count",
        }[result.outcome]
        ImportBatch.objects.filter(pk=batch.pk).update(**{counter: F(counter) + 1})
    return result


def _duplicate(name: str, existing: Image) -> ImportResult:
    note = f"same bytes as image {existing.pk}"
    if existing.status == ImageStatus.TRASHED:
        note += " (in the trash)"
    return ImportResult(name, ImportOutcome.DUPLICATE, existing, note)


def image_import(
    *,
    inspection: Inspection,
    content: IO[bytes],
    subclass: SubClass | None,
    actor: User | None,
    batch: ImportBatch | None,
) -> ImportResult:
    """Store one inspected file and record it in the batch's report.

    The original is written first and the row committed after, so a row never points at a
    missing file; a crash in between leaves an orphan file for the sweeper. The same bytes
    again are reported as a duplicate of the existing image, never a second row.
    """
    name = inspection.name
    if inspection.decoded is None:
        with transaction.atomic():
            return _report(
                batch, ImportResult(name, ImportOutcome.REJECTED, None, inspection.rejection)
            )
    existing = Image.objects.filter(sha256=inspection.sha256).first()
    if existing is not None:
        with transaction.atomic():
            return _report(batch, _duplicate(name, existing))

    decoded = inspection.decoded
    store_original(sha256=inspection.sha256, extension=decoded.extension, content=content)
    now = timezone.now()
    try:
        with transaction.atomic():
            image = Image.objects.create(
                sha256=inspection.sha256,
                extension=decoded.extension,
                content_type=decoded.content_type,
                format=decoded.format,
                width=decoded.width,
                height=decoded.height,
                file_size=inspection.size,
                original_filename=_display_name(name),
                subclass=subclass,
                labelled_by=actor if subclass else None,
                labelled_at=now if subclass else None,
                import_batch=batch,
            )
            if subclass is not None:
                SubClass.objects.filter(pk=subclass.pk).update(image_count=F("image_count") + 1)
                LabelEvent.objects.create(
                    image=image,
                    actor=actor,
                    reason=LabelReason.IMPORT,
                    from_subclass=None,
                    to_subclass=subclass,
                    from_status=ImageStatus.ACTIVE,
                    to_status=ImageStatus.ACTIVE,
                )
            return _report(batch, ImportResult(name, ImportOutcome.CREATED, image, ""))
    except IntegrityError:
        # Another import stored the same bytes between our check and our insert.
        existing = Image.objects.get(sha256=inspection.sha256)
        with transaction.atomic():
            return _report(batch, _duplicate(name, existing))


def _display_name(name: str) -> str:
    """The last path component, without control characters; kept as metadata only."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable() and ch not in "\u202e\u202d\u200f")
    return cleaned[:255]


def import_batch_create(
    *, kind: str, name: str, actor: User | None, job_id: int | None = None
) -> ImportBatch:
    return ImportBatch.objects.create(kind=kind, name=name[:500], created_by=actor, job_id=job_id)


class VersionConflict(Exception):
    """The image changed since the caller read it."""

    def __init__(self, image: Image, last_event: LabelEvent | None) -> None:
        self.image = image
        self.last_event = last_event
        who = "someone"
        when = ""
        if last_event is not None:
            who = last_event.actor.username if last_event.actor else "the system"
            when = f" at {last_event.created_at:%Y-%m-%d %H:%M:%S %Z}"
        super().__init__(
            f"Image {image.pk} was changed by {who}{when} (now version {image.version}); "
            "reload it and try again."
        )


class ImageStateError(Exception):
    """The change does not apply to the image in its current state."""


def _locked(image_id: int, expected_version: int | None) -> Image:
    image = Image.objects.select_for_update().get(pk=image_id)
    if expected_version is not None and image.version != expected_version:
        last = (
            LabelEvent.objects.filter(image=image).select_related("actor").order_by("-id").first()
        )
        raise VersionConflict(image, last)
    return image


def _move_count(old: SubClass | int | None, new: SubClass | int | None) -> None:
    old_id = old.pk if isinstance(old, SubClass) else old
    new_id = new.pk if isinstance(new, SubClass) else new
    if old_id == new_id:
        return
    if old_id is not None:
        SubClass.objects.filter(pk=old_id).update(image_count=F("image_count") - 1)
    if new_id is not None:
        SubClass.objects.filter(pk=new_id).update(image_count=F("image_count") + 1)


@transaction.atomic
def image_relabel(
    *,
    image_id: int,
    subclass: SubClass | None,
    actor: User | None,
    reason: str,
    expected_version: int | None,
    note: str = "",
) -> Image:
    """Give the image a sub-class (``None`` sends it back to the inbox).

    ``expected_version`` is the version the caller last saw; a different current version raises
    ``VersionConflict`` so nobody silently overwrites someone else's label.
    """
    image = _locked(image_id, expected_version)
    if image.status != ImageStatus.ACTIVE:
        raise ImageStateError(f"Image {image.pk} is in the trash; restore it before relabelling.")
    old_subclass_id = image.subclass_id
    if old_subclass_id == (subclass.pk if subclass else None):
        return image
    LabelEvent.objects.create(
        image=image,
        actor=actor,
        reason=reason,
        note=note[:500],
        from_subclass_id=old_subclass_id,
        to_subclass=subclass,
        from_status=image.status,
        to_status=image.status,
    )
    _move_count(old_subclass_id, subclass)
    image.subclass = subclass
    image.labelled_by = actor if subclass else None
    image.labelled_at = timezone.now() if subclass else None
    image.version += 1
    image.save(update_fields=["subclass", "labelled_by", "labelled_at", "version"])
    return image


@transaction.atomic
def image_trash(
    *,
    image_id: int,
    actor: User | None,
    note: str,
    expected_version: int | None = None,
    reason: str = LabelReason.TRASH,
) -> Image:
    image = _locked(image_id, expected_version)
    if image.status == ImageStatus.TRASHED:
        raise ImageStateError(f"Image {image.pk} is already in the trash.")
    if not note.strip():
        raise ImageStateError("Say why the image goes to the trash.")
    LabelEvent.objects.create(
        image=image,
        actor=actor,
        reason=reason,
        note=note[:500],
        from_subclass_id=image.subclass_id,
        to_subclass_id=image.subclass_id,
        from_status=ImageStatus.ACTIVE,
        to_status=ImageStatus.TRASHED,
    )
    if image.subclass_id is not None:
        SubClass.objects.filter(pk=image.subclass_id).update(image_count=F("image_count") - 1)
    image.status = ImageStatus.TRASHED
    image.trashed_reason = note[:500]
    image.trashed_at = timezone.now()
    image.version += 1
    image.save(update_fields=["status", "trashed_reason", "trashed_at", "version"])
    return image


@transaction.atomic
def image_restore(
    *, image_id: int, actor: User | None, expected_version: int | None = None
) -> Image:
    image = _locked(image_id, expected_version)
    if image.status != ImageStatus.TRASHED:
        raise ImageStateError(f"Image {image.pk} is not in the trash.")
    LabelEvent.objects.create(
        image=image,
        actor=actor,
        reason=LabelReason.RESTORE,
        note=f"trashed because: {image.trashed_reason}"[:500],
        from_subclass_id=image.subclass_id,
        to_subclass_id=image.subclass_id,
        from_status=ImageStatus.TRASHED,
        to_status=ImageStatus.ACTIVE,
    )
    if image.subclass_id is not None:
        SubClass.objects.filter(pk=image.subclass_id).update(image_count=F("image_count") + 1)
    image.status = ImageStatus.ACTIVE
    image.trashed_reason = ""
    image.trashed_at = None
    image.version += 1
    image.save(update_fields=["status", "trashed_reason", "trashed_at", "version"])
    return image


def subclass_counts_rebuild() -> int:
    """Recount every sub-class's active images (after bulk loads that bypass the services)."""
    from django.db.models import Count, Q

    updated = 0
    counts = dict(
        SubClass.objects.annotate(
            n=Count("images", filter=Q(images__status=ImageStatus.ACTIVE))
        ).values_list("pk", "n")
    )
    for pk, n in counts.items():
        updated += SubClass.objects.filter(pk=pk).exclude(image_count=n).update(image_count=n)
    return updated
