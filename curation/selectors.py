"""Reads. Each returns a queryset that already joins what its page or endpoint shows, so list
pages run a fixed number of queries whatever the library size."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet, Sum

from curation.models import (
    ClassKind,
    Image,
    ImageStatus,
    ImportBatch,
    ImportItem,
    Job,
    LabelClass,
    LabelEvent,
    Source,
    SubClass,
)


def image_list() -> QuerySet[Image]:
    return Image.objects.select_related(
        "subclass__label_class", "labelled_by", "import_batch", "bad_verdict"
    ).order_by("-id")


def inbox_count() -> int:
    """Active unlabelled images, from the counter the services keep."""
    from curation.services.images import inbox_count as counted

    return counted()


def inbox_images() -> QuerySet[Image]:
    return Image.objects.filter(subclass__isnull=True, status=ImageStatus.ACTIVE).order_by("id")


def trash_images() -> QuerySet[Image]:
    return image_list().filter(status=ImageStatus.TRASHED).order_by("-trashed_at", "-id")


def class_images(
    *, label_class: LabelClass, subclass: SubClass | None = None, source: str | None = None
) -> QuerySet[Image]:
    subclasses = SubClass.objects.filter(label_class=label_class)
    if subclass is not None:
        subclasses = subclasses.filter(pk=subclass.pk)
    if source:
        subclasses = subclasses.filter(source=source)
    ids = list(subclasses.values_list("pk", flat=True))
    return (
        Image.objects.filter(subclass_id__in=ids, status=ImageStatus.ACTIVE)
        .select_related("subclass")
        .order_by("-id")
    )


def image_history(*, image: Image) -> QuerySet[LabelEvent]:
    return (
        LabelEvent.objects.filter(image=image)
        .select_related("actor", "from_subclass__label_class", "to_subclass__label_class")
        .order_by("-id")
    )


def class_list() -> QuerySet[LabelClass]:
    return LabelClass.objects.prefetch_related(
        Prefetch("subclasses", queryset=SubClass.objects.order_by("-is_default", "name"))
    ).order_by("name")


def subclass_list() -> QuerySet[SubClass]:
    return SubClass.objects.select_related("label_class").order_by("label_class__name", "name")


@dataclass(frozen=True)
class LibraryTotals:
    labelled: int
    inbox: int
    trashed: int
    classes: int
    by_source: dict[str, int]

    @property
    def active(self) -> int:
        return self.labelled + self.inbox


def library_totals() -> LibraryTotals:
    """Counts from the sub-class counters plus two indexed counts: cheap at a million images."""
    per_source = dict(
        SubClass.objects.values_list("source")
        .annotate(n=Sum("image_count"))
        .values_list("source", "n")
    )
    labelled = sum(v or 0 for v in per_source.values())
    return LibraryTotals(
        labelled=labelled,
        inbox=inbox_count(),
        trashed=Image.objects.filter(status=ImageStatus.TRASHED).count(),
        classes=LabelClass.objects.filter(kind=ClassKind.NORMAL).count(),
        by_source={s.value: per_source.get(s.value) or 0 for s in Source},
    )


def import_batch_list() -> QuerySet[ImportBatch]:
    return ImportBatch.objects.select_related("created_by", "job").order_by("-id")


def import_items(*, batch: ImportBatch) -> QuerySet[ImportItem]:
    return ImportItem.objects.filter(batch=batch).order_by("id")


def job_list() -> QuerySet[Job]:
    return Job.objects.select_related("created_by").order_by("-id")


def class_counts_by_source(*, label_class: LabelClass) -> dict[str, int]:
    rows = (
        SubClass.objects.filter(label_class=label_class)
        .values("source")
        .annotate(n=Sum("image_count"))
    )
    return {row["source"]: row["n"] or 0 for row in rows}


def subclass_named(*, class_name: str, subclass_name: str | None, source: str) -> SubClass | None:
    """The existing sub-class an import path names (as ``subclass_resolve`` reads it, without
    creating anything): ``<class>`` alone is the class's default sub-class for real images, or
    its sub-class named after the source ("staged", "synthetic"). None when there is none."""
    label_class = LabelClass.objects.filter(name__iexact=" ".join(class_name.split())).first()
    if label_class is None:
        return None
    if subclass_name is None and source == Source.REAL:
        return SubClass.objects.filter(label_class=label_class, is_default=True).first()
    name = " ".join((subclass_name or source).split())
    return SubClass.objects.filter(label_class=label_class, name__iexact=name).first()
