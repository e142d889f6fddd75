from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from inference.models import PredictionLog
        from inference.rollups import rollups_forget

        def forget(sender: type[PredictionLog], instance: PredictionLog, **kwargs: Any) -> None:
            rollups_forget(log=instance)

        post_delete.connect(forget, sender=PredictionLog, weak=False, dispatch_uid="rollups")
