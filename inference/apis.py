from __future__ import annotations

import io
from typing import Any

from django.http import QueryDict
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsLabeller, IsReviewer, api_user
from config.api import JSONObjectParser, request_fields
from curation.imaging import ImageRejected
from curation.serializers import JobSerializer
from inference.models import ModelVersion
from inference.preprocessing import PreprocessSpec
from inference.serializers import (
    ModelUploadSerializer,
    ModelVersionSerializer,
    ModelVersionUpdateSerializer,
    PredictSerializer,
)
from inference.services import (
    label_classes_create,
    model_version_activate,
    model_version_update,
    predict,
)
from inference.uploads import model_upload_start
from inference.validation import ModelRejected


def _refused(message: str) -> Response:
    return Response({"detail": message}, status=status.HTTP_400_BAD_REQUEST)


class ModelVersionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Model versions. Upload with POST (multipart: ``onnx`` file, ``labels`` JSON file and the
    preprocessing fields; validated as a job); activate with POST …/activate/ (recomputes
    suggestions as a job)."""

    serializer_class = ModelVersionSerializer
    pagination_class = None
    parser_classes = [JSONObjectParser, MultiPartParser, FormParser]

    def get_queryset(self) -> Any:
        return ModelVersion.objects.select_related("uploaded_by").order_by("-number")

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve"):
            return [IsLabeller()]
        return [IsReviewer()]

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        return Response(ModelVersionSerializer(version, context={"detail": True}).data)

    @extend_schema(
        request=ModelUploadSerializer,
        responses={202: JobSerializer},
        description=(
            "Upload a model: the size, label map, preprocessing and node count are checked "
            "now (400 names the problem); the onnx checker and a dry run follow in the worker "
            "as a job (202 with the job, `Location` its URL). When the job succeeds its result "
            "names the new version (`model_version`, `model_version_id`); when the model is "
            "refused the job fails with the reason as its message. No version exists, and "
            "none can be activated, before the job succeeds."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Read the fields one by one: copying request.data would deep-copy the uploads.
        body = request_fields(request)
        data: dict[str, Any] = {key: body.get(key) for key in body}
        for key in ("mean", "std"):
            if isinstance(body, QueryDict):
                values = [v for v in body.getlist(key) if v != ""]
                # "0.485,0.456,0.406" in one form field is accepted too.
                if len(values) == 1 and isinstance(values[0], str) and "," in values[0]:
                    values = [v.strip() for v in values[0].split(",") if v.strip()]
                data[key] = values
        serializer = ModelUploadSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        labels = fields["labels"].read() if fields.get("labels") else fields["label_map"]
        spec = PreprocessSpec(
            input_size=fields["input_size"],
            layout=fields["layout"],
            channel_order=fields["channel_order"],
            scale=fields["scale"],
            mean=tuple(fields["mean"]),
            std=tuple(fields["std"]),
            resize_mode=fields["resize_mode"],
        )
        try:
            job = model_upload_start(
                onnx_file=fields["onnx"],
                labels=labels,
                name=fields.get("name") or fields["onnx"].name.rsplit(".", 1)[0],
                actor=api_user(request),
                spec=spec,
                output_kind=fields["output_kind"],
                embedding_output=fields["embedding_output"],
                notes=fields["notes"],
                activate=fields["activate"],
                create_classes=fields["create_classes"],
            )
        except ModelRejected as exc:
            return _refused(f"Model refused: {exc}")
        return Response(
            JobSerializer(job).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": reverse("api:job-detail", args=[job.pk])},
        )

    @extend_schema(request=ModelVersionUpdateSerializer, responses={200: ModelVersionSerializer})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        serializer = ModelVersionUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = model_version_update(version=version, **serializer.validated_data)
        return Response(ModelVersionSerializer(version, context={"detail": True}).data)

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        version = self.get_object()
        job = model_version_activate(version=version, actor=api_user(request))
        version.refresh_from_db()
        return Response(
            {
                "model_version": ModelVersionSerializer(version).data,
                "job": JobSerializer(job).data if job else None,
            }
        )

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"], url_path="create-classes")
    def create_classes(self, request: Request, pk: str | None = None) -> Response:
        """Create a library class for every label name that matches none."""
        version = self.get_object()
        created = label_classes_create(version=version, actor=api_user(request))
        return Response(
            {
                "created_classes": created,
                "model_version": ModelVersionSerializer(version, context={"detail": True}).data,
            }
        )


class PredictViewSet(viewsets.ViewSet):
    """Top-k class scores for an uploaded image from the active model version, or the version
    named by ``model_version``; preprocessed exactly as stored suggestions are."""

    permission_classes = [IsLabeller]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request=PredictSerializer, responses={200: dict})
    def create(self, request: Request) -> Response:
        body = request_fields(request)
        serializer = PredictSerializer(
            data={key: body.get(key) for key in ("file", "model_version", "k") if key in body}
        )
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        version = None
        if fields.get("model_version"):
            version = ModelVersion.objects.filter(number=fields["model_version"]).first()
            if version is None:
                raise NotFound(f"No model version v{fields['model_version']}.")
        data = fields["file"].read()
        try:
            version, result = predict(stream=io.BytesIO(data), version=version, k=fields["k"])
        except ImageRejected as exc:
            return _refused(f"Image refused: {exc}")
        except LookupError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        log_id = None
        if str(body.get("log", "")).lower() in ("1", "true", "yes", "on"):
            log_id = _log_prediction(request, data, fields["file"].name, version, result)
        return Response(
            {
                "log_id": log_id,
                "model_version": version.number,
                "model_name": version.name,
                "predictions": [
                    {"index": index, "label": name, "score": score}
                    for index, name, score in zip(
                        result.indices, result.names, result.scores, strict=True
                    )
                ],
            }
        )


def _log_prediction(
    request: Request, data: bytes, name: str, version: ModelVersion, result: Any
) -> int | None:
    """``log=true``: record the prediction as a production log (``client`` and ``request_id``
    optional form fields, as on /prediction-logs/)."""
    from inference.production import LogEntry, LogRejected, prediction_log_record

    body = request_fields(request)
    actor = api_user(request)
    entry = LogEntry(
        client=str(body.get("client") or actor.get_username())[:100],
        model_version_label=f"v{version.number}",  # as clients and the pages name it
        class_names=list(result.names),
        scores=[float(score) for score in result.scores],
        request_id=str(body.get("request_id") or "")[:200],
        image_data=data,
        image_name=name,
    )
    try:
        return prediction_log_record(entry=entry, actor=actor).log.pk
    except LogRejected:
        return None
