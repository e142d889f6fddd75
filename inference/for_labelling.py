"""What inference plugs into labelling (registered in ``InferenceConfig.ready``; README
"Architecture"): the active model's top-3 on the labelling page, as one-key answers, and the
saved-filter parameters that select on a model version's predictions."""

from __future__ import annotations

from django.db.models import QuerySet

from curation.models import Image, SubClass
from inference.models import LabelMatch, ModelVersion, Prediction
from labelling.queues import saved_filter_id
from labelling.suggestions import SHOWN, Suggestion


def active_model_id() -> int | None:
    return ModelVersion.objects.filter(is_active=True).values_list("pk", flat=True).first()


def suggestions_for(*, image_ids: list[int], model_id: int) -> dict[int, list[Suggestion]]:
    """Top-3 per image from a model version, in two queries whatever the count. Names the model
    has but the library lacks come back with no class: shown, not assignable."""
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


def predicted_images(images: QuerySet[Image], params: dict[str, object]) -> QuerySet[Image]:
    """A saved filter's selection on a model version's predictions: ``model_version`` with
    ``predicted_class`` (a library class, through the version's label matches) or
    ``predicted_index`` (a label-map position), and ``score_min`` / ``score_max`` on the top
    score. Without ``model_version``, the images as they are."""
    if params.get("model_version") is None:
        return images
    model_version = saved_filter_id(params, "model_version")
    predicted: dict[str, object] = {"predictions__model_version_id": model_version}
    if "predicted_index" in params:
        predicted["predictions__top1_index"] = params["predicted_index"]
    elif "predicted_class" in params:
        predicted["predictions__top1_index__in"] = list(
            LabelMatch.objects.filter(
                model_version_id=model_version,
                label_class_id=saved_filter_id(params, "predicted_class"),
            ).values_list("index", flat=True)
        )
    if "score_min" in params:
        predicted["predictions__top1_score__gte"] = params["score_min"]
    if "score_max" in params:
        predicted["predictions__top1_score__lte"] = params["score_max"]
    return images.filter(**predicted)
