"""Review of near-duplicate groups: the suggested keeper, resolving a group (keep one image,
trash the rest) and dismissing it ("not duplicates").

A group whose members disagree on what they show (different sub-classes, or a bad-image
verdict beside a label) is never resolved blindly: the reviewer says which label the keeper
takes, and each trashed member's event says which label went with it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from curation.models import (
    DuplicateGroup,
    DuplicateMember,
    DuplicateStatus,
    Image,
    ImageStatus,
    LabelReason,
    Source,
    SubClass,
)
from curation.services.images import ImageStateError, image_relabel, image_trash

_SOURCE_RANK: dict[str, int] = {Source.REAL: 2, Source.STAGED: 1, Source.SYNTHETIC: 0}


def keeper_rank(image: Image) -> tuple[float, ...]:
    """Higher is a better keeper: highest resolution, then sharpest (within 10 %, which is
    noise), then real over staged over synthetic, then labelled over unlabelled, then oldest.
    ``image`` needs ``features`` and ``subclass`` loaded."""
    features = getattr(image, "features", None)
    sharpness = features.sharpness if features is not None and features.sharpness else 0.0
    source = image.subclass.source if image.subclass is not None else Source.REAL
    return (
        image.width * image.height,
        math.floor(math.log(sharpness + 1.0) / math.log(1.1)),
        _SOURCE_RANK.get(source, 0),
        1 if image.subclass_id else 0,
        -image.pk,
    )


def suggested_keeper(images: list[Image]) -> Image | None:
    active = [image for image in images if image.status == ImageStatus.ACTIVE]
    return max(active, key=keeper_rank) if active else None


class DuplicateReviewError(Exception):
    """The review decision does not apply to the group as it is now."""


# The label choice that keeps the keeper's own sub-class (or none), whatever the others carry.
KEEPERS_OWN: Final = "keeper"
LabelChoice = int | Literal["keeper"]


def label_name(subclass: SubClass | None) -> str:
    """``Class / sub-class`` (``subclass`` with its class loaded), or "unlabelled"."""
    if subclass is None:
        return "unlabelled"
    return f"{subclass.label_class.name} / {subclass.name}"


def bad_reason_of(image: Image) -> str:
    """The SME's bad-image verdict on ``image`` in words ("Blurry"), or "" without one.
    ``image`` needs ``bad_verdict`` loaded (``select_related``), else this reads it."""
    verdict = getattr(image, "bad_verdict", None)
    return verdict.get_reason_display() if verdict is not None else ""


@dataclass(frozen=True)
class LabelOption:
    """One sub-class the active members of a group carry, and which of them carry it."""

    subclass: SubClass
    image_ids: tuple[int, ...]

    @property
    def name(self) -> str:
        return label_name(self.subclass)


@dataclass(frozen=True)
class LabelConflict:
    """Active members of one group that disagree on what they show: two or more sub-classes,
    or a bad-image verdict on some of the labelled or judged members and not on others.
    Unlabelled members without a verdict say nothing and never make a conflict."""

    options: tuple[LabelOption, ...]  # most-carried first, then by sub-class id
    bad: tuple[tuple[int, str], ...]  # (image id, verdict in words) of members judged bad

    def option_of(self, image_id: int) -> int | None:
        """The 1-based place of the option ``image_id`` carries, for keys and marks."""
        for index, option in enumerate(self.options, start=1):
            if image_id in option.image_ids:
                return index
        return None

    def describe(self) -> str:
        """The conflicting labels in words: "Digit 1 / default (images 3, 5); Digit 8 /
        default (image 7); bad-image verdict on image 7 (Blurry)"."""
        parts = [f"{option.name} ({_images(option.image_ids)})" for option in self.options]
        parts += [f"bad-image verdict on image {pk} ({reason})" for pk, reason in self.bad]
        return "; ".join(parts)


def _images(ids: Iterable[int]) -> str:
    ids = list(ids)
    return ("image " if len(ids) == 1 else "images ") + ", ".join(str(pk) for pk in ids)


def label_conflict(images: Iterable[Image]) -> LabelConflict | None:
    """How the active ``images`` of a group disagree on their label, or None when they agree.
    ``images`` need ``subclass__label_class`` and ``bad_verdict`` loaded; no query then."""
    carriers: dict[int, list[Image]] = {}
    bad: list[tuple[int, str]] = []
    states: set[tuple[int | None, str]] = set()
    for image in images:
        if image.status != ImageStatus.ACTIVE:
            continue
        reason = bad_reason_of(image)
        if image.subclass_id is None and not reason:
            continue
        states.add((image.subclass_id, reason))
        if image.subclass_id is not None:
            carriers.setdefault(image.subclass_id, []).append(image)
        if reason:
            bad.append((image.pk, reason))
    if len(states) < 2:
        return None
    options = sorted(
        (
            LabelOption(
                subclass=carrying[0].subclass,  # type: ignore[arg-type]
                image_ids=tuple(sorted(image.pk for image in carrying)),
            )
            for carrying in carriers.values()
        ),
        key=lambda option: (-len(option.image_ids), option.subclass.pk),
    )
    return LabelConflict(options=tuple(options), bad=tuple(sorted(bad)))


class LabelChoiceRequired(DuplicateReviewError):
    """The group's members disagree on the label and the resolve named no label choice."""

    def __init__(self, group: DuplicateGroup, conflict: LabelConflict) -> None:
        self.conflict = conflict
        super().__init__(
            f"The images of duplicate group {group.pk} disagree on the label: "
            f"{conflict.describe()}. Choose the label the keeper takes."
        )


