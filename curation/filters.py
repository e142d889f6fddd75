from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from config.query import choice_message
from curation.models import BadReason, Image, ImageStatus, Job, JobStatus, Source, SubClass
from curation.services.quality import QUALITY_FILTERS, quality_filter, quality_thresholds


class IdFilter(django_filters.NumberFilter):
    """A row id: a whole number the database can hold (anything else is a 400 naming the
    parameter, never an overflow inside the database driver)."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, min_value=0, max_value=2**63 - 1, **kwargs)


class OneOfFilter(django_filters.ChoiceFilter):
    """A filter with a fixed set of values: any other value is a 400 that lists them (an
    ignored value would answer with the unfiltered list)."""

    def __init__(self, *args: Any, choices: list[tuple[str, str]], **kwargs: Any) -> None:
        values = [str(value) for value, _ in choices]
        kwargs.setdefault("error_messages", {"invalid_choice": choice_message(values)})
        super().__init__(*args, choices=choices, **kwargs)


class TrueFalseField(forms.NullBooleanField):
    """``true`` or ``false`` (``1``/``0`` too, any case); absent or empty is no filter, and
    anything else is refused rather than read as absent, as Django's own field would."""

    widget = forms.TextInput
    default_error_messages = {"invalid": choice_message(["true", "false"])}

    def to_python(self, value: Any) -> Any:  # the stubs type a NullBooleanField as never None
        if value is None or isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text == "":
            return None
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValidationError(self.error_messages["invalid"], code="invalid")


class TrueFalseFilter(django_filters.BooleanFilter):
    field_class = TrueFalseField


# ``status=all`` lists active and trashed images together.
ALL_STATUSES = "all"


class ImageFilter(django_filters.FilterSet):
    """The only filters the image list accepts: no free-form lookups through relations."""

    label_class = IdFilter(method="filter_label_class", label="class id")
    subclass = IdFilter(field_name="subclass_id")
    status = OneOfFilter(
        choices=[*ImageStatus.choices, (ALL_STATUSES, "Active and trashed")],
        method="filter_status",
        label="active (the default when absent), trashed, or all",
    )
    labelled = TrueFalseFilter(
        field_name="subclass", lookup_expr="isnull", exclude=True, label="labelled"
    )
    source = OneOfFilter(field_name="subclass__source", choices=Source.choices)
    import_batch = IdFilter(field_name="import_batch_id")
    sha256 = django_filters.CharFilter(field_name="sha256")
    bad = TrueFalseFilter(
        field_name="bad_verdict",
        lookup_expr="isnull",
        exclude=True,
        label="judged a bad image by an SME",
    )
    bad_reason = OneOfFilter(field_name="bad_verdict__reason", choices=BadReason.choices)
    quality = OneOfFilter(
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

    def filter_queryset(self, queryset: QuerySet[Image]) -> QuerySet[Image]:
        # Trashed images are deleted as far as a client listing the library is concerned: they
        # are listed only when asked for (status=trashed, or status=all).
        filtered: QuerySet[Image] = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("status"):
            filtered = filtered.filter(status=ImageStatus.ACTIVE)
        return filtered

    def filter_status(self, queryset: QuerySet[Image], name: str, value: str) -> Any:
        return queryset if value == ALL_STATUSES else queryset.filter(status=value)

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
    status = OneOfFilter(choices=JobStatus.choices)
    kind = django_filters.CharFilter()

    class Meta:
        model = Job
        fields: list[str] = []
