"""Review of near-duplicate groups: the suggested keeper, resolving a group (keep one image,
trash the rest) and dismissing it ("not duplicates")."""

from __future__ import annotations

import math

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


@transaction.atomic
def duplicate_group_resolve(*, group_id: int, keeper_id: int, actor: User | None) -> DuplicateGroup:
    """Keep one image of the group and trash the others with reason ``duplicate`` and a note
    naming the keeper. The keeper takes the label of the best-ranked labelled member when it
    has none (a label event, reason ``duplicate``)."""
    group = _open_group(group_id)
    images = list(
        Image.objects.select_for_update(of=("self",))
        .filter(duplicate_members__group=group)
        .select_related("subclass", "features")
    )
    keeper = next((image for image in images if image.pk == keeper_id), None)
    if keeper is None:
        raise DuplicateReviewError(f"Image {keeper_id} is not in duplicate group {group.pk}.")
    if keeper.status != ImageStatus.ACTIVE:
        raise DuplicateReviewError(f"Image {keeper_id} is in the trash; pick an active image.")
    others = [i for i in images if i.pk != keeper.pk and i.status == ImageStatus.ACTIVE]
    if keeper.subclass_id is None:
        labelled = sorted((i for i in others if i.subclass_id), key=keeper_rank, reverse=True)
        if labelled:
            donor = labelled[0]
            keeper = image_relabel(
                image_id=keeper.pk,
                subclass=donor.subclass,
                actor=actor,
                reason=LabelReason.DUPLICATE,
                expected_version=None,
                note=f"label of duplicate image {donor.pk}",
            )
    for image in others:
        try:
            image_trash(
                image_id=image.pk,
                actor=actor,
                note=f"duplicate of image {keeper.pk}",
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
