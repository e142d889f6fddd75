"""The active model's top-3 for images on the labelling page, as one-key answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from curation.models import SubClass
from inference.models import LabelMatch, ModelVersion, Prediction

SHOWN = 3


@dataclass(frozen=True)
class Suggestion:
    name: str
    score: float
    class_id: int | None
    subclass_id: int | None  # the class's default sub-class: what the key assigns

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def suggestions_for(*, image_ids: list[int]) -> dict[int, list[Suggestion]]:
    """Top-3 per image from the active model version, in three queries whatever the count.
    Names the model has but the library lacks come back with no class, shown but not
    assignable."""
    model = ModelVersion.objects.filter(is_active=True).only("pk").first()
    if model is None or not image_ids:
        return {}
    predictions = list(
        Prediction.objects.filter(model_version=model, image_id__in=image_ids).only(
            "image_id", "class_indices", "class_names", "scores"
        )
    )
    indices = {i for p in predictions for i in p.class_indices[:SHOWN]}
    class_of = dict(
        LabelMatch.objects.filter(
            model_version=model, index__in=indices, label_class__isnull=False
        ).values_list("index", "label_class_id")
    )
    default_subclass = dict(
        SubClass.objects.filter(
            label_class_id__in=set(class_of.values()), is_default=True
        ).values_list("label_class_id", "pk")
    )
    result: dict[int, list[Suggestion]] = {}
    for prediction in predictions:
        rows = []
        for index, name, score in list(
            zip(prediction.class_indices, prediction.class_names, prediction.scores, strict=False)
        )[:SHOWN]:
            class_id = class_of.get(index)
            rows.append(
                Suggestion(
                    name=name,
                    score=float(score),
                    class_id=class_id,
                    subclass_id=default_subclass.get(class_id) if class_id else None,
                )
            )
        result[prediction.image_id] = rows
    return result
