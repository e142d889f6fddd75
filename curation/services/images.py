from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from config.errors import Conflict
from curation.imaging import DecodedImage, ImageRejected, decode_image
from curation.models import (
    Image,
    ImageStatus,
    ImportBatch,
    ImportItem,
    ImportOutcome,
    LabelEvent,
    LabelReason,
    LibraryCounter,
    SubClass,
)
from curation.storage import storage_sync, store_original


@dataclass(frozen=True)
class Inspection:
    """What Loupe learnt from a file's bytes, before anything is stored. Picklable, so a pool of
    processes can inspect while the main process writes."""

    name: str
    sha256: str
    size: int
    decoded: DecodedImage | None
    rejection: str


def size_rejection(size: int) -> str:
    """Why a file of ``size`` bytes is refused unread, or "" when its size is acceptable."""
    max_bytes: int = settings.LOUPE_MAX_IMAGE_BYTES
    return f"file is {size:,} bytes; the limit is {max_bytes:,}" if size > max_bytes else ""


def file_inspect(*, data: bytes, name: str) -> Inspection:
    size = len(data)
    if size == 0:
        return Inspection(name, "", 0, None, "empty file (zero bytes)")
    too_large = size_rejection(size)
    if too_large:
        return Inspection(name, "", size, None, too_large)
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


@dataclass(frozen=True)
class Pending:
    """An inspected file waiting to be recorded, with the sub-class it goes to (or the inbox).
    For an accepted file, the original must already be stored. ``note`` goes in the report
    line of a created image (why it went where it went)."""

    inspection: Inspection
    subclass: SubClass | None
    note: str = ""


def _duplicate_reason(existing_pk: int, trashed: bool) -> str:
    note = f"same bytes as image {existing_pk}"
    return note + " (in the trash)" if trashed else note


def images_record(
    *, pending: list[Pending], actor: User | None, batch: ImportBatch | None
) -> list[ImportResult]:
    """Record a chunk of inspected files in one transaction: new image rows, their label events,
    the sub-class counters and the batch's per-file report. Returns one result per file, in
    order.

    The same bytes twice (already in the library, or earlier in the chunk) are reported as a
    duplicate of that image, never a second row. If another import commits one of these hashes
    meanwhile, the chunk is retried once, now seeing it as a duplicate.
    """
    if any(p.inspection.decoded is not None for p in pending):
        storage_sync()
    try:
        return _record(pending, actor, batch)
    except IntegrityError:
        return _record(pending, actor, batch)


@transaction.atomic
def _record(
    pending: list[Pending], actor: User | None, batch: ImportBatch | None
) -> list[ImportResult]:
    hashes = {p.inspection.sha256 for p in pending if p.inspection.decoded is not None}
    existing = {
        image.sha256: image
        for image in Image.objects.filter(sha256__in=hashes).only("pk", "sha256", "status")
    }
    now = timezone.now()
    new_images: dict[str, Image] = {}
    plan: list[tuple[str, ImportOutcome, str, str]] = []  # name, outcome, sha256, reason
    for entry in pending:
        inspection = entry.inspection
        if inspection.decoded is None:
            plan.append((inspection.name, ImportOutcome.REJECTED, "", inspection.rejection))
            continue
        sha = inspection.sha256
        if sha in existing:
            known = existing[sha]
            reason = _duplicate_reason(known.pk, known.status == ImageStatus.TRASHED)
            plan.append((inspection.name, ImportOutcome.DUPLICATE, sha, reason))
            continue
        if sha in new_images:
            plan.append((inspection.name, ImportOutcome.DUPLICATE, sha, ""))
            continue
        decoded = inspection.decoded
        subclass = entry.subclass
        new_images[sha] = Image(
            sha256=sha,
            extension=decoded.extension,
            content_type=decoded.content_type,
            format=decoded.format,
            width=decoded.width,
            height=decoded.height,
            file_size=inspection.size,
            original_filename=_display_name(inspection.name),
            subclass=subclass,
            labelled_by=actor if subclass else None,
            labelled_at=now if subclass else None,
            import_batch=batch,
        )
        plan.append((inspection.name, ImportOutcome.CREATED, sha, entry.note))

    created = Image.objects.bulk_create(list(new_images.values()))
    by_sha = {**existing, **{image.sha256: image for image in created}}
    LabelEvent.objects.bulk_create(
        LabelEvent(
            image=image,
            actor=actor,
            reason=LabelReason.IMPORT,
            to_subclass=image.subclass,
            from_status=ImageStatus.ACTIVE,
            to_status=ImageStatus.ACTIVE,
        )
        for image in created
        if image.subclass is not None
    )
    _inbox_moved(sum(1 for image in created if image.subclass_id is None))
    per_subclass = Counter(image.subclass_id for image in created if image.subclass_id)
    for subclass_id, n in per_subclass.items():
        SubClass.objects.filter(pk=subclass_id).update(image_count=F("image_count") + n)

    results = []
    for name, outcome, sha, reason in plan:
        image = by_sha.get(sha)
        if outcome == ImportOutcome.DUPLICATE and not reason and image is not None:
            reason = _duplicate_reason(image.pk, False) + " (earlier in this import)"
        results.append(ImportResult(name, outcome, image, reason))
    if batch is not None:
        ImportItem.objects.bulk_create(
            ImportItem(
                batch=batch,
                name=r.name[:1000],
                outcome=r.outcome,
                image=r.image,
                reason=r.reason[:500],
            )
            for r in results
        )
        tally = Counter(r.outcome for r in results)
        ImportBatch.objects.filter(pk=batch.pk).update(
            created_count=F("created_count") + tally[ImportOutcome.CREATED],
            duplicate_count=F("duplicate_count") + tally[ImportOutcome.DUPLICATE],
            rejected_count=F("rejected_count") + tally[ImportOutcome.REJECTED],
        )
    return results


