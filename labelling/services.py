"""Writes made from the labelling workspace: claims, labels, bad-image verdicts, undo."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from curation.models import (
    BadReason,
    BadVerdict,
    ClassKind,
    Image,
    ImageStatus,
    LabelClass,
    LabelReason,
    SavedFilter,
    SubClass,
)
from curation.services.images import image_relabel, image_relabel_recorded
from labelling.models import ActionKind, Claim, LabellingAction, OpinionStatus, SecondOpinion
from labelling.queues import claimed_by_someone_else


class ClaimConflict(Exception):
    """Another SME holds the image."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        super().__init__(
            f"Image {claim.image_id} is being labelled by {claim.user.username} until "
            f"{timezone.localtime(claim.expires_at):%H:%M:%S}; it was left alone."
        )


class NothingToUndo(Exception):
    pass


def _claim_seconds() -> int:
    return int(getattr(settings, "LOUPE_CLAIM_SECONDS", 600))


def claims_take(*, user: User, image_ids: list[int]) -> None:
    """Claim images for ``user``: they leave other SMEs' queues until the claim expires.

    Pass only images nobody else holds a live claim on (the queues never offer those, and undo
    checks first).
    """
    if not image_ids:
        return
    expires = timezone.now() + timedelta(seconds=_claim_seconds())
    # One upsert. The queue never offers an image someone else holds a live claim on, so this
    # only renews the user's own claims or takes over expired ones; two SMEs racing for the same
    # image both see it, and the second label gets a version conflict instead of overwriting.
    Claim.objects.bulk_create(
        [Claim(image_id=i, user=user, expires_at=expires) for i in image_ids],
        update_conflicts=True,
        unique_fields=["image"],
        update_fields=["user", "expires_at"],
    )


def _release(user: User, image_id: int) -> None:
    Claim.objects.filter(image_id=image_id, user=user).delete()


def _guard(user: User, image_id: int) -> None:
    claim = claimed_by_someone_else(image_id=image_id, user=user)
    if claim is not None:
        raise ClaimConflict(claim)


def holding_subclass(*, label_class: LabelClass | None = None) -> SubClass:
    """The default sub-class of the given holding class, or of the first holding class."""
    holding = LabelClass.objects.filter(kind=ClassKind.HOLDING)
    if label_class is not None:
        holding = holding.filter(pk=label_class.pk)
    target = holding.order_by("name").first()
    if target is None:
        raise LookupError("There is no holding class (such as 'Unknown'); a reviewer can add one.")
    return SubClass.objects.get(label_class=target, is_default=True)


@transaction.atomic
def label_image(
    *,
    user: User,
    image_id: int,
    subclass: SubClass,
    expected_version: int,
    kind: str = ActionKind.LABEL,
) -> LabellingAction:
    """Label (or send to a holding class) an image shown on the labelling page."""
    _guard(user, image_id)
    change = image_relabel_recorded(
        image_id=image_id,
        subclass=subclass,
        actor=user,
        reason=LabelReason.LABELLING,
        expected_version=expected_version,
    )
    _release(user, image_id)
    return LabellingAction.objects.create(
        user=user,
        image=change.image,
        kind=kind,
        label_event=change.event,
        previous_subclass_id=change.previous_subclass_id,
    )


@transaction.atomic
def mark_bad(*, user: User, image_id: int, reason: str, expected_version: int) -> LabellingAction:
    """Record that the image fails the labelling standards. It stays in the library."""
    if reason not in BadReason.values:
        raise ValueError(f"Unknown bad-image reason {reason!r}.")
    _guard(user, image_id)
    image = Image.objects.select_for_update().get(pk=image_id)
    if image.version != expected_version:
        from curation.models import LabelEvent
        from curation.services.images import VersionConflict

        raise VersionConflict(image, LabelEvent.objects.filter(image=image).order_by("-id").first())
    if image.status != ImageStatus.ACTIVE:
        raise ValueError(f"Image {image.pk} is in the trash.")
    existing = BadVerdict.objects.filter(image=image).first()
    previous_reason = existing.reason if existing else ""
    BadVerdict.objects.update_or_create(image=image, defaults={"reason": reason, "actor": user})
    _release(user, image_id)
    return LabellingAction.objects.create(
        user=user,
        image=image,
        kind=ActionKind.BAD,
        bad_reason=reason,
        previous_bad_reason=previous_reason,
        previous_subclass_id=image.subclass_id,
    )


def skip_image(*, user: User, image_id: int) -> LabellingAction:
    """Pass on an image: the claim is released so another SME may take it."""
    if not Image.objects.filter(pk=image_id).exists():
        raise Image.DoesNotExist(f"No image {image_id}.")
    _release(user, image_id)
    return LabellingAction.objects.create(user=user, image_id=image_id, kind=ActionKind.SKIP)


