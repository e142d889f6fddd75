from __future__ import annotations

from rest_framework.routers import DefaultRouter

from accounts.apis import TokenViewSet
from accounts.urls_api import urlpatterns as accounts_api_urls
from curation.apis import (
    ImageViewSet,
    ImportViewSet,
    JobViewSet,
    LabelClassViewSet,
    SubClassViewSet,
)
from curation.apis_datasets import BenchmarkSetViewSet, DatasetVersionViewSet
from curation.apis_duplicates import DuplicateGroupViewSet
from curation.urls_exports_api import urlpatterns as export_api_urls
from inference.apis import ModelVersionViewSet, PredictViewSet
from inference.apis_evaluation import EvaluationViewSet
from inference.apis_identify import IdentificationViewSet
from inference.apis_production import PredictionLogViewSet
from inference.apis_trainer import LabelErrorRankingViewSet, TrainingViewSet
from labelling.urls_api import urlpatterns as labelling_api_urls

app_name = "api"

router = DefaultRouter()
router.register("images", ImageViewSet, basename="image")
router.register("imports", ImportViewSet, basename="import")
router.register("classes", LabelClassViewSet, basename="class")
router.register("subclasses", SubClassViewSet, basename="subclass")
router.register("jobs", JobViewSet, basename="job")
router.register("duplicates", DuplicateGroupViewSet, basename="duplicate")
router.register("datasets", DatasetVersionViewSet, basename="dataset")
router.register("benchmark-sets", BenchmarkSetViewSet, basename="benchmark-set")
router.register("tokens", TokenViewSet, basename="token")
router.register("models", ModelVersionViewSet, basename="model-version")
router.register("predict", PredictViewSet, basename="predict")
router.register("identifications", IdentificationViewSet, basename="identification")
router.register("evaluations", EvaluationViewSet, basename="evaluation")
router.register("prediction-logs", PredictionLogViewSet, basename="prediction-log")
router.register("trainings", TrainingViewSet, basename="training")
router.register("label-error-rankings", LabelErrorRankingViewSet, basename="label-error-ranking")

urlpatterns = router.urls + export_api_urls + labelling_api_urls + accounts_api_urls
