from __future__ import annotations

import uuid
from typing import Any

from django.core.files.storage import default_storage
from django.db import transaction
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsLabeller, IsReviewer, api_user
from config.api import JSONObjectParser, request_fields
from config.query import choice_param
from curation import selectors
from curation.filters import ImageFilter, JobFilter, SubClassFilter
from curation.models import (
    Image,
    ImportBatch,
    ImportKind,
    ImportOutcome,
    LabelClass,
    LabelReason,
    SubClass,
)
from curation.serializers import (
    ArchiveImportSerializer,
    ImageRelabelSerializer,
    ImageRestoreSerializer,
    ImageSerializer,
    ImageTrashSerializer,
    ImageUploadSerializer,
    ImportBatchSerializer,
    ImportItemSerializer,
    JobSerializer,
    LabelClassSerializer,
    LabelClassWriteSerializer,
    LabelEventSerializer,
    SubClassSerializer,
    SubClassWriteSerializer,
)
from curation.services.images import image_relabel, image_restore, image_trash, import_batch_create
from curation.services.imports import Destination, archive_inspect, upload_import
from curation.services.jobs import job_create, job_enqueue
from curation.services.processing import ARCHIVES_PREFIX
from curation.services.taxonomy import (
    class_create,
    class_delete,
    class_update,
    subclass_create,
    subclass_delete,
    subclass_move,
    subclass_update,
)
from curation.serving import image_file_response
from curation.tasks import enqueue_processing

SIMILAR_DEFAULT = 20
SIMILAR_MAX = 100


class SimilarImageSerializer(serializers.Serializer[Any]):
    similarity = serializers.FloatField(help_text="cosine similarity of the embeddings, -1 to 1")
    image = ImageSerializer()


