from __future__ import annotations

from django.urls import path

from curation import views, views_bulk

app_name = "curation"

urlpatterns = [
    path("", views.library, name="library"),
    path("getting-started", views.getting_started_toggle, name="getting-started"),
    path("classes/new", views.class_new, name="class-new"),
    path("classes/<int:pk>/", views.class_detail, name="class"),
    path("classes/<int:pk>/subclasses", views.subclass_new, name="subclass-new"),
    path("subclasses/<int:pk>/move", views.subclass_move_to, name="subclass-move"),
    path("inbox/", views.inbox, name="inbox"),
    path("trash/", views.trash, name="trash"),
    path("images/<int:pk>/", views.image_detail, name="image"),
    path("images/<int:pk>/file", views.image_file, name="image-file"),
    path("images/<int:pk>/display", views.image_display, name="image-display"),
    path("images/<int:pk>/thumbnail", views.image_thumbnail, name="image-thumbnail"),
    path("images/<int:pk>/relabel", views.image_relabel_form, name="image-relabel"),
    path("images/<int:pk>/trash", views.image_trash_form, name="image-trash"),
    path("images/<int:pk>/restore", views.image_restore_form, name="image-restore"),
    path("images/picked/label", views_bulk.grid_label, name="grid-label"),
    path("images/picked/trash", views_bulk.grid_trash, name="grid-trash"),
    path("images/picked/restore", views_bulk.grid_restore, name="grid-restore"),
    path("images/picked/benchmark", views_bulk.grid_benchmark, name="grid-benchmark"),
    path("import/", views.import_page, name="import"),
    path("imports/<int:pk>/", views.import_batch, name="import-batch"),
    path("jobs/", views.jobs, name="jobs"),
    path("embeddings/compute", views.embeddings_compute_form, name="embeddings-compute"),
]
