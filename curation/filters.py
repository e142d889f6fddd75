from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet

from curation.models import Image, ImageStatus, Job, JobStatus, Source, SubClass
from curation.services.quality import QUALITY_FILTERS, quality_filter, quality_thresholds
from labelling.models import BadReason


class IdFilter(django_filters.NumberFilter):
    """A row id: a whole number the database can hold (anything else is a 400 naming the
    parameter, never an overflow inside the database driver)."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, min_value=0, max_value=2**63 - 1, **kwargs)


class ImageFilter(django_filters.FilterSet):
    """The only filters the image list accepts: no free-form lookups through relations."""

    label_class = IdFilter(method="filter_label_class", label="class id")
    subclass = IdFilter(field_name="subclass_id")
    status = django_filters.ChoiceFilter(choices=ImageStatus.choices)
    labelled = django_filters.BooleanFilter(
        field_name="subclass", lookup_expr="isnull", exclude=True, label="labelled"
    )
    source = django_filters.ChoiceFilter(field_name="subclass__source", choices=Source.choices)
    import_batch = IdFilter(field_name="import_batch_id")
    sha256 = django_filters.CharFilter(field_name="sha256")
    bad = django_filters.BooleanFilter(
        field_name="bad_verdict",
        lookup_expr="isnull",
        exclude=True,
        label="judged a bad image by an SME",
    )
    bad_reason = django_filters.ChoiceFilter(
        field_name="bad_verdict__reason", choices=BadReason.choices
    )
    quality = django_filters.ChoiceFilter(
        method="filter_quality",
        choices=list(QUALITY_FILTERS.items()),
        label="quality flag raised under the library's current thresholds",
    )

    ood_min = django_filters.NumberFilter(
        method="filter_ood_min",
        label="out-of-distribution score at least this (mean cosine distance to the nearest "
        "labelled images)",
    )

    class Meta:
        model = Image
        fields: list[str] = []

    def filter_ood_min(self, queryset: QuerySet[Image], name: str, value: float) -> Any:
        from inference.embeddings import images_with_ood_at_least

        return images_with_ood_at_least(queryset, minimum=float(value))

    def filter_quality(self, queryset: QuerySet[Image], name: str, value: str) -> Any:
        return quality_filter(queryset, flag=value, stats=quality_thresholds())

    def filter_label_class(self, queryset: QuerySet[Image], name: str, value: int) -> Any:
        # The class's sub-class ids first: filtering through the join hides from PostgreSQL that
        # the (subclass, status, -id) index already yields the rows newest first, and a large
        # class then gets sorted in full.
        subclass_ids = list(
            SubClass.objects.filter(label_class_id=value).values_list("pk", flat=True)
        )
        return queryset.filter(subclass_id__in=subclass_ids)


class SubClassFilter(django_filters.FilterSet):
    label_class = IdFilter(field_name="label_class_id", label="class id")

    class Meta:
        model = SubClass
        fields: list[str] = []


class JobFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=JobStatus.choices)
    kind = django_filters.CharFilter()

    class Meta:
        model = Job
        fields: list[str] = []
