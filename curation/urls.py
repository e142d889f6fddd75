from __future__ import annotations

from django.urls import path

from curation import views

app_name = "curation"

urlpatterns = [
    path("", views.library, name="library"),
]
