"""The project's URLs plus the model pages, until config/urls.py includes them."""

from __future__ import annotations

from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *[p for p in project_urlpatterns if getattr(p, "namespace", None) != "inference"],
    path("models/", include("inference.urls")),
]
