"""REST: production prediction logs from serving systems."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Role
from accounts.permissions import IsLabeller, IsReviewer, api_user
from config.api import JSONObjectParser, request_fields
from inference.embeddings import ood_at_least, ood_param, with_ood_scores
from inference.models import PredictionLog
from inference.production import (
    PROBABILITIES,
    SCORE_KINDS,
    LogEntry,
    LogRejected,
    prediction_log_record,
    prediction_logs_record,
)

MAX_BATCH = 1000


class PredictionItemSerializer(serializers.Serializer[Any]):
    # The stubs read this as overriding Field.label; the serializer metaclass takes
    # declared fields off the class, so there is no clash at run time.
    label = serializers.CharField(max_length=500)  # type: ignore[assignment]
    # Its range depends on score_kind; the service judges it (probabilities in [0, 1] that sum
    # to at most 1, or finite logits).
    score = serializers.FloatField(help_text="a probability, or a logit with score_kind=logits")


class _JSONList(serializers.ListField):
    """A list that multipart clients may send as one JSON string field."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError("not valid JSON") from None
        return super().to_internal_value(data)


class LogEntrySerializer(serializers.Serializer[Any]):
    # A plain file: Loupe's one decoding function judges the bytes, nothing before it.
    image = serializers.FileField(required=False, help_text="the image bytes (multipart)")
    image_sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$", required=False, help_text="or the sha256 of a stored image"
    )
    model_version = serializers.CharField(
        max_length=100, help_text="as the serving system names it"
    )
    predictions = _JSONList(
        child=PredictionItemSerializer(), min_length=1, max_length=20, help_text="top-k"
    )
    score_kind = serializers.ChoiceField(
        choices=list(SCORE_KINDS),
        default=PROBABILITIES,
        help_text=(
            "probabilities (each in [0, 1], summing to at most 1 + 0.01), or logits, which are "
            "stored as the softmax over the values sent"
        ),
    )
    logged_at = serializers.DateTimeField(required=False, help_text="client time")
    client = serializers.CharField(
        max_length=100, required=False, help_text="serving system or app id; default: your user"
    )
    request_id = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="makes the call idempotent"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("image")) == bool(attrs.get("image_sha256")):
            raise serializers.ValidationError("Send either image or image_sha256.")
        return attrs


class BatchSerializer(serializers.Serializer[Any]):
    logs = serializers.ListField(child=LogEntrySerializer(), min_length=1, max_length=MAX_BATCH)


class PredictionLogSerializer(serializers.ModelSerializer[PredictionLog]):
    image_sha256 = serializers.CharField(source="image.sha256", read_only=True)
    ood_score = serializers.FloatField(
        read_only=True,
        default=None,
        help_text="the image's out-of-distribution score (listings only; null: not scored)",
    )
    model_version_number = serializers.IntegerField(
        source="model_version.number", read_only=True, allow_null=True
    )

    class Meta:
        model = PredictionLog
        fields = [
            "id",
            "image",
            "image_sha256",
            "model_version_label",
            "model_version_number",
            "class_names",
            "scores",
            "top1_name",
            "top1_score",
            "logged_at",
            "received_at",
            "client",
            "request_id",
            "verdict",
            "true_subclass",
            "out_of_scope_subject",
            "ood_score",
            "reviewed_by",
            "reviewed_at",
        ]
        read_only_fields = fields


def entry_from(fields: dict[str, Any], *, default_client: str) -> LogEntry:
    upload = fields.get("image")
    return LogEntry(
        client=fields.get("client") or default_client,
        model_version_label=fields["model_version"],
        class_names=[p["label"] for p in fields["predictions"]],
        scores=[p["score"] for p in fields["predictions"]],
        logged_at=fields.get("logged_at"),
        request_id=fields.get("request_id") or "",
        image_data=upload.read() if upload else None,
        image_name=upload.name if upload else "",
        image_sha256=fields.get("image_sha256") or "",
        score_kind=fields.get("score_kind") or PROBABILITIES,
    )


class NewestLogsFirst(CursorPagination):
    """Pages of logs, newest first, on the received_at index: constant time at any depth."""

    ordering = ("-received_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class PredictionLogViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Production prediction logs. POST one transaction (JSON or multipart: the image as a file
    or the sha256 of a stored image, the model version label, the top-k predictions, client
    time, client id and an optional request id); the same (client, request id) again answers
    200 with the first log (409 to another account without the reviewer role). POST …/batch/
    logs up to 1,000 transactions by image sha256.
    Reading logs needs the reviewer role, as the production dashboard and review pages do;
    any signed-in user or token (a serving system's machine account) may write them."""

    serializer_class = PredictionLogSerializer
    pagination_class = NewestLogsFirst
    parser_classes = [JSONObjectParser, MultiPartParser, FormParser]

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve"):
            return [IsReviewer()]
        return [IsLabeller()]

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # schema generation reads no rows
            return PredictionLog.objects.none()
        logs = PredictionLog.objects.select_related("image", "model_version").order_by(
            "-received_at", "-id"
        )
        if self.action not in ("list", "retrieve"):
            return logs
        # ?ood_min= keeps the logs whose image scores at least that as unlike the library.
        raw = self.request.query_params.get("ood_min")
        if raw is not None:
            minimum = ood_param(raw)
            if minimum is None:
                raise ValidationError({"ood_min": ["ood_min must be a number from 0 to 2."]})
            logs = logs.filter(ood_at_least(minimum, image_field="image_id"))
        return with_ood_scores(logs)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "ood_min", float, description="only images with an OOD score at least this"
            )
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=LogEntrySerializer, responses={201: PredictionLogSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        fields = request_fields(request)
        serializer = LogEntrySerializer(data={key: fields.get(key) for key in fields})
        serializer.is_valid(raise_exception=True)
        actor = api_user(request)
        entry = entry_from(serializer.validated_data, default_client=actor.get_username())
        try:
            logged = prediction_log_record(entry=entry, actor=actor)
        except LogRejected as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        if (
            not logged.created
            and logged.log.logged_by_id != actor.pk
            and not actor.has_role(Role.REVIEWER)
        ):
            # A retry answers with the first log; anyone else who names the same request id
            # must not read a log through it (reading needs the reviewer role).
            return Response(
                {"detail": "This client and request id were logged by another account."},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(
            PredictionLogSerializer(logged.log).data,
            status=status.HTTP_201_CREATED if logged.created else status.HTTP_200_OK,
        )

    @extend_schema(request=BatchSerializer, responses={200: dict})
    @action(detail=False, methods=["post"], parser_classes=[JSONObjectParser])
    def batch(self, request: Request) -> Response:
        serializer = BatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        actor = api_user(request)
        default_client = actor.get_username()
        entries = [
            entry_from(fields, default_client=default_client)
            for fields in serializer.validated_data["logs"]
        ]
        outcomes = prediction_logs_record(entries=entries, actor=actor)
        results = [
            {
                "index": o.index,
                "id": o.log.pk if o.log else None,
                "created": o.created,
                "error": o.error,
            }
            for o in outcomes
        ]
        return Response(
            {
                "created": sum(1 for o in outcomes if o.created),
                "existing": sum(1 for o in outcomes if o.log and not o.created),
                "rejected": sum(1 for o in outcomes if o.error),
                "results": results,
            }
        )
