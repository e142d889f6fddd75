from __future__ import annotations

from django.urls import path

from inference import views, views_evaluation, views_identify, views_trainer

app_name = "inference"

urlpatterns = [
    path("", views.model_list, name="models"),
    path("upload/", views.model_upload, name="model-upload"),
    path("v<int:number>/activate/", views.model_activate, name="model-activate"),
    path("v<int:number>/edit/", views.model_edit, name="model-edit"),
    path("v<int:number>/create-classes/", views.model_create_classes, name="model-create-classes"),
    path("v<int:number>/unmatched/", views.model_unmatched, name="model-unmatched"),
    path("identify/", views_identify.identify, name="identify"),
    path("identify/run/", views_identify.identify_run, name="identify-run"),
    path("identify/label/", views_identify.identify_label, name="identify-label"),
    path("identify/trash/", views_identify.identify_trash, name="identify-trash"),
    path("identify/queue/", views_identify.identify_queue, name="identify-queue"),
    path("train/", views_trainer.trainer, name="trainer"),
    path("evaluations/", views_evaluation.evaluation_list, name="evaluations"),
    path("evaluations/label-errors/", views_trainer.label_errors_start, name="label-errors-start"),
    path("evaluations/<int:pk>/", views_evaluation.evaluation_detail, name="evaluation"),
    path("evaluations/<int:pk>/pairs/", views_evaluation.evaluation_pairs, name="evaluation-pairs"),
    path(
        "evaluations/<int:pk>/compare/<int:other>/",
        views_evaluation.evaluation_compare,
        name="evaluation-compare",
    ),
    path("evaluations/<int:pk>/double-check/", views_evaluation.double_check, name="double-check"),
    path(
        "evaluations/<int:pk>/double-check/add/",
        views_evaluation.double_check_add,
        name="double-check-add",
    ),
    path(
        "evaluations/<int:pk>/double-check/<int:item_id>/",
        views_evaluation.double_check_action,
        name="double-check-action",
    ),
]
