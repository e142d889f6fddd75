"""Reads for the quality page: the baseline row and the worst images of each metric, each one
indexed query."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from curation.models import Image, ImageStatus, Job, JobStatus, QualityBaseline
from curation.services.quality import GRAYSCALE, QUALITY_BASELINE_JOB


@dataclass(frozen=True)
class WorstStrip:
    """The images at one end of a metric, worst first (``field`` None: the newest greyscale
    images, greyscale being a yes/no property)."""

    title: str
    flag: str
    field: str | None
    descending: bool = False


def quality_baseline() -> QualityBaseline | None:
    return QualityBaseline.objects.filter(pk=1).first()


def quality_job_pending() -> Job | None:
    """The baseline job queued or running now, if any."""
    return (
        Job.objects.filter(
            kind=QUALITY_BASELINE_JOB, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        )
        .order_by("-id")
        .first()
    )


def worst_images(strip: WorstStrip, *, limit: int) -> QuerySet[Image]:
    """Active images with their features, worst first. Ordered by an indexed features column
    (or the primary key), so it reads ``limit`` rows whatever the library size."""
    active = Image.objects.filter(status=ImageStatus.ACTIVE).select_related(
        "features", "subclass__label_class"
    )
    if strip.field is None:
        assert strip.flag == GRAYSCALE
        return active.filter(features__is_grayscale=True).order_by("-id")[:limit]
    column = f"features__{strip.field}"
    order = f"-{column}" if strip.descending else column
    return active.filter(**{f"{column}__isnull": False}).order_by(order, "id")[:limit]