class LabelChoiceInvalid(DuplicateReviewError):
    """The label choice is not one the group offers."""


def _open_group(group_id: int) -> DuplicateGroup:
    group = DuplicateGroup.objects.select_for_update().get(pk=group_id)
    if group.status != DuplicateStatus.OPEN:
        raise DuplicateReviewError(
            f"Duplicate group {group.pk} was already reviewed ({group.get_status_display()})."
        )
    return group


def _close(group: DuplicateGroup, *, status: str, actor: User | None, keeper: Image | None) -> None:
    group.status = status
    group.keeper = keeper
    group.resolved_at = timezone.now()
    group.resolved_by = actor
    group.save(update_fields=["status", "keeper", "resolved_at", "resolved_by"])
    DuplicateMember.objects.filter(group=group).update(is_open=False)


def _chosen_label(
    *,
    group: DuplicateGroup,
    keeper: Image,
    others: list[Image],
    conflict: LabelConflict | None,
    label: LabelChoice | None,
) -> tuple[SubClass | None, str]:
    """The sub-class the keeper ends with, and the note of its relabel event."""
    if label == KEEPERS_OWN:
        return keeper.subclass, ""
    if label is not None:
        carried = {i.subclass_id: i.subclass for i in (keeper, *others) if i.subclass_id}
        if label not in carried:
            offered = ", ".join(f"{pk} ({label_name(sub)})" for pk, sub in carried.items())
            raise LabelChoiceInvalid(
                f"Sub-class {label} is not the label of an active image in duplicate group "
                f"{group.pk}; choose "
                + (f"one of {offered}, or " if offered else "")
                + f'"{KEEPERS_OWN}" for the keeper\'s own label.'
            )
        return carried[label], f"label chosen in review of duplicate group {group.pk}"
    if conflict is not None:
        raise LabelChoiceRequired(group, conflict)
    if keeper.subclass_id is not None:
        return keeper.subclass, ""
    # The labelled members agree (no conflict): an unlabelled keeper takes their label.
    labelled = sorted((i for i in others if i.subclass_id), key=keeper_rank, reverse=True)
    if not labelled:
        return None, ""
    return labelled[0].subclass, f"label of duplicate image {labelled[0].pk}"


def _trash_note(image: Image, *, keeper: Image, keeper_bad: str) -> str:
    """Whose duplicate ``image`` is, and what goes with it: its label ("label Digit 8 /
    default dropped", or "same label") and its bad-image verdict."""
    note = f"duplicate of image {keeper.pk}"
    if image.subclass_id is not None:
        if image.subclass_id == keeper.subclass_id:
            note += f"; same label ({label_name(image.subclass)})"
        else:
            note += (
                f"; label {label_name(image.subclass)} dropped "
                f"(the keeper is {label_name(keeper.subclass)})"
            )
    reason = bad_reason_of(image)
    if reason and reason != keeper_bad:
        note += f"; bad-image verdict ({reason}) not carried to the keeper"
    return note


@transaction.atomic
def duplicate_group_resolve(
    *,
    group_id: int,
    keeper_id: int,
    actor: User | None,
    label: LabelChoice | None = None,
) -> DuplicateGroup:
    """Keep one image of the group and trash the others with reason ``duplicate``; each trash
    event names the keeper and the label that went to the trash with the image.

    ``label`` is the sub-class the keeper ends with (the id of one its active members carry,
    or ``KEEPERS_OWN``); when the keeper's differs it is relabelled with an event, reason
    ``duplicate``. Without a choice, a group whose members disagree on the label (see
    ``label_conflict``) raises ``LabelChoiceRequired`` and nothing changes; one whose members
    agree gives an unlabelled keeper their label. A bad-image verdict judges its own file and
    stays with it: the keeper keeps its own verdict (or none)."""
    group = _open_group(group_id)
    images = list(
        Image.objects.select_for_update(of=("self",))
        .filter(duplicate_members__group=group)
        .select_related("subclass__label_class", "features", "bad_verdict")
        .order_by("pk")
    )
    keeper = next((image for image in images if image.pk == keeper_id), None)
    if keeper is None:
        raise DuplicateReviewError(f"Image {keeper_id} is not in duplicate group {group.pk}.")
    if keeper.status != ImageStatus.ACTIVE:
        raise DuplicateReviewError(f"Image {keeper_id} is in the trash; pick an active image.")
    others = [i for i in images if i.pk != keeper.pk and i.status == ImageStatus.ACTIVE]
    subclass, note = _chosen_label(
        group=group,
        keeper=keeper,
        others=others,
        conflict=label_conflict(images),
        label=label,
    )
    keeper_bad = bad_reason_of(keeper)
    if subclass != keeper.subclass:
        keeper = image_relabel(
            image_id=keeper.pk,
            subclass=subclass,
            actor=actor,
            reason=LabelReason.DUPLICATE,
            expected_version=None,
            note=note,
        )
    for image in others:
        try:
            image_trash(
                image_id=image.pk,
                actor=actor,
                note=_trash_note(image, keeper=keeper, keeper_bad=keeper_bad),
                reason=LabelReason.DUPLICATE,
            )
        except ImageStateError:  # trashed meanwhile by someone else: nothing left to do
            continue
    _close(group, status=DuplicateStatus.RESOLVED, actor=actor, keeper=keeper)
    return group


@transaction.atomic
def duplicate_group_dismiss(*, group_id: int, actor: User | None) -> DuplicateGroup:
    """ "Not duplicates": the group is closed for good, and its images are never grouped with
    one another again."""
    group = _open_group(group_id)
    _close(group, status=DuplicateStatus.DISMISSED, actor=actor, keeper=None)
    return group
