"""The getting-started path on the library page: import → label → dataset → train → evaluate →
Double-check, each step a link to the page where it is done, each marked done once it is.

The library owns the first three steps. The apps above it add theirs from their
``AppConfig.ready`` (``getting_started_register``): inference adds training, evaluation and
Double-check; curation never imports them. Every step answers from a query or two that cost
the same in an empty library and in one of a million images (an ``EXISTS`` on an index, or the
counters the page reads anyway), so the panel never makes the page slower as the library grows.
Once every step is done the panel is gone; a user can also hide it (a cookie, per browser).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import reverse

from curation.models import DatasetStatus, DatasetVersion
from curation.selectors import LibraryTotals

HIDDEN_COOKIE = "loupe_getting_started"
HIDDEN_VALUE = "hidden"
# The session remembers a finished path, so the page stops asking once everything is done.
COMPLETE_SESSION_KEY = "getting_started_complete"


@dataclass(frozen=True)
class Step:
    """One step: what it is, what to do (``action``, the link text) and where (``url``)."""

    key: str
    title: str
    text: str
    action: str
    url: str
    done: bool
    # A step only reviewers may take: others see it, without the link they could not follow.
    reviewer_only: bool = False


# A source returns its steps (in path order) for the page; ``order`` places them in the path.
StepSource = Callable[[], list[Step]]
_SOURCES: dict[str, tuple[int, StepSource]] = {}


def getting_started_register(name: str, *, order: int, source: StepSource) -> None:
    """Add ``source``'s steps to the path at ``order`` (the library's own steps are at 10, 20
    and 30). Registering a name again replaces it. A source must stay cheap: no query whose
    cost grows with the library."""
    _SOURCES[name] = (order, source)


def _library_steps(totals: LibraryTotals) -> list[Step]:
    """The library's steps, from the counters the library page reads anyway and one indexed
    ``EXISTS``."""
    imported = totals.labelled + totals.inbox + totals.trashed > 0
    return [
        Step(
            key="import",
            title="Import images",
            text="Upload images or a zip, or import a folder tree: class folders arrive labelled.",
            action="Import",
            url=reverse("curation:import"),
            done=imported,
        ),
        Step(
            key="label",
            title="Label them",
            text="Give the images in the inbox a class, one key each.",
            action="Open the inbox",
            url=reverse("curation:inbox"),
            done=totals.labelled > 0,
        ),
        Step(
            key="dataset",
            title="Build a dataset",
            text="Freeze a train/val/test split of the labelled library.",
            action="Build one",
            url=reverse("datasets:list"),
            done=DatasetVersion.objects.filter(status=DatasetStatus.READY).exists(),
            reviewer_only=True,
        ),
    ]


def getting_started_steps(*, totals: LibraryTotals) -> list[Step]:
    """Every step of the path, in order."""
    ordered: list[tuple[int, int, list[Step]]] = [(10, 0, _library_steps(totals))]
    for position, (order, source) in enumerate(_SOURCES.values(), start=1):
        ordered.append((order, position, source()))
    return [step for _, _, steps in sorted(ordered, key=lambda e: e[:2]) for step in steps]


@dataclass(frozen=True)
class GettingStarted:
    steps: list[Step]
    hidden: bool

    @property
    def done_count(self) -> int:
        return sum(step.done for step in self.steps)

    @property
    def next_step(self) -> Step | None:
        return next((step for step in self.steps if not step.done), None)


def getting_started_for(*, request: HttpRequest, totals: LibraryTotals) -> GettingStarted | None:
    """The panel for this page view: None once every step is done (remembered for the
    session, so the finished path costs no query); ``hidden``, with no steps read, when the
    user put it away."""
    if request.session.get(COMPLETE_SESSION_KEY):
        return None
    if request.COOKIES.get(HIDDEN_COOKIE) == HIDDEN_VALUE:
        return GettingStarted(steps=[], hidden=True)
    steps = getting_started_steps(totals=totals)
    if all(step.done for step in steps):
        request.session[COMPLETE_SESSION_KEY] = True
        return None
    return GettingStarted(steps=steps, hidden=False)
