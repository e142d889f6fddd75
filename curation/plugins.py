"""What the apps above curation plug into the library (README "Architecture").

curation never imports inference or labelling. Where the library has to trigger or show
something a higher app owns, that app registers it here from its ``AppConfig.ready``, and
curation calls whatever is registered. With nothing registered the library still works: new
images get thumbnails and features, a backup carries the originals.

- ``image_step_register``: work the worker does on new images after their thumbnails and
  features (inference: top-k suggestions, embeddings and OOD scores).
- ``stored_files_register``: files that rows of a higher app reference, which a backup carries
  beside the originals (inference: the ONNX models).
- ``image_panel_register``: sections of the image page, each rendered from a template its app
  owns (inference: similar images; labelling: where the image is pinned in the standards).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from curation.models import Image

# An image step gets the ids of newly processed images; it must never raise for the library's
# sake (a failed step is logged by its owner and can be computed again).
ImageStep = Callable[[list[int]], object]
# (storage name, expected SHA-256) of every file the source's rows reference, in a stable order.
StoredFiles = Callable[[], Iterable[tuple[str, str]]]

_IMAGE_STEPS: dict[str, ImageStep] = {}
_STORED_FILES: dict[str, StoredFiles] = {}


def image_step_register(name: str, step: ImageStep) -> None:
    """Run ``step`` on every batch of new images, in the order registered. Registering a name
    again replaces its step."""
    _IMAGE_STEPS[name] = step


def image_steps_run(*, image_ids: list[int]) -> None:
    for step in _IMAGE_STEPS.values():
        step(image_ids)


def stored_files_register(name: str, source: StoredFiles) -> None:
    """Carry the files ``source`` names in every backup. Registering a name again replaces it."""
    _STORED_FILES[name] = source


def stored_files() -> Iterable[tuple[str, str]]:
    """(storage name, expected SHA-256) of the files the higher apps' rows reference."""
    for source in _STORED_FILES.values():
        yield from source()


# The image page's columns: under the image, and beside it after the label card.
MAIN, ASIDE = "main", "aside"


@dataclass(frozen=True)
class ImagePanel:
    """A section of the image page: ``template`` (the registering app's own) is rendered with
    the page's context plus what ``context`` returns for the image."""

    template: str
    context: Callable[[Image], dict[str, object]]
    column: str  # MAIN or ASIDE
    order: int


_IMAGE_PANELS: dict[str, ImagePanel] = {}


def image_panel_register(name: str, panel: ImagePanel) -> None:
    """Show ``panel`` on every image page. Registering a name again replaces it."""
    _IMAGE_PANELS[name] = panel


def image_panels(*, column: str) -> list[ImagePanel]:
    return sorted(
        (panel for panel in _IMAGE_PANELS.values() if panel.column == column),
        key=lambda panel: panel.order,
    )
