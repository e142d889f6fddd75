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
    KEEPERS_OWN,
    DuplicateReviewError,
    LabelChoiceInvalid,
    LabelChoiceRequired,
    LabelConflict,
    duplicate_group_dismiss,
    duplicate_group_resolve,
    label_conflict,
    suggested_keeper,
)
from curation.services.duplicates import (
    SCAN_METHODS,
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
    distance = serializers.IntegerField(
        read_only=True, help_text="pHash bits to the group's centre (0 for the centre)"
    )
    evidence = serializers.CharField(
        read_only=True,
        help_text='why the image is in the group, in words ("" when the scan gave none)',
    )
    matches = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text=(
            "local features matched to the centre's under one geometric transform; null for "
            "the centre and for members verified by hashes alone"
        ),
    )
    is_centre = serializers.SerializerMethodField(
        help_text="the image every other member was matched to"
    )

    class Meta:
        model = DuplicateMember
        fields = [
            "image",
            "is_centre",
            "distance",
            "evidence",
            "matches",
            "similarity",
            "sharpness",
            "phash",
        ]

    def get_is_centre(self, member: DuplicateMember) -> bool:
        # The members come prefetched from their group, so ``member.group`` is no query.
        return member.image_id == member.group.centre_id

    def get_similarity(self, member: DuplicateMember) -> float | None:
        return self.context.get("similarities", {}).get(member.image_id)

    def get_phash(self, member: DuplicateMember) -> str | None:
        features = getattr(member.image, "features", None)
        if features is None or features.phash is None:
            return None
        return f"{features.phash & 0xFFFFFFFFFFFFFFFF:016x}"


class LabelOptionSerializer(serializers.Serializer[Any]):
    subclass = serializers.IntegerField(
        source="subclass.pk", help_text="pass as `label` to resolve"
    )
    subclass_name = serializers.CharField(source="subclass.name")
    class_name = serializers.CharField(source="subclass.label_class.name")
    # Declared fields leave the class in the serializer metaclass: no clash with Field.source.
    source = serializers.CharField(source="subclass.source")  # type: ignore[assignment]
    images = serializers.ListField(
        child=serializers.IntegerField(), source="image_ids", help_text="active members with it"
    )


class BadVerdictSerializer(serializers.Serializer[Any]):
    image = serializers.IntegerField()
    bad_reason = serializers.CharField()


class LabelConflictSerializer(serializers.Serializer[Any]):
    labels = LabelOptionSerializer(many=True, source="options")
    bad_images = serializers.SerializerMethodField()
    detail = serializers.CharField(source="describe")

    @extend_schema_field(BadVerdictSerializer(many=True))
    def get_bad_images(self, conflict: LabelConflict) -> list[dict[str, Any]]:
        return [{"image": pk, "bad_reason": reason} for pk, reason in conflict.bad]


class ComponentSerializer(serializers.Serializer[Any]):
    key = serializers.IntegerField(help_text="shared by every group split from the component")
    part = serializers.IntegerField(help_text="this group's place among them, from 1")
    parts = serializers.IntegerField(help_text="groups split from the component")
    images = serializers.IntegerField(help_text="images in the component's groups")


class DuplicateGroupSerializer(serializers.ModelSerializer[DuplicateGroup]):
    members = DuplicateMemberSerializer(many=True, read_only=True)
    suggested_keeper = serializers.SerializerMethodField()
    resolved_by = serializers.CharField(source="resolved_by.username", default=None)
    label_conflict = serializers.SerializerMethodField(
        help_text=(
            "null when the active members agree on the label; else the labels they carry "
            "(and their bad-image verdicts): resolving then needs a `label` choice"
        )
    )
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
            "centre",
            "members",
            "label_conflict",
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

    @extend_schema_field(LabelConflictSerializer(allow_null=True))
    def get_label_conflict(self, group: DuplicateGroup) -> dict[str, Any] | None:
        if group.status != DuplicateStatus.OPEN:
            return None
        conflict = label_conflict(group_images(group))
        return LabelConflictSerializer(conflict).data if conflict else None

    def get_suggested_keeper(self, group: DuplicateGroup) -> int | None:
        keeper = suggested_keeper(group_images(group))
        return keeper.pk if keeper else None


class ResolveSerializer(serializers.Serializer[Any]):
    keeper = serializers.IntegerField(help_text="id of the image to keep")
    # As ``source`` above: a declared field, not Field.label.
    label = serializers.CharField(  # type: ignore[assignment]
        required=False,
        help_text=(
            "the label the keeper takes: the id of a sub-class an active member carries, or "
            f'"{KEEPERS_OWN}" for its own; required when the members disagree on the label '
            "(`label_conflict`)"
        ),
    )

    def validate_label(self, value: str) -> int | str:
        if value == KEEPERS_OWN:
            return KEEPERS_OWN
        if value.isdigit() and int(value) > 0:
            return int(value)
        raise serializers.ValidationError(
            f'Give a sub-class id or "{KEEPERS_OWN}" (the keeper\'s own label).'
        )


class ScanSerializer(serializers.Serializer[Any]):
    method = serializers.ChoiceField(
        choices=[str(m) for m in SCAN_METHODS], default=DuplicateMethod.PHASH
    )
    max_distance = serializers.IntegerField(min_value=0, max_value=32, required=False)
    min_similarity = serializers.FloatField(min_value=0.5, max_value=0.999, required=False)


def similarities_of(groups: Iterable[DuplicateGroup]) -> dict[int, float]:
    """Nearest-member similarities of the embedding groups among ``groups`` (one query)."""
    from inference.embeddings import nearest_similarities

    wanted = [
        [member.image_id for member in group.members.all()]
        for group in groups
        if group.method != DuplicateMethod.PHASH
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

    @extend_schema(
        request=ResolveSerializer,
        responses={200: DuplicateGroupSerializer, 400: dict, 409: dict},
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        """Keep ``keeper`` and trash the other members as its duplicates. When the members
        disagree on the label, ``label`` must say which one the keeper takes: without it the
        answer is 409 with the conflicting ``labels``, and nothing changes."""
        group = self.get_object()
        serializer = ResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            duplicate_group_resolve(
                group_id=group.pk,
                keeper_id=serializer.validated_data["keeper"],
                actor=api_user(request),
                label=serializer.validated_data.get("label"),
            )
        except LabelChoiceRequired as exc:
            conflict = LabelConflictSerializer(exc.conflict).data
            return Response(
                {**conflict, "detail": str(exc), "code": "label_choice_required"},
                status=status.HTTP_409_CONFLICT,
            )
        except LabelChoiceInvalid as exc:
            return Response(
                {"detail": str(exc), "errors": {"label": [str(exc)]}},
                status=status.HTTP_400_BAD_REQUEST,
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