class SimilarImagesSerializer(serializers.Serializer[Any]):
    image = serializers.IntegerField(help_text="the image asked about")
    model_version = serializers.IntegerField(help_text="the embedding model's version number")
    results = SimilarImageSerializer(many=True)


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ImageViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Images of the library. Upload with POST (multipart), relabel with PATCH carrying the
    version you saw, trash with DELETE and a reason, restore with POST …/restore/."""

    serializer_class = ImageSerializer
    pagination_class = NewestFirst
    filterset_class = ImageFilter
    parser_classes = [JSONObjectParser, MultiPartParser, FormParser]

    def get_queryset(self) -> Any:
        return selectors.image_list()

    def get_permissions(self) -> list[Any]:
        if self.action in ("destroy", "restore", "embeddings"):
            return [IsReviewer()]
        return [IsLabeller()]

    @extend_schema(request=ImageUploadSerializer, responses={201: dict, 200: dict, 400: dict})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        files = request.FILES.getlist("files") + request.FILES.getlist("file")
        # A plain dict of the fields we read: copying request.data would deep-copy the uploads,
        # which fails for those spilled to temporary files.
        fields = request_fields(request)
        data: dict[str, Any] = {
            key: fields.get(key) for key in ("subclass", "label_class", "batch") if key in fields
        }
        if "class" in fields and "label_class" not in data:
            data["label_class"] = fields.get("class")
        data["files"] = files
        serializer = ImageUploadSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        subclass = serializer.validated_data.get("subclass")
        batch_id = serializer.validated_data.get("batch")
        actor = api_user(request)
        batch = None  # a new upload batch, made with the rows of its files
        if batch_id is not None:
            batch = ImportBatch.objects.filter(
                pk=batch_id, kind=ImportKind.UPLOAD, created_by=actor
            ).first()
            if batch is None:
                raise ValidationError({"batch": [f"No upload batch {batch_id} of yours."]})
        report = upload_import(
            files=[(f.name, f) for f in files],
            destination=Destination(subclass=subclass, from_folders=False),
            actor=actor,
            batch=batch,
        )
        results = report.results
        enqueue_processing(
            [r.image.pk for r in results if r.outcome == ImportOutcome.CREATED and r.image]
        )
        per_file = [
            {
                "name": r.name,
                "outcome": r.outcome,
                "reason": r.reason,
                "image": ImageSerializer(r.image, context={"request": request}).data
                if r.image
                else None,
            }
            for r in results
        ]
        counts = {o.value: sum(1 for r in results if r.outcome == o) for o in ImportOutcome}
        body = {"batch": report.batch.pk, **counts, "files": per_file}
        code: int
        if counts["created"]:
            code = status.HTTP_201_CREATED
        elif counts["duplicate"]:
            code = status.HTTP_200_OK
        else:
            rejected = "; ".join(f"{r.name}: {r.reason}" for r in results)
            body["detail"] = f"No file was accepted. {rejected}"[:2000]
            code = status.HTTP_400_BAD_REQUEST
        return Response(body, status=code)

    @extend_schema(request=ImageRelabelSerializer, responses={200: ImageSerializer, 409: dict})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        image = self.get_object()
        serializer = ImageRelabelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        image = image_relabel(
            image_id=image.pk,
            subclass=serializer.validated_data["subclass"],
            actor=api_user(request),
            reason=LabelReason.API,
            expected_version=serializer.validated_data["version"],
            note=serializer.validated_data.get("note", ""),
        )
        return Response(ImageSerializer(self._reload(image), context={"request": request}).data)

    @extend_schema(
        parameters=[OpenApiParameter("reason", str, description="why it goes to the trash")],
        request=ImageTrashSerializer,
        responses={200: ImageSerializer},
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        image = self.get_object()
        payload = request.query_params.dict()
        if hasattr(request.data, "dict"):  # a form body: one value per field, not lists
            payload.update(request.data.dict())
        elif isinstance(request.data, dict):
            payload.update(request.data)
        serializer = ImageTrashSerializer(data=payload)
        serializer.is_valid(raise_exception=True)
        image = image_trash(
            image_id=image.pk,
            actor=api_user(request),
            note=serializer.validated_data["reason"],
            expected_version=serializer.validated_data.get("version"),
        )
        return Response(ImageSerializer(self._reload(image), context={"request": request}).data)

    @extend_schema(request=ImageRestoreSerializer, responses={200: ImageSerializer})
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        image = self.get_object()
        serializer = ImageRestoreSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        image = image_restore(
            image_id=image.pk,
            actor=api_user(request),
            expected_version=serializer.validated_data.get("version"),
        )
        return Response(ImageSerializer(self._reload(image), context={"request": request}).data)

    @extend_schema(responses={200: LabelEventSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def history(self, request: Request, pk: str | None = None) -> Response:
        image = self.get_object()
        events = selectors.image_history(image=image)[:500]
        return Response(LabelEventSerializer(events, many=True).data)

    @extend_schema(responses={(200, "image/*"): bytes})
    @action(detail=True, methods=["get"])
    def file(self, request: Request, pk: str | None = None) -> FileResponse:
        return image_file_response(self.get_object())

    @extend_schema(
        description="What a page shows: the original where browsers display its format, else "
        "a full-size JPEG rendition the worker makes beside the thumbnail (TIFF); 404 until it "
        "exists. The original stays at …/file/.",
        responses={(200, "image/*"): bytes},
    )
    @action(detail=True, methods=["get"])
    def display(self, request: Request, pk: str | None = None) -> FileResponse:
        return image_file_response(self.get_object(), display=True)

    @extend_schema(responses={(200, "image/jpeg"): bytes})
    @action(detail=True, methods=["get"])
    def thumbnail(self, request: Request, pk: str | None = None) -> FileResponse:
        return image_file_response(self.get_object(), thumbnail=True)

    @extend_schema(
        parameters=[OpenApiParameter("k", int, description="how many images (1-100, default 20)")],
        responses={200: SimilarImagesSerializer, 400: dict, 409: dict},
    )
    @action(detail=True, methods=["get"])
    def similar(self, request: Request, pk: str | None = None) -> Response:
        """The active images most like this one (cosine similarity of embeddings), most
        similar first. 409 when the image has no embedding yet."""
        from inference.embeddings import EmbeddingError, embedding_version, similar_images

        image = self.get_object()
        raw = request.query_params.get("k", str(SIMILAR_DEFAULT))
        # isdecimal, not isdigit: int() refuses "²", which isdigit() accepts.
        if not (raw.isdecimal() and len(raw) <= len(str(SIMILAR_MAX))) or not (
            1 <= int(raw) <= SIMILAR_MAX
        ):
            raise ValidationError({"k": [f"k must be a whole number from 1 to {SIMILAR_MAX}."]})
        try:
            version = embedding_version()
        except EmbeddingError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        found = (
            similar_images(
                image_id=image.pk, k=int(raw), version=version, images=selectors.image_list()
            )
            if version is not None
            else None
        )
        if found is None:
            return Response(
                {
                    "detail": f"Image {image.pk} has no embedding yet; they are computed after "
                    "import, or run `manage.py compute_embeddings`."
                },
                status=status.HTTP_409_CONFLICT,
            )
        data = {
            "image": image.pk,
            "model_version": version.number if version else None,
            "results": [{"similarity": s.similarity, "image": s.image} for s in found],
        }
        return Response(SimilarImagesSerializer(data, context={"request": request}).data)

    @extend_schema(request=None, responses={202: JobSerializer, 409: dict})
    @action(detail=False, methods=["post"], url_path="embeddings")
    def embeddings(self, request: Request) -> Response:
        """Start the embeddings job: embeddings and OOD scores of every active image that has
        none, then a fresh similarity index (reviewers). 409 when no model has an embedding
        output."""
        from inference.embeddings import EmbeddingError, embeddings_job_start

        try:
            job = embeddings_job_start(actor=api_user(request))
        except EmbeddingError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    def _reload(self, image: Image) -> Image:
        return selectors.image_list().get(pk=image.pk)


class ImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Zip imports run as jobs: POST an archive, get 202 with the job to follow."""

    serializer_class = ImportBatchSerializer
    pagination_class = NewestFirst
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> Any:
        return selectors.import_batch_list()

    @extend_schema(request=ArchiveImportSerializer, responses={202: dict, 400: dict})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ArchiveImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["archive"]
        members = archive_inspect(upload)  # refuses a bad archive before anything is stored
        if not members:
            raise ValidationError({"archive": ["The archive holds no files."]})
        upload.seek(0)
        name = default_storage.save(f"{ARCHIVES_PREFIX}/{uuid.uuid4().hex}.zip", upload)
        subclass = serializer.validated_data.get("subclass")
        inbox = serializer.validated_data["inbox"]
        actor = api_user(request)
        with transaction.atomic():
            job = job_create(
                kind="curation.import_archive",
                actor=actor,
                total=len(members),
                params={
                    "archive": name,
                    "subclass_id": subclass.pk if subclass else None,
                    "from_folders": not (inbox or subclass),
                    "source": serializer.validated_data["source"],
                    "filename": upload.name[:200],
                },
            )
            batch = import_batch_create(
                kind=ImportKind.ZIP, name=upload.name, actor=actor, job_id=job.pk
            )
            job.params["batch_id"] = batch.pk
            job.save(update_fields=["params"])
            job_enqueue(job=job)
        return Response(
            {
                "job": JobSerializer(job).data,
                "batch": ImportBatchSerializer(batch).data,
                "entries": len(members),
            },
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        parameters=[OpenApiParameter("outcome", str, enum=ImportOutcome.values)],
        responses={200: ImportItemSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def items(self, request: Request, pk: str | None = None) -> Response:
        batch = self.get_object()
        queryset = selectors.import_items(batch=batch)
        outcome = choice_param(request, "outcome", ImportOutcome.values)
        if outcome:
            queryset = queryset.filter(outcome=outcome)
        paginator = NewestFirst()
        paginator.ordering = "id"
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(ImportItemSerializer(page, many=True).data)


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = JobSerializer
    pagination_class = NewestFirst
    filterset_class = JobFilter

    def get_queryset(self) -> Any:
        return selectors.job_list()


class LabelClassViewSet(viewsets.ModelViewSet):
    """Classes with their sub-classes. Reviewers create, rename and delete; deleting needs an
    empty class."""

    serializer_class = LabelClassSerializer
    pagination_class = None
    filterset_class = None

    def get_queryset(self) -> Any:
        return selectors.class_list()

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve"):
            return [IsLabeller()]
        return [IsReviewer()]

    @extend_schema(request=LabelClassWriteSerializer, responses={201: LabelClassSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = LabelClassWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "name" not in serializer.validated_data:
            raise ValidationError({"name": ["A class needs a name."]})
        label_class = class_create(actor=api_user(request), **serializer.validated_data)
        return Response(
            LabelClassSerializer(selectors.class_list().get(pk=label_class.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=LabelClassWriteSerializer, responses={200: LabelClassSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        label_class = self.get_object()
        serializer = LabelClassWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        class_update(label_class=label_class, actor=api_user(request), **serializer.validated_data)
        return Response(LabelClassSerializer(selectors.class_list().get(pk=label_class.pk)).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        class_delete(label_class=self.get_object(), actor=api_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SubClassViewSet(viewsets.ModelViewSet):
    """Sub-classes. PATCH with another ``label_class`` moves the sub-class and its images there:
    that is how classes merge (and split), and the move is recorded."""

    serializer_class = SubClassSerializer
    pagination_class = None
    filterset_class = SubClassFilter

    def get_queryset(self) -> Any:
        return selectors.subclass_list()

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve"):
            return [IsLabeller()]
        return [IsReviewer()]

    @extend_schema(request=SubClassWriteSerializer, responses={201: SubClassSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = SubClassWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "name" not in data or "label_class" not in data:
            raise ValidationError({"detail": ["A sub-class needs a name and a label_class."]})
        subclass = subclass_create(
            label_class=data["label_class"],
            name=data["name"],
            source=data.get("source", "real"),
            actor=api_user(request),
        )
        return Response(SubClassSerializer(subclass).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=SubClassWriteSerializer, responses={200: SubClassSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        subclass = self.get_object()
        serializer = SubClassWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        actor = api_user(request)
        with transaction.atomic():
            if "name" in data or "source" in data:
                subclass = subclass_update(
                    subclass=subclass,
                    actor=actor,
                    name=data.get("name"),
                    source=data.get("source"),
                )
            target = data.get("label_class")
            if target is not None and target.pk != subclass.label_class_id:
                subclass = subclass_move(subclass=subclass, to_class=target, actor=actor)
        return Response(SubClassSerializer(selectors.subclass_list().get(pk=subclass.pk)).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        subclass_delete(subclass=self.get_object(), actor=api_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


def get_subclass(pk: int) -> SubClass:
    return get_object_or_404(SubClass.objects.select_related("label_class"), pk=pk)


def get_class(pk: int) -> LabelClass:
    return get_object_or_404(LabelClass, pk=pk)
