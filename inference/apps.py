from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from curation.demo import DemoOptions, demo_stage_register
        from curation.getting_started import getting_started_register
        from curation.plugins import (
            MAIN,
            ImagePanel,
            image_panel_register,
            image_step_register,
            stored_files_register,
        )
        from inference import for_labelling
        from inference.embeddings import similar_panel, suggestions_and_embeddings_make
        from inference.getting_started import model_steps
        from inference.models import PredictionLog
        from inference.rollups import rollups_forget
        from inference.selectors import model_files
        from labelling.queues import saved_filter_refinement_register
        from labelling.suggestions import SuggestionSource, suggestion_source_register

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
        image_panel_register(
            "similar",
            ImagePanel(
                template="inference/_image_similar.html",
                context=lambda image: {"similar": similar_panel(image_id=image.pk)},
                column=MAIN,
                order=10,
            ),
        )
        # What labelling shows through inference: the active model's top-3 as one-key answers,
        # and saved filters (from bulk identification) on a model version's predictions.
        suggestion_source_register(
            SuggestionSource(
                active_model_id=for_labelling.active_model_id,
                suggestions_for=for_labelling.suggestions_for,
            )
        )
        saved_filter_refinement_register("predictions", for_labelling.predicted_images)
        # The library page's getting-started path ends with a model (train, evaluate,
        # Double-check), and `manage.py demo` ends with one that knows the demo's classes.
        getting_started_register("model", order=40, source=model_steps)

        def demo_model(options: DemoOptions) -> dict[str, object]:
            # Imported when the demo runs: the trainer and the dataset builder bring
            # scikit-learn and SciPy, which no web or worker process needs at start-up.
            from inference.demo import demo_model

            return demo_model(options)

        demo_stage_register("model", demo_model)
