from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from curation.plugins import image_step_register, stored_files_register
        from inference.embeddings import suggestions_and_embeddings_make
        from inference.models import PredictionLog
        from inference.rollups import rollups_forget
        from inference.selectors import model_files

        def forget(sender: type[PredictionLog], instance: PredictionLog, **kwargs: Any) -> None:
            rollups_forget(log=instance)

        post_delete.connect(forget, sender=PredictionLog, weak=False, dispatch_uid="rollups")

        # What the library does through inference (README "Architecture"): new images get
        # top-k suggestions, embeddings and OOD scores (one pass when the active model is the
        # embedding model); backups carry the ONNX files.
        image_step_register(
            "suggestions_and_embeddings",
            lambda image_ids: suggestions_and_embeddings_make(image_ids=image_ids),
        )
        stored_files_register("models", model_files)
