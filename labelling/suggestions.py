"""Model suggestions on the labelling page, as one-key answers. Labelling works without a model:
the suggestions come from a source an app above it registers (inference: the active model's
top-3, in ``InferenceConfig.ready``); with none registered there are none."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

SHOWN = 3


@dataclass(frozen=True)
class Suggestion:
    name: str
    score: float
    class_id: int | None
    subclass_id: int | None  # the class's default sub-class: what the key assigns

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class SuggestionSource:
    # The model whose suggestions are shown now, or None.
    active_model_id: Callable[[], int | None]
    # Top-``SHOWN`` per image id from that model, in queries bounded whatever the count.
    suggestions_for: Callable[..., dict[int, list[Suggestion]]]


_sources: list[SuggestionSource] = []


def suggestion_source_register(source: SuggestionSource) -> None:
    """Make ``source`` the one the labelling page asks (the last registered wins)."""
    _sources[:] = [source]


def active_model_id() -> int | None:
    return _sources[0].active_model_id() if _sources else None


def suggestions_for(*, image_ids: list[int], model_id: int | None) -> dict[int, list[Suggestion]]:
    """Top-3 per image from a model version (the active one: ``active_model_id()``)."""
    if model_id is None or not image_ids or not _sources:
        return {}
    return _sources[0].suggestions_for(image_ids=image_ids, model_id=model_id)
