"""REST API of evaluation runs: start one, read its reports and its Double-check queue."""

from __future__ import annotations

from typing import Any

import django_filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsReviewer, api_user
from config.query import choice_param
from curation.apis import NewestFirst
from curation.filters import IdFilter
from curation.models import SubClass
from curation.serializers import JobSerializer
from curation.services.images import ImageStateError
from inference.evaluation import (
    DOUBLE_CHECK_ACTIONS,
    DoubleCheckError,
    EvaluationError,
    EvaluationScope,
    confused_pairs_update,
    double_check_resolve,
    evaluation_create,
    scope_describe,
)
from inference.models import (
    DoubleCheckItem,
    DoubleCheckKind,
    DoubleCheckStatus,
    EvaluationRun,
    ModelVersion,
)


class EvaluationStartSerializer(serializers.Serializer[Any]):
    model = serializers.IntegerField(help_text="model version number")
    scope = serializers.CharField(
        default="library", help_text="library | dataset:NAME[:split] | benchmark:NAME[:version]"
    )
    threshold = serializers.FloatField(default=0.95, min_value=0.0, max_value=1.0)


class EvaluationSerializer(serializers.ModelSerializer[EvaluationRun]):
    model_version = serializers.IntegerField(source="model_version.number", read_only=True)
    scope = serializers.SerializerMethodField()
    job = JobSerializer(read_only=True)

    class Meta:
        model = EvaluationRun
        fields = [
            "id",
            "model_version",
            "scope",
            "scope_kind",
            "split",
            "threshold",
            "status",
            "confused_pairs",
            "job",
            "metrics",
            "created_at",
            "finished_at",
        ]

    def get_scope(self, run: EvaluationRun) -> str:
        return scope_describe(run)


class DoubleCheckItemSerializer(serializers.ModelSerializer[DoubleCheckItem]):
    sha256 = serializers.CharField(source="image.sha256", read_only=True)
    true_class = serializers.CharField(source="true_class.name", read_only=True, default=None)
    version = serializers.IntegerField(
        source="image.version",
        read_only=True,
        help_text="the image's version now: send it back with the answer",
    )

    class Meta:
        model = DoubleCheckItem
        fields = [
            "rank",
            "image",
            "sha256",
            "version",
            "true_class",
            "predicted_name",
            "given_probability",
            "top1_score",
            "why",
            "kind",
            "status",
        ]


class DoubleCheckAnswerSerializer(serializers.Serializer[Any]):
    action = serializers.ChoiceField(choices=list(DOUBLE_CHECK_ACTIONS))
    version = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="the image version the answer is for (the item's ``version``); every action "
        "but skip needs it, and an image changed since answers 409 naming who changed it",
    )
    subclass = serializers.IntegerField(required=False, help_text="for relabel")
    reason = serializers.CharField(required=False, default="", help_text="for trash")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["action"] != "skip" and "version" not in attrs:
            raise ValidationError({"version": ["Send the version of the image you saw."]})
        return attrs


class PairsSerializer(serializers.Serializer[Any]):
    pairs = serializers.ListField(child=serializers.DictField(), allow_empty=True)


class QueuePage(LimitOffsetPagination):
    """A Double-check queue pages by rank: ``?offset=100&limit=100`` is ranks 101 to 200."""

    default_limit = 100
    max_limit = 1000


class EvaluationFilter(django_filters.FilterSet):
    model = IdFilter(field_name="model_version__number", label="model version number")

    class Meta:
        model = EvaluationRun
        fields: list[str] = []


