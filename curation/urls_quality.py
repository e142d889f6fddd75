from __future__ import annotations

from django.urls import path

from curation import views_quality

app_name = "quality"

urlpatterns = [
    path("", views_quality.page, name="page"),
    path("recompute", views_quality.recompute, name="recompute"),
    path("thresholds", views_quality.thresholds, name="thresholds"),
    path("<slug:flag>/label", views_quality.label_flagged, name="label"),
]
