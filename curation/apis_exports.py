"""REST API for downloading dataset exports (reviewers): list a version's exports with their
files, fetch a file (byte ranges, or a signed URL with object storage), fetch a folder tree
as one streamed tar."""

from __future__ import annotations

import json
from typing import Any

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsReviewer
from curation.models import DatasetVersion
from curation.selectors_exports import (
    ExportDownloads,
    ExportUnavailable,
    dataset_export_get,
    dataset_exports,
)
from curation.serving_exports import export_archive_response, export_file_response


class AnyFileRenderer(BaseRenderer):
    """Lets a download answer a client that asks for its type (``Accept: application/x-tar``)
    instead of 406; the file itself is a Django response that no renderer touches, and an
    error is still JSON."""

    media_type = "*/*"
    format = "file"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return json.dumps(data).encode()


class ExportFileSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    size = serializers.IntegerField()
    url = serializers.CharField()


class ExportSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="job.pk")
    format = serializers.CharField()
    letterbox = serializers.IntegerField(source="job.params.letterbox", allow_null=True)
    shard_size = serializers.IntegerField(source="job.params.shard_size", allow_null=True)
    hard_links = serializers.SerializerMethodField()
    status = serializers.CharField(source="job.status")
    images = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="job.created_by.username", default=None)
    created_at = serializers.DateTimeField(source="job.created_at")
    finished_at = serializers.DateTimeField(source="job.finished_at", allow_null=True)
    storage = serializers.CharField()
    replaced_by = serializers.IntegerField(
        allow_null=True, help_text="the newer export that replaced this one's files"
    )
    files = serializers.SerializerMethodField(
        help_text="metadata (manifest.csv, label_map.json, dataset.json) and shards"
    )
    archive = serializers.SerializerMethodField(
        help_text="folder exports: the whole tree as one tar, streamed (not resumable)"
    )

    def get_hard_links(self, export: ExportDownloads) -> bool:
        return bool(export.job.params.get("hard_links", False))

    def get_images(self, export: ExportDownloads) -> int | None:
        images = export.job.result.get("images")
        return int(images) if images is not None else None

    def _url(self, route: str, export: ExportDownloads, **kwargs: Any) -> str:
        path = reverse(
            route,
            kwargs={"version_pk": export.job.params["version_id"], "pk": export.job.pk, **kwargs},
        )
        return str(self.context["request"].build_absolute_uri(path))

    @extend_schema_field(ExportFileSerializer(many=True))
    def get_files(self, export: ExportDownloads) -> list[dict[str, Any]]:
        if not export.available:
            return []
        return [
            {**f, "url": self._url("api:dataset-export-file", export, name=f["name"])}
            for f in export.files
        ]

    def get_archive(self, export: ExportDownloads) -> str | None:
        if not export.has_archive:
            return None
        return self._url("api:dataset-export-archive", export)


def _version(version_pk: int) -> DatasetVersion:
    return get_object_or_404(DatasetVersion, pk=version_pk)


def _export(version_pk: int, pk: int) -> ExportDownloads:
    try:
        return dataset_export_get(version=_version(version_pk), export_id=pk)
    except ExportUnavailable as exc:
        raise NotFound(str(exc)) from None


class ExportListView(APIView):
    """The version's exports, newest first (the newest 100): each with its files and their
    download URLs once finished; an export replaced by a newer one to the same folder says
    which, and offers nothing."""

    permission_classes = [IsReviewer]

    @extend_schema(responses={200: ExportSerializer(many=True)})
    def get(self, request: Request, version_pk: int) -> Response:
        exports = dataset_exports(version=_version(version_pk))
        return Response(ExportSerializer(exports, many=True, context={"request": request}).data)


class ExportDetailView(APIView):
    """One export and its files."""

    permission_classes = [IsReviewer]

    @extend_schema(responses={200: ExportSerializer})
    def get(self, request: Request, version_pk: int, pk: int) -> Response:
        export = _export(version_pk, pk)
        return Response(ExportSerializer(export, context={"request": request}).data)


class ExportFileView(APIView):
    """One file of an export: a shard, ``manifest.csv``, ``label_map.json``, ``dataset.json``
    or, for a folder tree, a file the manifest names. Byte ranges (``Range: bytes=N-``) resume
    a broken download; with object storage the answer is a 302 to a signed URL that works for
    five minutes."""

    permission_classes = [IsReviewer]
    renderer_classes = [JSONRenderer, AnyFileRenderer]

    @extend_schema(
        # The file is the answer whatever ``?format`` asks for: no such choice to document.
        parameters=[OpenApiParameter("format", exclude=True)],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            (206, "application/octet-stream"): OpenApiTypes.BINARY,
            302: OpenApiResponse(description="object storage: a signed URL to the file"),
            416: OpenApiResponse(description="the range begins past the end of the file"),
        },
    )
    def get(self, request: Request, version_pk: int, pk: int, name: str) -> Any:
        export = _export(version_pk, pk)
        try:
            return export_file_response(request, export=export, name=name)
        except ExportUnavailable as exc:
            raise NotFound(str(exc)) from None


class ExportArchiveView(APIView):
    """A folder export as one tar (``<folder>/<split>/<class>/<file>`` and the metadata),
    streamed as it is read; not resumable, so large trees are better fetched file by file
    from the manifest."""

    permission_classes = [IsReviewer]
    renderer_classes = [JSONRenderer, AnyFileRenderer]

    @extend_schema(
        parameters=[OpenApiParameter("format", exclude=True)],
        responses={(200, "application/x-tar"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, version_pk: int, pk: int) -> Any:
        export = _export(version_pk, pk)
        if not export.has_archive:
            raise NotFound(f"Export #{pk} is made of shards; download them one by one.")
        return export_archive_response(export)