class EvaluationViewSet(viewsets.ReadOnlyModelViewSet):
    """Evaluation runs of model versions, newest first (``?model=N``: one version's history).
    POST ``{"model": N, "scope": "library"}`` starts a run as a job (202); GET a run for its
    reports (``metrics``) once ``status`` is ``done``."""

    permission_classes = [IsReviewer]
    serializer_class = EvaluationSerializer
    pagination_class = NewestFirst
    filterset_class = EvaluationFilter

    def get_queryset(self) -> Any:
        queryset = EvaluationRun.objects.select_related(
            "model_version", "job", "dataset", "benchmark_set"
        ).order_by("-id")
        if self.action == "list":
            return queryset.defer("metrics")
        return queryset

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        serializer = super().get_serializer(*args, **kwargs)
        if self.action == "list":
            child: Any = getattr(serializer, "child", serializer)
            child.fields.pop("metrics", None)
        return serializer

    @extend_schema(request=EvaluationStartSerializer, responses={202: EvaluationSerializer})
    def create(self, request: Request) -> Response:
        serializer = EvaluationStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        version = ModelVersion.objects.filter(number=data["model"]).first()
        if version is None:
            return Response(
                {"detail": f"No model version v{data['model']}."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            run = evaluation_create(
                version=version,
                scope=EvaluationScope.parse(data["scope"]),
                actor=api_user(request),
                threshold=data["threshold"] or 0.95,
            )
        except EvaluationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(EvaluationSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=DoubleCheckStatus.values),
            OpenApiParameter(
                "kind",
                str,
                enum=DoubleCheckKind.values,
                description="label_doubtful: a confident prediction of another class; "
                "model_wrong: wrong, but the label is plausible; model_unsure: right, below "
                "the threshold; model_agrees: added or referred, the model agrees",
            ),
        ],
        responses={200: DoubleCheckItemSerializer(many=True)},
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="double-check",
        pagination_class=QueuePage,
        filter_backends=[],  # the run list's filters are not the queue's
    )
    def double_check(self, request: Request, pk: str | None = None) -> Response:
        """The run's Double-check queue, likeliest label errors first."""
        run = self.get_object()
        items = (
            DoubleCheckItem.objects.filter(run=run)
            .select_related("image", "true_class")
            .order_by("rank")
        )
        status_filter = choice_param(request, "status", DoubleCheckStatus.values)
        if status_filter:
            items = items.filter(status=status_filter)
        kind_filter = choice_param(request, "kind", DoubleCheckKind.values)
        if kind_filter:
            items = items.filter(kind=kind_filter)
        page = self.paginate_queryset(items)
        return self.get_paginated_response(DoubleCheckItemSerializer(page, many=True).data)

    @extend_schema(
        request=DoubleCheckAnswerSerializer, responses={200: DoubleCheckItemSerializer, 409: dict}
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"double-check/(?P<rank>[0-9]+)",
        url_name="double-check-answer",
    )
    def double_check_answer(
        self, request: Request, pk: str | None = None, rank: str | None = None
    ) -> Response:
        """Answer the queue item at ``rank``: keep, predicted, relabel (with ``subclass``),
        trash (with ``reason``) or skip, with the image ``version`` the answer is for. Each is a
        label event with reason ``double_check`` (keep, or a relabel to the label the image
        has, confirms it); an image changed since that version answers 409 with
        ``changed_by``, ``changed_at`` and ``current_version``, and nothing changes."""
        run = self.get_object()
        item = DoubleCheckItem.objects.filter(run=run, rank=int(rank or 0)).first()
        if item is None:
            return Response({"detail": f"No item {rank} in this queue."}, status=404)
        serializer = DoubleCheckAnswerSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        subclass = None
        if data["action"] == "relabel":
            subclass = SubClass.objects.filter(pk=data.get("subclass") or 0).first()
            if subclass is None:
                return Response({"detail": "Name an existing sub-class."}, status=400)
        try:
            item = double_check_resolve(
                item=item,
                action=data["action"],
                actor=api_user(request),
                expected_version=data.get("version"),
                subclass=subclass,
                note=data["reason"],
            )
        except (DoubleCheckError, ImageStateError) as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        item = DoubleCheckItem.objects.select_related("image", "true_class").get(pk=item.pk)
        return Response(DoubleCheckItemSerializer(item).data)

    @extend_schema(request=PairsSerializer, responses={200: EvaluationSerializer})
    @action(detail=True, methods=["put"], url_path="confused-pairs")
    def confused_pairs(self, request: Request, pk: str | None = None) -> Response:
        """Replace the commonly-confused pairs (``[{"a", "b", "weight"}]``) and recompute the
        weighted log loss."""
        run = self.get_object()
        serializer = PairsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = confused_pairs_update(run=run, pairs=serializer.validated_data["pairs"])
        except EvaluationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(EvaluationSerializer(run).data)
