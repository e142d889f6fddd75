"""REST API of the quick trainer (trainings are jobs) and of the label-error ranking (an
evaluation run over the labelled library with cross-validated heads)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsReviewer, api_user
from curation.apis import NewestFirst
from curation.models import DatasetVersion, Job
from curation.serializers import JobSerializer
from inference.apis_evaluation import EvaluationSerializer
from inference.evaluation import EvaluationError
from inference.label_errors import (
    DEFAULT_FOLDS,
    DEFAULT_REPEATS,
    DEFAULT_SEED,
    MAX_FOLDS,
    MAX_REPEATS,
    label_error_ranking_start,
)
from inference.trainer import (
    DEFAULT_C,
    DEFAULT_MAX_ITER,
    MAX_ITER_LIMIT,
    TRAIN_KIND,
    TrainingError,
    training_start,
)


class TrainingStartSerializer(serializers.Serializer[Any]):
    dataset = serializers.CharField(help_text="dataset version name")
    C = serializers.FloatField(
        default=DEFAULT_C, min_value=1e-6, help_text="inverse regularisation strength"
    )
    max_iter = serializers.IntegerField(
        default=DEFAULT_MAX_ITER, min_value=1, max_value=MAX_ITER_LIMIT
    )
    activate = serializers.BooleanField(
        default=False, help_text="activate the trained version when it is registered"
    )


class TrainingViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Job]
):
    """Quick-trainer runs. POST ``{"dataset": NAME}`` starts one as a job (202); its
    ``result`` names the new model version, its validation figures and its evaluation."""

    permission_classes = [IsReviewer]
    serializer_class = JobSerializer
    pagination_class = NewestFirst

    def get_queryset(self) -> Any:
        return Job.objects.filter(kind=TRAIN_KIND).select_related("created_by").order_by("-id")

    @extend_schema(request=TrainingStartSerializer, responses={202: JobSerializer})
    def create(self, request: Request) -> Response:
        serializer = TrainingStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        dataset = DatasetVersion.objects.filter(name=data["dataset"]).first()
        if dataset is None:
            return Response(
                {"detail": f"No dataset version named {data['dataset']!r}."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            job = training_start(
                dataset=dataset,
                actor=api_user(request),
                C=data["C"],
                max_iter=data["max_iter"],
                activate=data["activate"],
            )
        except TrainingError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class LabelErrorRankingSerializer(serializers.Serializer[Any]):
    folds = serializers.IntegerField(default=DEFAULT_FOLDS, min_value=2, max_value=MAX_FOLDS)
    repeats = serializers.IntegerField(
        default=DEFAULT_REPEATS,
        min_value=1,
        max_value=MAX_REPEATS,
        help_text="fold assignments whose out-of-sample probabilities are averaged",
    )
    seed = serializers.IntegerField(default=DEFAULT_SEED)
    threshold = serializers.FloatField(default=0.95, min_value=0.01, max_value=1.0)


class LabelErrorRankingViewSet(viewsets.GenericViewSet[Any]):
    """Rank the labelled library by the out-of-sample probability of each image's label.
    POST starts an evaluation run (scope ``cross_validation``) as a job (202); follow it and
    its Double-check queue under ``/api/v1/evaluations/{id}/``."""

    permission_classes = [IsReviewer]
    serializer_class = LabelErrorRankingSerializer

    @extend_schema(request=LabelErrorRankingSerializer, responses={202: EvaluationSerializer})
    def create(self, request: Request) -> Response:
        serializer = LabelErrorRankingSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            run = label_error_ranking_start(actor=api_user(request), **data)
        except EvaluationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(EvaluationSerializer(run).data, status=status.HTTP_202_ACCEPTED)
