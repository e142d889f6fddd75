"""Labelling queues: which images an SME sees next, and in what order.

A queue is named by a short spec that fits in a URL: ``inbox``, ``class:<id>`` (a class, holding
classes included, for re-checking), ``subclass:<id>``, or ``filter:<id>`` (a saved filter).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Exists, Max, Min, OuterRef, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import User
from config.query import whole_number
from curation.models import (
    UNSCORED,
    BadVerdict,
    Image,
    ImageStatus,
    LabelClass,
    SavedFilter,
    SubClass,
)
from curation.services.images import inbox_count
from curation.services.quality import QUALITY_FILTERS, quality_filter, quality_thresholds
from labelling.models import ActionKind, Claim, LabellingAction, SecondOpinion

# The parameters a saved filter may hold, and the image lookup each maps to. Nothing else is
# ever passed to the ORM.
SAVED_FILTER_FIELDS = {
    "label_class": "subclass__label_class_id",
    "subclass": "subclass_id",
    "source": "subclass__source",
    "import_batch": "import_batch_id",
}


class QueueNotFound(Exception):
    pass


# A saved filter's parameters that an app above labelling understands, applied after the
# library's (inference: a model version's predictions); registered from its AppConfig.ready.
SavedFilterRefinement = Callable[[QuerySet[Image], dict[str, object]], QuerySet[Image]]
_REFINEMENTS: dict[str, SavedFilterRefinement] = {}


def saved_filter_refinement_register(name: str, refine: SavedFilterRefinement) -> None:
    """Apply ``refine`` to every saved filter's images. Registering a name again replaces it."""
    _REFINEMENTS[name] = refine


def saved_filter_images(params: dict[str, object], *, base: QuerySet[Image]) -> QuerySet[Image]:
    """Images matching a saved filter's allow-listed parameters.

    ``labelled`` false keeps only inbox images, true only labelled ones. ``quality`` keeps the
    images a quality flag is raised on (``QUALITY_FILTERS``). ``images`` (ids picked in a
    library grid) keeps those not worked on since ``picked_at``. The parameters of the apps
    above labelling come last (``saved_filter_refinement_register``; inference: a model
    version's predictions).
    """
    lookups: dict[str, object] = {
        SAVED_FILTER_FIELDS[key]: value
        for key, value in params.items()
        if key in SAVED_FILTER_FIELDS
    }
    if params.get("labelled") is False:
        lookups["subclass__isnull"] = True
    elif params.get("labelled") is True:
        lookups["subclass__isnull"] = False
    images = base.filter(**lookups)
    if "images" in params:
        images = _picked_open(images, params)
    quality = params.get("quality")
    if isinstance(quality, str) and quality in QUALITY_FILTERS:
        images = quality_filter(images, flag=quality, stats=quality_thresholds())
    for refine in _REFINEMENTS.values():
        images = refine(images, params)
    return images


def _picked_open(images: QuerySet[Image], params: dict[str, object]) -> QuerySet[Image]:
    """A queue of picked images (``images``: ids, ``picked_at``: when): those of them nobody
    has labelled, sent to a holding class or marked bad since (an undo puts one back)."""
    picked = params["images"]
    if not isinstance(picked, list) or not all(
        isinstance(pk, int) and not isinstance(pk, bool) for pk in picked
    ):
        raise QueueNotFound("The saved filter's images are not a list of ids.")
    images = images.filter(id__in=picked)
    picked_at = parse_datetime(str(params.get("picked_at", "")))
    if picked_at is None:
        return images
    done = LabellingAction.objects.filter(
        image=OuterRef("pk"), undone_at__isnull=True, created_at__gte=picked_at
    ).exclude(kind=ActionKind.SKIP)
    return images.filter(~Exists(done))


def saved_filter_id(params: dict[str, object], key: str) -> int:
    """A row id a saved filter holds. Loupe writes whole numbers there; anything else (a
    hand-edited filter) refuses the queue rather than failing inside the database query."""
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueueNotFound(f"The saved filter's {key} is {value!r}, not an id.")
    return value


@dataclass(frozen=True)
class Queue:
    spec: str
    title: str
    images: QuerySet[Image]
    subclass_ids: tuple[int, ...] | None = None
    # Second-opinion queues hide the current label and record an opinion instead of a label.
    blind: bool = False
    inbox: bool = False

    def size(self, *, user: User | None = None) -> int:
        """Images in the queue, from counters and indexed counts (not excluding claims). A blind
        queue counts, for ``user``, what is left to them: not their own labels, nor images they
        gave an opinion on already."""
        if self.inbox:
            return inbox_count()
        if self.subclass_ids is not None:
            counts = SubClass.objects.filter(pk__in=self.subclass_ids).values_list(
                "image_count", flat=True
            )
            total = sum(counts)
            if self.blind and user is not None:
                total -= _second_opinion_done(self, user)
            return max(0, total)
        return self.images.count()


def _second_opinion_done(queue: Queue, user: User) -> int:
    """The queue's images a blind sample never offers ``user``: those they labelled and those
    they gave an opinion on. Two counts on the labeller's and the opinion giver's indexes, so
    they grow with the SME's own work, not with the library."""
    labelled_by_them = queue.images.filter(labelled_by=user).count()
    judged = (
        SecondOpinion.objects.filter(
            second_actor=user,
            image__status=ImageStatus.ACTIVE,
            image__subclass_id__in=queue.subclass_ids or (),
        )
        .exclude(image__labelled_by=user)
        .count()
    )
    return labelled_by_them + judged


