"""Labelling standards per class: the description SMEs read and the exemplar images pinned
beside the image being labelled. Reviewers edit them; everyone reads them."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from accounts.models import User
from curation.models import Image, ImageStatus, LabelClass
from curation.services.taxonomy import class_update
from labelling.models import Exemplar, ExemplarKind

DESCRIPTION_MAX = 5000
EXEMPLARS_SHOWN = 6  # of each kind, beside the image being labelled


class StandardsError(Exception):
    """A change to a class's standards that cannot be made; the message says why."""


def _require_reviewer(actor: User) -> None:
    if not actor.is_reviewer:
        raise StandardsError("Only reviewers can change the labelling standards.")


def standards_describe(*, label_class: LabelClass, description: str, actor: User) -> LabelClass:
    """Replace the class's standards description."""
    _require_reviewer(actor)
    description = description.strip().replace("\r\n", "\n")
    if len(description) > DESCRIPTION_MAX:
        raise StandardsError(f"The description is at most {DESCRIPTION_MAX} characters.")
    return class_update(label_class=label_class, actor=actor, description=description)


@transaction.atomic
def exemplar_pin(
    *, label_class: LabelClass, image_id: int, kind: str, actor: User, note: str = ""
) -> Exemplar:
    """Pin an image to the class's standards as a good or bad example. Pinning an image that is
    already pinned to the class changes its kind and note."""
    _require_reviewer(actor)
    if kind not in ExemplarKind.values:
        raise StandardsError(f"An exemplar is 'good' or 'bad', not {kind!r}.")
    image = Image.objects.filter(pk=image_id).only("pk", "status").first()
    if image is None:
        raise StandardsError(f"There is no image {image_id}.")
    if image.status != ImageStatus.ACTIVE:
        raise StandardsError(f"Image {image_id} is in the trash; restore it before pinning it.")
    try:
        exemplar, _ = Exemplar.objects.update_or_create(
            label_class=label_class,
            image=image,
            defaults={"kind": kind, "note": note.strip()[:300], "pinned_by": actor},
        )
    except IntegrityError as exc:  # pinned by someone else at the same moment
        raise StandardsError(f"Could not pin image {image_id}: {exc}") from None
    return exemplar


def exemplar_unpin(*, exemplar: Exemplar, actor: User) -> None:
    _require_reviewer(actor)
    exemplar.delete()


@dataclass(frozen=True)
class StandardsView:
    label_class: LabelClass
    good: list[Exemplar]
    bad: list[Exemplar]


def standards_for(*, label_class: LabelClass, limit: int | None = EXEMPLARS_SHOWN) -> StandardsView:
    """The class's standards as the labelling page shows them (two queries)."""
    exemplars = Exemplar.objects.filter(label_class=label_class, image__status=ImageStatus.ACTIVE)
    exemplars = exemplars.select_related("image", "pinned_by").order_by("-id")
    good = exemplars.filter(kind=ExemplarKind.GOOD)
    bad = exemplars.filter(kind=ExemplarKind.BAD)
    if limit is not None:
        good, bad = good[:limit], bad[:limit]
    return StandardsView(label_class=label_class, good=list(good), bad=list(bad))


PINS_SHOWN_PER_IMAGE = 50


def exemplars_of_image(*, image_id: int) -> list[Exemplar]:
    """Where the image is pinned as an exemplar, for its image page (one query)."""
    pins = Exemplar.objects.filter(image_id=image_id).select_related("label_class")
    return list(pins.order_by("label_class__name", "id")[:PINS_SHOWN_PER_IMAGE])
