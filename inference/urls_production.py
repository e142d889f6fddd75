from __future__ import annotations

from django.urls import path

from inference import views_production

app_name = "production"

urlpatterns = [
    path("", views_production.dashboard_page, name="dashboard"),
    path("review/<slug:path>/", views_production.review_page, name="review"),
]