def queue_resolve(spec: str) -> Queue:
    active = Image.objects.filter(status=ImageStatus.ACTIVE)
    kind, _, ident = spec.partition(":")
    if kind == "inbox" and not ident:
        return Queue(spec, "Inbox", active.filter(subclass__isnull=True), inbox=True)
    if kind == "second":
        return _second_opinion_queue(spec, ident, active)
    pk = whole_number(ident)
    if pk is None:
        raise QueueNotFound(f"Unknown queue {spec!r}.")
    if kind == "class":
        label_class = LabelClass.objects.filter(pk=pk).first()
        if label_class is None:
            raise QueueNotFound(f"No class {pk}.")
        subclass_ids = tuple(label_class.subclasses.values_list("pk", flat=True))
        return Queue(
            spec, label_class.name, active.filter(subclass_id__in=subclass_ids), subclass_ids
        )
    if kind == "subclass":
        subclass = SubClass.objects.select_related("label_class").filter(pk=pk).first()
        if subclass is None:
            raise QueueNotFound(f"No sub-class {pk}.")
        return Queue(spec, str(subclass), active.filter(subclass=subclass), (subclass.pk,))
    if kind == "filter":
        saved = SavedFilter.objects.filter(pk=pk).first()
        if saved is None:
            raise QueueNotFound(f"No saved filter {pk}.")
        return Queue(spec, saved.name, saved_filter_images(saved.params, base=active))
    raise QueueNotFound(f"Unknown queue {spec!r}.")


# An image you acted on (labelled, confirmed, skipped, judged) stays out of your queues this
# long, unless you undo: a re-check pass moves forward, and a skip does not bounce straight back.
RECENT_ACTION_HOURS = 12


# The one blind queue. A sample of one class would tell the second labeller every image's first
# class (the queue's name, or just the link they followed), so there is none.
SECOND_OPINION_SPEC = "second:all"


def _second_opinion_queue(spec: str, ident: str, active: QuerySet[Image]) -> Queue:
    if ident != "all":
        raise QueueNotFound(
            f"There is no second-opinion queue {spec!r}: a sample of one class would give its "
            f"first label away. The blind queue is {SECOND_OPINION_SPEC!r}, the whole library."
        )
    labelled = active.filter(subclass__isnull=False, subclass__label_class__kind="normal")
    normal = tuple(SubClass.objects.filter(label_class__kind="normal").values_list("pk", flat=True))
    return Queue(spec, "Second opinion: whole library", labelled, normal, blind=True)


def _open_for(user: User, images: QuerySet[Image]) -> QuerySet[Image]:
    """Leave out images another SME holds a live claim on, images already judged bad, and
    images this SME acted on recently."""
    now = timezone.now()
    claimed_by_others = Claim.objects.filter(image=OuterRef("pk"), expires_at__gt=now).exclude(
        user=user
    )
    judged_bad = BadVerdict.objects.filter(image=OuterRef("pk"))
    acted_on = LabellingAction.objects.filter(
        image=OuterRef("pk"),
        user=user,
        undone_at__isnull=True,
        created_at__gt=now - timedelta(hours=RECENT_ACTION_HOURS),
    )
    return images.filter(~Exists(claimed_by_others), ~Exists(judged_bad), ~Exists(acted_on))


def queue_images(
    *,
    queue: Queue,
    user: User,
    exclude_ids: Iterable[int] = (),
    limit: int,
) -> list[Image]:
    """The next ``limit`` images of the queue for ``user``: least confident first where the
    active model has scored them, then oldest first. ``exclude_ids`` are images the page
    already holds."""

    candidates = _open_for(user, queue.images).exclude(id__in=list(exclude_ids))
    candidates = candidates.select_related("subclass__label_class")
    if queue.blind:
        return _sample_for_second_opinion(candidates, user, limit)
    # Least confident first: Image.suggestion_score is the active model's top-1 score, kept with
    # its predictions, and the inbox has an index in exactly this order.
    ordered = candidates.order_by(Coalesce("suggestion_score", Value(UNSCORED)), "id")
    return list(ordered[:limit])


def _sample_for_second_opinion(candidates: QuerySet[Image], user: User, limit: int) -> list[Image]:
    """A random sample of images someone else labelled and this SME has not judged yet.

    Starts at a random id and walks the primary key (wrapping round), so it stays an index
    scan on a large library."""
    already = SecondOpinion.objects.filter(image=OuterRef("pk"), second_actor=user)
    candidates = candidates.exclude(labelled_by=user).filter(~Exists(already))
    bounds = Image.objects.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return []
    pivot = random.randint(bounds["low"], bounds["high"])
    picked = list(candidates.filter(id__gte=pivot).order_by("id")[:limit])
    if len(picked) < limit:
        picked += list(candidates.filter(id__lt=pivot).order_by("id")[: limit - len(picked)])
    return picked


def queue_size(*, queue: Queue, user: User | None = None) -> int:
    """Images in the queue, from counters and indexed counts (not excluding claims); a blind
    queue's for ``user``."""
    return queue.size(user=user)


def queue_specs_overview() -> list[tuple[str, str, int]]:
    """(spec, title, images) for the queues worth offering: the inbox and each holding class.
    Counts come from indexes and the sub-class counters."""
    rows = [("inbox", "Inbox", inbox_count())]
    for label_class in LabelClass.objects.filter(kind="holding").prefetch_related("subclasses"):
        count = sum(s.image_count for s in label_class.subclasses.all())
        rows.append((f"class:{label_class.pk}", label_class.name, count))
    return rows


def claimed_by_someone_else(*, image_id: int, user: User) -> Claim | None:
    return (
        Claim.objects.filter(image_id=image_id, expires_at__gt=timezone.now())
        .exclude(user=user)
        .select_related("user")
        .first()
    )
