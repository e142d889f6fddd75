"""REST API for near-duplicate groups: list and review them, start a full scan."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsLabeller, IsReviewer, api_user
from config.query import choice_param
from curation.models import DuplicateGroup, DuplicateMember, DuplicateMethod, DuplicateStatus
from curation.selectors_duplicates import component_parts, duplicate_groups, group_images
from curation.serializers import ImageSerializer, JobSerializer
from curation.services.duplicate_review import (
    DuplicateReviewError,
    duplicate_group_dismiss,
    duplicate_group_resolve,
    suggested_keeper,
)
from curation.services.duplicates import (
    default_max_distance,
    default_min_similarity,
)
from curation.services.jobs import job_create, job_enqueue

FIND_DUPLICATES_JOB = "curation.find_duplicates"


class DuplicateMemberSerializer(serializers.ModelSerializer[DuplicateMember]):
    image = ImageSerializer(read_only=True)
    sharpness = serializers.FloatField(source="image.features.sharpness", default=None)
    phash = serializers.SerializerMethodField()
    similarity = serializers.SerializerMethodField(
        help_text="embedding groups: cosine similarity to the nearest other member"
    )

    class Meta:
        model = DuplicateMember
        fields = ["image", "distance", "similarity", "sharpness", "phash"]

    def get_similarity(self, member: DuplicateMember) -> float | None:
        return self.context.get("similarities", {}).get(member.image_id)

    def get_phash(self, member: DuplicateMember) -> str | None:
        features = getattr(member.image, "features", None)
        if features is None or features.phash is None:
            return None
        return f"{features.phash & 0xFFFFFFFFFFFFFFFF:016x}"


class ComponentSerializer(serializers.Serializer[Any]):
    key = serializers.IntegerField(help_text="shared by every group split from the component")
    part = serializers.IntegerField(help_text="this group's place among them, from 1")
    parts = serializers.IntegerField(help_text="groups split from the component")
    images = serializers.IntegerField(help_text="images in the component's groups")


class DuplicateGroupSerializer(serializers.ModelSerializer[DuplicateGroup]):
    members = DuplicateMemberSerializer(many=True, read_only=True)
    suggested_keeper = serializers.SerializerMethodField()
    resolved_by = serializers.CharField(source="resolved_by.username", default=None)
    component = serializers.SerializerMethodField(
        help_text=(
            "null when the group is its whole near-duplicate component; else where it sits in "
            "the chain it was split from (a dataset build keeps the whole chain in one split)"
        )
    )

    class Meta:
        model = DuplicateGroup
        fields = [
            "id",
            "status",
            "method",
            "max_distance",
            "size",
            "component",
            "members",
            "suggested_keeper",
            "keeper",
            "created_at",
            "resolved_at",
            "resolved_by",
        ]

    @extend_schema_field(ComponentSerializer(allow_null=True))
    def get_component(self, group: DuplicateGroup) -> dict[str, int] | None:
        part = self.context.get("components", {}).get(group.pk)
        if part is None:
            return None
        return {"key": part.key, "part": part.part, "parts": part.parts, "images": part.images}

    def get_suggested_keeper(self, group: DuplicateGroup) -> int | None:
        keeper = suggested_keeper(group_images(group))
        return keeper.pk if keeper else None


class ResolveSerializer(serializers.Serializer[Any]):
    keeper = serializers.IntegerField(help_text="id of the image to keep")


class ScanSerializer(serializers.Serializer[Any]):
    method = serializers.ChoiceField(
        choices=[*DuplicateMethod.values, "all"], default=DuplicateMethod.PHASH
    )
    max_distance = serializers.IntegerField(min_value=0, max_value=32, required=False)
    min_similarity = serializers.FloatField(min_value=0.5, max_value=0.999, required=False)


def similarities_of(groups: Iterable[DuplicateGroup]) -> dict[int, float]:
    """Nearest-member similarities of the embedding groups among ``groups`` (one query)."""
    from inference.embeddings import nearest_similarities

    wanted = [
        [member.image_id for member in group.members.all()]
        for group in groups
        if group.method == DuplicateMethod.EMBEDDING
    ]
    return nearest_similarities(groups=wanted) if wanted else {}


class GroupPagination(CursorPagination):
    ordering = "id"
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 200


class DuplicateGroupViewSet(viewsets.ReadOnlyModelViewSet):
    """Near-duplicate groups (pHashes within ``max_distance`` bits, method ``phash``, or
    embeddings at or above a cosine similarity, method ``embedding``). A group is a star of
    its connected component, every member near its centre; ``component`` says which part of
    a longer chain of near-duplicates it is, when the component was split into several.
    ``?status=open`` (default), ``resolved`` or ``dismissed``; ``?method=phash`` or
    ``embedding``. Reviewers resolve a group by naming the keeper (the others go to the trash
    as duplicates) or dismiss it as not duplicates; ``POST scan/`` starts a full scan of one
    method (or ``all``) as a job."""

    serializer_class = DuplicateGroupSerializer
    pagination_class = GroupPagination

    def get_queryset(self) -> Any:
        if self.action != "list":
            return duplicate_groups(status=None).select_related("resolved_by")
        wanted = choice_param(
            self.request, "status", DuplicateStatus.values, default=DuplicateStatus.OPEN
        )
        groups = duplicate_groups(status=wanted).select_related("resolved_by")
        method = choice_param(self.request, "method", DuplicateMethod.values)
        if method:
            groups = groups.filter(method=method)
        return groups

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        # The page's embedding groups get their members' similarities from one read, and
        # every group its place in its component from two.
        if args and self.action in ("list", "retrieve"):
            groups = args[0] if kwargs.get("many") else [args[0]]
            kwargs.setdefault("context", self.get_serializer_context())
            kwargs["context"]["similarities"] = similarities_of(groups)
            kwargs["context"]["components"] = component_parts(groups)
        return super().get_serializer(*args, **kwargs)

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve"):
            return [IsLabeller()]
        return [IsReviewer()]

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=DuplicateStatus.values),
            OpenApiParameter("method", str, enum=DuplicateMethod.values),
        ],
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def _reply(self, group_id: int) -> Response:
        fresh = duplicate_groups(status=None).get(pk=group_id)
        context = {
            "request": self.request,
            "similarities": similarities_of([fresh]),
            "components": component_parts([fresh]),
        }
        return Response(DuplicateGroupSerializer(fresh, context=context).data)

    @extend_schema(request=ResolveSerializer, responses={200: DuplicateGroupSerializer, 409: dict})
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        group = self.get_object()
        serializer = ResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            duplicate_group_resolve(
                group_id=group.pk,
                keeper_id=serializer.validated_data["keeper"],
                actor=api_user(request),
            )
        except DuplicateReviewError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return self._reply(group.pk)

    @extend_schema(request=None, responses={200: DuplicateGroupSerializer, 409: dict})
    @action(detail=True, methods=["post"])
    def dismiss(self, request: Request, pk: str | None = None) -> Response:
        group = self.get_object()
        try:
            duplicate_group_dismiss(group_id=group.pk, actor=api_user(request))
        except DuplicateReviewError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return self._reply(group.pk)

    @extend_schema(request=ScanSerializer, responses={202: JobSerializer})
    @action(detail=False, methods=["post"])
    def scan(self, request: Request) -> Response:
        serializer = ScanSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = duplicates_scan_job_start(
            actor=api_user(request),
            max_distance=data.get("max_distance", default_max_distance()),
            method=data["method"],
            min_similarity=data.get("min_similarity", default_min_similarity()),
        )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


def duplicates_scan_job_start(
    *,
    actor: Any,
    max_distance: int,
    method: str = DuplicateMethod.PHASH,
    min_similarity: float | None = None,
) -> Any:
    """Create the full-scan job and send it once the row commits."""
    params: dict[str, Any] = {"max_distance": max_distance, "method": method}
    if min_similarity is not None:
        params["min_similarity"] = min_similarity
    with transaction.atomic():
        job = job_create(kind=FIND_DUPLICATES_JOB, actor=actor, params=params, total=3)
        job_enqueue(job=job)
    return job
