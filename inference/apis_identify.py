"""REST API of bulk identification: start a run over a scope."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsReviewer, api_user
from curation.models import Source
from curation.serializers import JobSerializer
from inference.bulk import IdentificationError, Scope, identification_start
from inference.models import ModelVersion


class IdentificationSerializer(serializers.Serializer[Any]):
    model_version = serializers.SlugRelatedField(
        slug_field="number",
        queryset=ModelVersion.objects.all(),
        required=False,
        allow_null=True,
        help_text="version number, as in POST /api/v1/predict/; the active version when left out",
    )
    labelled = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="false: the inbox"
    )
    label_class = serializers.IntegerField(required=False, allow_null=True, default=None)
    subclass = serializers.IntegerField(required=False, allow_null=True, default=None)
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=Source.choices, required=False, allow_null=True, default=None
    )
    import_batch = serializers.IntegerField(required=False, allow_null=True, default=None)


class IdentificationViewSet(viewsets.GenericViewSet):
    """Bulk identification runs. POST a scope (``labelled: false`` for the inbox, a
    ``label_class`` such as a holding class, a ``subclass``, ``source`` or ``import_batch``) and
    optionally a ``model_version``; the predictions that version lacks over the scope are
    computed as a job (202, the job). Follow it at /api/v1/jobs/<id>/."""

    permission_classes = [IsReviewer]
    serializer_class = IdentificationSerializer
    pagination_class = None

    @extend_schema(request=IdentificationSerializer, responses={202: JobSerializer})
    def create(self, request: Request) -> Response:
        serializer = IdentificationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        version = fields.pop("model_version", None)
        try:
            job = identification_start(
                scope=Scope(**fields), version=version, actor=api_user(request)
            )
        except IdentificationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
