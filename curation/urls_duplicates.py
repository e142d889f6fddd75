from __future__ import annotations

from django.urls import path

from curation import views_duplicates

app_name = "duplicates"

urlpatterns = [
    path("", views_duplicates.review, name="review"),
    path("scan", views_duplicates.scan, name="scan"),
    path("<int:pk>/resolve", views_duplicates.resolve, name="resolve"),
    path("<int:pk>/dismiss", views_duplicates.dismiss, name="dismiss"),
]
