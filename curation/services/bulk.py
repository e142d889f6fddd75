"""Bulk actions on images picked in a grid (class page, inbox, trash): label, trash, restore,
add to a benchmark set.

Each goes through the one-image service, so every image gets its own label event (reason
``bulk``) and its own optimistic-concurrency check: an image changed since the user saw it is
left alone and reported, never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.db import transaction

from accounts.models import User
from curation.models import BenchmarkKind, BenchmarkSet, Image, ImageStatus, LabelReason, SubClass
from curation.services.datasets import DatasetError, benchmark_set_add
from curation.services.images import (
    ImageStateError,
    VersionConflict,
    image_relabel,
    image_restore,
    image_trash,
)

# One request names at most this many images: a grid page shows 60, so this only stops a
# crafted request from holding row locks for long.
MAX_SELECTED = 500
CHUNK = 100  # images changed per transaction


class BulkActionError(Exception):
    """The action as a whole cannot run (nothing picked, too many, no reason given)."""


@dataclass(frozen=True)
class Selected:
    """An image picked in a grid, with the version the page showed (None: whatever it is)."""

    image_id: int
    version: int | None = None


@dataclass
class BulkOutcome:
    """What a bulk action did: the images it changed, the ones that changed since the user saw
    them (left alone), and the others it skipped, by reason."""

    changed: list[int] = field(default_factory=list)
    conflicts: list[int] = field(default_factory=list)
    skipped: dict[str, list[int]] = field(default_factory=dict)

    def skip(self, image_id: int, reason: str) -> None:
        self.skipped.setdefault(reason, []).append(image_id)

    def skipped_text(self) -> str:
        """e.g. "3 already there, 1 in the trash"."""
        return ", ".join(f"{len(ids)} {reason}" for reason, ids in self.skipped.items())

    def summary(self, done: str) -> str:
        """``done`` names the change, e.g. "Labelled as Robin / default"."""
        count = len(self.changed)
        text = f"{done}: {count} image{'s' if count != 1 else ''}"
        if self.skipped:
            text += f"; skipped {self.skipped_text()}"
        return text + "."


def selection_checked(selected: Iterable[Selected]) -> list[Selected]:
    """The picked images once each, in id order (row locks always taken in the same order).
    Raises BulkActionError for an empty or oversized selection."""
    unique = sorted({s.image_id: s for s in selected}.values(), key=lambda s: s.image_id)
    if not unique:
        raise BulkActionError("Select at least one image first.")
    if len(unique) > MAX_SELECTED:
        raise BulkActionError(f"Select at most {MAX_SELECTED} images at a time.")
    return unique


def _chunks(items: list[Selected]) -> Iterator[list[Selected]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _each(
    selected: Iterable[Selected],
    outcome: BulkOutcome,
    change: Callable[[Selected, int | None], bool],
    state_reason: str,
) -> BulkOutcome:
    """Apply ``change(item, subclass id as read)`` to each picked image, one transaction per
    chunk. ``change`` returns False when there was nothing to do; a version conflict is
    reported, a state error skips the image with ``state_reason``."""
    for chunk in _chunks(selection_checked(selected)):
        with transaction.atomic():
            current = dict(
                Image.objects.filter(pk__in=[s.image_id for s in chunk]).values_list(
                    "pk", "subclass_id"
                )
            )
            for item in chunk:
                if item.image_id not in current:
                    outcome.skip(item.image_id, "no longer exist")
                    continue
                try:
                    did = change(item, current[item.image_id])
                except VersionConflict:
                    outcome.conflicts.append(item.image_id)
                except ImageStateError:
                    outcome.skip(item.image_id, state_reason)
                else:
                    if did:
                        outcome.changed.append(item.image_id)
    return outcome


def images_bulk_relabel(
    *, selected: Iterable[Selected], subclass: SubClass, actor: User | None, note: str = ""
) -> BulkOutcome:
    """Label every picked image as ``subclass``: one label event each, reason ``bulk``.
    Images already in that sub-class are skipped and counted; trashed ones too."""
    outcome = BulkOutcome()

    def relabel(item: Selected, subclass_id: int | None) -> bool:
        if subclass_id == subclass.pk:
            outcome.skip(item.image_id, "already there")
            return False
        image_relabel(
            image_id=item.image_id,
            subclass=subclass,
            actor=actor,
            reason=LabelReason.BULK,
            expected_version=item.version,
            note=note,
        )
        return True

    return _each(selected, outcome, relabel, "in the trash")


def images_bulk_trash(
    *, selected: Iterable[Selected], note: str, actor: User | None
) -> BulkOutcome:
    """Trash every picked image with ``note`` as the reason: one label event each, reason
    ``bulk``. Raises BulkActionError when ``note`` is blank."""
    note = " ".join(note.split())
    if not note:
        raise BulkActionError("Say why these images go to the trash.")

    def trash(item: Selected, subclass_id: int | None) -> bool:
        image_trash(
            image_id=item.image_id,
            actor=actor,
            note=note,
            expected_version=item.version,
            reason=LabelReason.BULK,
        )
        return True

    return _each(selected, BulkOutcome(), trash, "already in the trash")


def images_bulk_restore(*, selected: Iterable[Selected], actor: User | None) -> BulkOutcome:
    """Restore every picked image to where it was (its sub-class, or the inbox): one label
    event each, reason ``bulk``."""

    def restore(item: Selected, subclass_id: int | None) -> bool:
        image_restore(
            image_id=item.image_id,
            actor=actor,
            expected_version=item.version,
            reason=LabelReason.BULK,
        )
        return True

    return _each(selected, BulkOutcome(), restore, "not in the trash")


def images_bulk_benchmark(
    *, selected: Iterable[Selected], name: str, kind: str, actor: User | None
) -> tuple[BenchmarkSet | None, BulkOutcome]:
    """Add the picked images to the benchmark set named ``name``: its next version holds the
    current members and these (a new set of ``kind`` when there is none by that name).

    Members keep the class they have now, so an image changed since the user saw it is left
    out and reported; trashed images, images already in the set and, except for an
    out-of-scope set, images without a class are skipped. Returns (None, outcome) when
    nothing was left to add.
    """
    picked = selection_checked(selected)
    name = " ".join(name.split())
    if not name:
        raise BulkActionError("Name the benchmark set.")
    outcome = BulkOutcome()
    with transaction.atomic():
        latest = BenchmarkSet.objects.filter(name=name).order_by("-version").first()
        kind = latest.kind if latest is not None else kind
        if kind not in BenchmarkKind.values:
            raise BulkActionError(f"Unknown benchmark kind {kind!r}.")
        members = set(latest.members.values_list("image_id", flat=True)) if latest else set()
        rows = {
            row.pk: row
            for row in Image.objects.select_for_update()
            .filter(pk__in=[s.image_id for s in picked])
            .only("pk", "version", "status", "subclass_id")
        }
        adding = []
        for item in picked:
            image = rows.get(item.image_id)
            if image is None:
                outcome.skip(item.image_id, "no longer exist")
            elif item.version is not None and image.version != item.version:
                outcome.conflicts.append(item.image_id)
            elif image.status != ImageStatus.ACTIVE:
                outcome.skip(item.image_id, "in the trash")
            elif item.image_id in members:
                outcome.skip(item.image_id, "already in the set")
            elif image.subclass_id is None and kind != BenchmarkKind.OUT_OF_SCOPE:
                outcome.skip(
                    item.image_id, "without a class (only an out-of-scope set takes those)"
                )
            else:
                adding.append(item.image_id)
        if not adding:
            return None, outcome
        try:
            benchmark = benchmark_set_add(name=name, kind=kind, image_ids=adding, actor=actor)
        except DatasetError as exc:
            raise BulkActionError(str(exc)) from exc
        outcome.changed.extend(adding)
    return benchmark, outcome
