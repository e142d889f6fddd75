"""REST API for dataset versions: start a build, list and read them (per-class summary and
the leakage report), start an export."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsLabeller, IsReviewer, api_user
from config.query import ID_MAX
from curation.models import BenchmarkKind, BenchmarkMember, BenchmarkSet, DatasetVersion
from curation.serializers import JobSerializer
from curation.services.dataset_jobs import dataset_build_job_start, dataset_export_job_start
from curation.services.datasets import (
    DEFAULT_MAX_PER_CLASS,
    DEFAULT_MIN_PER_CLASS,
    DEFAULT_STAGED_CAP,
    DatasetError,
    DatasetParams,
    benchmark_set_create,
    dataset_leakage_report,
)
from curation.services.export import EXPORT_FORMATS


class DatasetVersionSerializer(serializers.ModelSerializer[DatasetVersion]):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    job = JobSerializer(read_only=True)
    warnings = serializers.SerializerMethodField(
        help_text="one line per class whose splits are off the requested ratios by more than "
        "max(1 image, 2%), naming the near-duplicate groups that forced it"
    )

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "name",
            "status",
            "exploratory",
            "seed",
            "params",
            "created_by",
            "created_at",
            "job",
            "warnings",
        ]

    def get_warnings(self, version: DatasetVersion) -> list[str]:
        return list((version.summary or {}).get("warnings", []))


class DatasetVersionDetailSerializer(DatasetVersionSerializer):
    summary = serializers.JSONField(read_only=True)
    leakage = serializers.SerializerMethodField()

    class Meta(DatasetVersionSerializer.Meta):
        fields = [*DatasetVersionSerializer.Meta.fields, "summary", "leakage"]

    @extend_schema_field(
        {
            "type": "object",
            "description": "verified: open near-duplicate groups with members in two splits "
            "(none by construction); candidates: pHash pairs within the threshold, not "
            "verified as one group, that straddle two splits (count and nearest examples)",
        }
    )
    def get_leakage(self, version: DatasetVersion) -> dict[str, Any]:
        return dataset_leakage_report(version=version)


class DatasetBuildSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    min_per_class = serializers.IntegerField(min_value=1, default=DEFAULT_MIN_PER_CLASS)
    max_per_class = serializers.IntegerField(min_value=1, default=DEFAULT_MAX_PER_CLASS)
    staged_cap = serializers.IntegerField(min_value=0, default=DEFAULT_STAGED_CAP)
    ratios = serializers.ListField(
        child=serializers.IntegerField(min_value=0), min_length=3, max_length=3, default=[90, 10, 0]
    )
    # The version's seed column is a 32-bit integer on PostgreSQL.
    seed = serializers.IntegerField(default=0, min_value=-(2**31), max_value=2**31 - 1)
    exploratory = serializers.BooleanField(default=False)


class DatasetExportSerializer(serializers.Serializer[Any]):
    format = serializers.ChoiceField(choices=list(EXPORT_FORMATS))
    letterbox = serializers.IntegerField(min_value=16, max_value=4096, required=False)
    shard_size = serializers.IntegerField(min_value=1, default=10_000)
    hard_links = serializers.BooleanField(
        default=False,
        help_text=(
            "folder format without letterbox: hard-link the originals instead of copying them. "
            "Saves the space, but a hard link is the original: a write to the export by root "
            "changes the library"
        ),
    )


class VersionPagination(CursorPagination):
    ordering = "-id"
    page_size = 50


class DatasetVersionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Dataset versions. POST starts a build job (reviewers) and answers 202 with it;
    GET …/<id>/ has the per-class summary (requested and achieved counts per split under
    ``summary.classes[].ratios``), ``warnings`` and the leakage report; POST …/<id>/export/ starts
    an export job."""

    queryset = DatasetVersion.objects.select_related("created_by", "job", "job__created_by")
    pagination_class = VersionPagination

    def get_permissions(self) -> list[Any]:
        if self.action in ("create", "export"):
            return [IsReviewer()]
        return [IsLabeller()]

    def get_serializer_class(self) -> Any:
        if self.action == "retrieve":
            return DatasetVersionDetailSerializer
        if self.action == "create":
            return DatasetBuildSerializer
        if self.action == "export":
            return DatasetExportSerializer
        return DatasetVersionSerializer

    def create(self, request: Request) -> Response:
        data = DatasetBuildSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        name = values.pop("name")
        values["ratios"] = tuple(values["ratios"])
        try:
            version, _ = dataset_build_job_start(
                name=name, params=DatasetParams(**values), actor=api_user(request)
            )
        except DatasetError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        version = self.get_queryset().get(pk=version.pk)
        return Response(DatasetVersionSerializer(version).data, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"])
    def export(self, request: Request, pk: str | None = None) -> Response:
        version = self.get_object()
        data = DatasetExportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if version.status != "ready":
            raise ValidationError({"detail": "Only a built (ready) version can be exported."})
        job = dataset_export_job_start(
            version=version,
            format=data.validated_data["format"],
            letterbox=data.validated_data.get("letterbox"),
            shard_size=data.validated_data["shard_size"],
            actor=api_user(request),
            hard_links=data.validated_data["hard_links"],
        )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class BenchmarkSetSerializer(serializers.ModelSerializer[BenchmarkSet]):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = BenchmarkSet
        fields = [
            "id",
            "name",
            "version",
            "kind",
            "description",
            "member_count",
            "created_by",
            "created_at",
        ]


class BenchmarkSetCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=BenchmarkKind.choices)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    image_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        allow_empty=False,
        max_length=100_000,
        help_text="the members; posting an existing name makes that set's next version",
    )


class BenchmarkMemberSerializer(serializers.ModelSerializer[BenchmarkMember]):
    class_name = serializers.CharField(source="label_class.name", read_only=True, default=None)

    class Meta:
        model = BenchmarkMember
        fields = ["image", "label_class", "class_name"]


class BenchmarkSetViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Benchmark sets: named, versioned sets of images kept out of every dataset version's
    train/val/test. POST a name, kind and image ids (reviewers); the same name again makes the
    next version. Members are listed, paginated, under …/members/."""

    serializer_class = BenchmarkSetSerializer
    pagination_class = None

    def get_queryset(self) -> Any:
        return BenchmarkSet.objects.select_related("created_by").order_by("name", "-version")

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve", "members"):
            return [IsLabeller()]
        return [IsReviewer()]

    @extend_schema(request=BenchmarkSetCreateSerializer, responses={201: BenchmarkSetSerializer})
    def create(self, request: Request) -> Response:
        data = BenchmarkSetCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            benchmark = benchmark_set_create(actor=api_user(request), **data.validated_data)
        except DatasetError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        benchmark = self.get_queryset().get(pk=benchmark.pk)
        return Response(BenchmarkSetSerializer(benchmark).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: BenchmarkMemberSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def members(self, request: Request, pk: str | None = None) -> Response:
        benchmark = self.get_object()
        paginator = CursorPagination()
        paginator.ordering = "id"
        paginator.page_size = 200
        members = BenchmarkMember.objects.filter(benchmark_set=benchmark).select_related(
            "label_class"
        )
        page = paginator.paginate_queryset(members, request, view=self)
        return paginator.get_paginated_response(BenchmarkMemberSerializer(page, many=True).data)
