"""API routes for export downloads, under /api/v1/datasets/<id>/exports/."""

from __future__ import annotations

from django.urls import path

from curation import apis_exports

urlpatterns = [
    path(
        "datasets/<int:version_pk>/exports/",
        apis_exports.ExportListView.as_view(),
        name="dataset-exports",
    ),
    path(
        "datasets/<int:version_pk>/exports/<int:pk>/",
        apis_exports.ExportDetailView.as_view(),
        name="dataset-export-detail",
    ),
    path(
        "datasets/<int:version_pk>/exports/<int:pk>/archive.tar",
        apis_exports.ExportArchiveView.as_view(),
        name="dataset-export-archive",
    ),
    path(
        "datasets/<int:version_pk>/exports/<int:pk>/files/<path:name>",
        apis_exports.ExportFileView.as_view(),
        name="dataset-export-file",
    ),
]
