from __future__ import annotations

from django.urls import path

from curation import views_datasets, views_exports

app_name = "datasets"

urlpatterns = [
    path("", views_datasets.dataset_list, name="list"),
    path("build", views_datasets.dataset_build, name="build"),
    path("<int:pk>/", views_datasets.dataset_detail, name="detail"),
    path("<int:pk>/export", views_datasets.dataset_export, name="export"),
    path(
        "<int:pk>/exports/<int:export_id>/archive.tar",
        views_exports.export_archive,
        name="export-archive",
    ),
    path(
        "<int:pk>/exports/<int:export_id>/files/<path:name>",
        views_exports.export_file,
        name="export-file",
    ),
    path("benchmarks/", views_datasets.benchmark_list, name="benchmarks"),
    path("benchmarks/new", views_datasets.benchmark_create, name="benchmark-create"),
    path("benchmarks/<int:pk>/", views_datasets.benchmark_detail, name="benchmark"),
]