def inspection_store(*, inspection: Inspection, content: IO[bytes]) -> None:
    """Store the original of an accepted file (content addressed: storing twice is harmless).
    Must run before the file's row is recorded."""
    if inspection.decoded is not None:
        store_original(
            sha256=inspection.sha256, extension=inspection.decoded.extension, content=content
        )


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
    if (
        inspection.decoded is not None
        and not Image.objects.filter(sha256=inspection.sha256).exists()
    ):
        inspection_store(inspection=inspection, content=content)
    return images_record(pending=[Pending(inspection, subclass)], actor=actor, batch=batch)[0]


def _display_name(name: str) -> str:
    """The last path component, without control characters; kept as metadata only."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable() and ch not in "\u202e\u202d\u200f")
    return cleaned[:255]


def import_batch_create(
    *, kind: str, name: str, actor: User | None, job_id: int | None = None
) -> ImportBatch:
    return ImportBatch.objects.create(kind=kind, name=name[:500], created_by=actor, job_id=job_id)


def _inbox_moved(delta: int) -> None:
    """Adjust the inbox counter; call inside the transaction that makes the change."""
    if delta:
        LibraryCounter.objects.filter(name=LibraryCounter.INBOX).update(value=F("value") + delta)


def _inbox_delta(old_subclass_id: int | None, new: SubClass | None) -> int:
    if old_subclass_id is None and new is not None:
        return -1
    if old_subclass_id is not None and new is None:
        return 1
    return 0


def inbox_count() -> int:
    value = (
        LibraryCounter.objects.filter(name=LibraryCounter.INBOX)
        .values_list("value", flat=True)
        .first()
    )
    return int(value or 0)


class VersionConflict(Conflict):
    """The image changed since the caller read it. ``changed_by`` and ``changed_at`` name the
    change (from ``last_event``) for callers that word their own message."""

    def __init__(self, image: Image, last_event: LabelEvent | None) -> None:
        self.image = image
        self.last_event = last_event
        self.changed_by = "someone"
        self.changed_at = ""
        if last_event is not None:
            self.changed_by = last_event.actor.username if last_event.actor else "the system"
            self.changed_at = f"{last_event.created_at:%Y-%m-%d %H:%M:%S %Z}"
        when = f" at {self.changed_at}" if self.changed_at else ""
        super().__init__(
            f"Image {image.pk} was changed by {self.changed_by}{when} "
            f"(now version {image.version}); reload it and try again."
        )

    def api_body(self) -> dict[str, object]:
        last = self.last_event
        return {
            "detail": str(self),
            "current_version": self.image.version,
            "changed_by": (last.actor.username if last and last.actor else None),
            "changed_at": (last.created_at.isoformat() if last else None),
        }


class ImageStateError(Conflict):
    """The change does not apply to the image in its current state."""


def _last_change(image: Image) -> LabelEvent | None:
    """The newest event that changed the image's sub-class or status: a confirmation leaves the
    version alone, so it is never the change a conflict names."""
    return (
        LabelEvent.objects.filter(image=image)
        .exclude(from_subclass_id=F("to_subclass_id"), from_status=F("to_status"))
        .select_related("actor")
        .order_by("-id")
        .first()
    )


def _locked(image_id: int, expected_version: int | None) -> Image:
    image = Image.objects.select_for_update().get(pk=image_id)
    if expected_version is not None and image.version != expected_version:
        raise VersionConflict(image, _last_change(image))
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


@dataclass(frozen=True)
class Relabelled:
    image: Image
    event: LabelEvent | None  # None when the image already had that sub-class
    previous_subclass_id: int | None


@transaction.atomic
def image_relabel_recorded(
    *,
    image_id: int,
    subclass: SubClass | None,
    actor: User | None,
    reason: str,
    expected_version: int | None,
    note: str = "",
) -> Relabelled:
    """``image_relabel``, also returning the label event it wrote and the previous sub-class,
    for callers that keep their own record of the change (the labelling page's undo)."""
    image = _locked(image_id, expected_version)
    if image.status != ImageStatus.ACTIVE:
        raise ImageStateError(f"Image {image.pk} is in the trash; restore it before relabelling.")
    old_subclass_id = image.subclass_id
    if old_subclass_id == (subclass.pk if subclass else None):
        return Relabelled(image, None, old_subclass_id)
    event = LabelEvent.objects.create(
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
    _inbox_moved(_inbox_delta(old_subclass_id, subclass))
    image.subclass = subclass
    image.labelled_by = actor if subclass else None
    image.labelled_at = timezone.now() if subclass else None
    image.version += 1
    image.save(update_fields=["subclass", "labelled_by", "labelled_at", "version"])
    return Relabelled(image, event, old_subclass_id)


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
    return image_relabel_recorded(
        image_id=image_id,
        subclass=subclass,
        actor=actor,
        reason=reason,
        expected_version=expected_version,
        note=note,
    ).image


@transaction.atomic
def image_label_confirm(
    *,
    image_id: int,
    actor: User | None,
    reason: str,
    expected_version: int | None,
    note: str = "",
) -> LabelEvent:
    """Record that ``actor`` looked at the image's label and found it right: a label event from
    the sub-class to itself. The label does not change, so neither does the version; but a
    label that changed since the caller saw it (``expected_version``) raises
    ``VersionConflict``, so nobody confirms a label they never saw."""
    image = _locked(image_id, expected_version)
    if image.status != ImageStatus.ACTIVE:
        raise ImageStateError(
            f"Image {image.pk} is in the trash; restore it before confirming its label."
        )
    return LabelEvent.objects.create(
        image=image,
        actor=actor,
        reason=reason,
        note=note[:500],
        from_subclass_id=image.subclass_id,
        to_subclass_id=image.subclass_id,
        from_status=image.status,
        to_status=image.status,
    )


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
    else:
        _inbox_moved(-1)
    image.status = ImageStatus.TRASHED
    image.trashed_reason = note[:500]
    image.trashed_at = timezone.now()
    image.version += 1
    image.save(update_fields=["status", "trashed_reason", "trashed_at", "version"])
    return image


@transaction.atomic
def image_restore(
    *,
    image_id: int,
    actor: User | None,
    expected_version: int | None = None,
    reason: str = LabelReason.RESTORE,
) -> Image:
    image = _locked(image_id, expected_version)
    if image.status != ImageStatus.TRASHED:
        raise ImageStateError(f"Image {image.pk} is not in the trash.")
    LabelEvent.objects.create(
        image=image,
        actor=actor,
        reason=reason,
        note=f"trashed because: {image.trashed_reason}"[:500],
        from_subclass_id=image.subclass_id,
        to_subclass_id=image.subclass_id,
        from_status=ImageStatus.TRASHED,
        to_status=ImageStatus.ACTIVE,
    )
    if image.subclass_id is not None:
        SubClass.objects.filter(pk=image.subclass_id).update(image_count=F("image_count") + 1)
    else:
        _inbox_moved(1)
    image.status = ImageStatus.ACTIVE
    image.trashed_reason = ""
    image.trashed_at = None
    image.version += 1
    image.save(update_fields=["status", "trashed_reason", "trashed_at", "version"])
    return image


def subclass_counts_rebuild() -> int:
    """Recount every sub-class's active images and the inbox (after bulk loads that bypass the
    services)."""
    inbox = Image.objects.filter(subclass__isnull=True, status=ImageStatus.ACTIVE).count()
    LibraryCounter.objects.update_or_create(name=LibraryCounter.INBOX, defaults={"value": inbox})
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