@transaction.atomic
def undo_last(*, user: User) -> LabellingAction:
    """Undo the user's most recent labelling action, as a new label event (never by erasing
    one). Returns the undone action; its image is claimed again for the user."""
    action = (
        LabellingAction.objects.select_for_update()
        .filter(user=user, undone_at__isnull=True)
        .order_by("-id")
        .first()
    )
    if action is None:
        raise NothingToUndo("Nothing to undo.")
    _guard(user, action.image_id)
    if action.kind in (ActionKind.LABEL, ActionKind.UNKNOWN) and action.label_event_id:
        image = Image.objects.get(pk=action.image_id)
        image_relabel(
            image_id=image.pk,
            subclass=action.previous_subclass,
            actor=user,
            reason=LabelReason.UNDO,
            expected_version=image.version,
            note=f"undo of label event {action.label_event_id}",
        )
    elif action.kind == ActionKind.OPINION and action.opinion_id:
        # An opinion is not a label: withdrawing it leaves the image's history untouched.
        SecondOpinion.objects.filter(pk=action.opinion_id, status__in=["agreed", "open"]).delete()
    elif action.kind == ActionKind.BAD:
        if action.previous_bad_reason:
            BadVerdict.objects.filter(image_id=action.image_id).update(
                reason=action.previous_bad_reason
            )
        else:
            BadVerdict.objects.filter(image_id=action.image_id).delete()
    action.undone_at = timezone.now()
    action.save(update_fields=["undone_at"])
    claims_take(user=user, image_ids=[action.image_id])
    return action


@transaction.atomic
def second_opinion_give(
    *,
    user: User,
    image_id: int,
    subclass: SubClass | None,
    bad_reason: str = "",
) -> LabellingAction:
    """Record a blind second label of an image someone else labelled. Nothing about the image
    changes; a disagreement (another class, or a bad-image verdict) waits for a reviewer."""
    _guard(user, image_id)
    image = Image.objects.select_related("subclass").get(pk=image_id)
    if image.subclass is None:
        raise ValueError(f"Image {image_id} has no label to give a second opinion on.")
    if image.labelled_by_id == user.pk:
        raise ValueError("A second opinion must come from someone other than the labeller.")
    agrees = (
        subclass is not None
        and not bad_reason
        and subclass.label_class_id == image.subclass.label_class_id
    )
    opinion, _ = SecondOpinion.objects.update_or_create(
        image=image,
        second_actor=user,
        defaults={
            "first_subclass": image.subclass,
            "first_actor_id": image.labelled_by_id,
            "second_subclass": subclass,
            "second_bad_reason": bad_reason,
            "agrees": agrees,
            "status": OpinionStatus.AGREED if agrees else OpinionStatus.OPEN,
        },
    )
    _release(user, image_id)
    return LabellingAction.objects.create(
        user=user, image=image, kind=ActionKind.OPINION, opinion=opinion
    )


class SettleChoice:
    FIRST = "first"
    SECOND = "second"
    DOUBLE_CHECK = "double_check"
    ALL = (FIRST, SECOND, DOUBLE_CHECK)


@transaction.atomic
def second_opinion_settle(*, reviewer: User, opinion_id: int, choice: str) -> SecondOpinion:
    """Settle a disagreement: keep the first label, take the second (a label event, or a
    bad-image verdict), or send the image to Double-check."""
    if choice not in SettleChoice.ALL:
        raise ValueError(f"Choose one of {', '.join(SettleChoice.ALL)}.")
    opinion = SecondOpinion.objects.select_for_update().get(pk=opinion_id)
    if opinion.status != OpinionStatus.OPEN:
        raise ValueError(f"Second opinion {opinion.pk} is already {opinion.get_status_display()}.")
    if choice == SettleChoice.SECOND:
        if opinion.second_bad_reason:
            BadVerdict.objects.update_or_create(
                image_id=opinion.image_id,
                defaults={"reason": opinion.second_bad_reason, "actor": opinion.second_actor},
            )
        elif opinion.second_subclass is not None:
            image = Image.objects.get(pk=opinion.image_id)
            image_relabel(
                image_id=image.pk,
                subclass=opinion.second_subclass,
                actor=reviewer,
                reason=LabelReason.LABELLING,
                expected_version=image.version,
                note=f"second opinion {opinion.pk} settled in favour of "
                f"{opinion.second_actor.username}",
            )
    opinion.status = (
        OpinionStatus.DOUBLE_CHECK if choice == SettleChoice.DOUBLE_CHECK else OpinionStatus.SETTLED
    )
    opinion.settled_by = reviewer
    opinion.settled_at = timezone.now()
    opinion.settled_choice = choice
    opinion.save(update_fields=["status", "settled_by", "settled_at", "settled_choice"])
    return opinion


# A queue of picked images holds at most this many (a library grid picks one page at a time).
PICKED_QUEUE_MAX = 500


class PickedQueueError(Exception):
    pass


def picked_queue_create(*, image_ids: list[int], name: str, actor: User | None) -> SavedFilter:
    """A labelling queue of exactly these images (the active ones among them), at
    /label/filter:<id>/. An image leaves it once someone labels it, sends it to a holding class
    or marks it bad; undo puts it back."""
    wanted = sorted(set(image_ids))
    if len(wanted) > PICKED_QUEUE_MAX:
        raise PickedQueueError(f"A queue of picked images holds at most {PICKED_QUEUE_MAX}.")
    active = list(
        Image.objects.filter(pk__in=wanted, status=ImageStatus.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not active:
        raise PickedQueueError("None of the picked images is in the library any more.")
    count = len(active)
    default = f"{count} picked image{'s' if count != 1 else ''}, {timezone.localdate():%d %b}"
    return SavedFilter.objects.create(
        name=(" ".join(name.split()) or default)[:200],
        params={"images": active, "picked_at": timezone.now().isoformat()},
        created_by=actor,
    )
