"""The project's URLs plus the duplicate pages, as config/urls.py will include them."""

from __future__ import annotations

from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *project_urlpatterns,
    path("duplicates/", include("curation.urls_duplicates")),
]
