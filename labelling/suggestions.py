"""The active model's top-3 for images on the labelling page, as one-key answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from curation.models import SubClass
from inference.models import ModelVersion, Prediction

SHOWN = 3


@dataclass(frozen=True)
class Suggestion:
    name: str
    score: float
    class_id: int | None
    subclass_id: int | None  # the class's default sub-class: what the key assigns

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def active_model_id() -> int | None:
    return ModelVersion.objects.filter(is_active=True).values_list("pk", flat=True).first()


def suggestions_for(*, image_ids: list[int], model_id: int | None) -> dict[int, list[Suggestion]]:
    """Top-3 per image from a model version (the active one: ``active_model_id()``), in two
    queries whatever the count. Names the model has but the library lacks come back with no
    class: shown, not assignable."""
    if model_id is None or not image_ids:
        return {}
    predictions = list(
        Prediction.objects.filter(model_version_id=model_id, image_id__in=image_ids).only(
            "image_id", "class_indices", "class_names", "scores"
        )
    )
    indices = {i for p in predictions for i in p.class_indices[:SHOWN]}
    # Label-map index -> (class, its default sub-class), through the version's label matches.
    targets = {
        index: (class_id, subclass_id)
        for index, class_id, subclass_id in SubClass.objects.filter(
            is_default=True,
            label_class__model_labels__model_version_id=model_id,
            label_class__model_labels__index__in=indices,
        ).values_list("label_class__model_labels__index", "label_class_id", "pk")
    }
    result: dict[int, list[Suggestion]] = {}
    for prediction in predictions:
        rows = []
        for index, name, score in list(
            zip(prediction.class_indices, prediction.class_names, prediction.scores, strict=False)
        )[:SHOWN]:
            class_id, subclass_id = targets.get(index, (None, None))
            rows.append(
                Suggestion(
                    name=name, score=float(score), class_id=class_id, subclass_id=subclass_id
                )
            )
        result[prediction.image_id] = rows
    return result
