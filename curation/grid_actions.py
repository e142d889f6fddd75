"""The actions offered on picked images in the library's grids (class page, inbox, trash).

Curation registers its own (label, trash, restore, benchmark set); an app above curation adds
its actions from its ``AppConfig.ready`` (labelling: send to a labelling queue), so the grids
offer them without curation importing that app. Each action is one POST of the picked images
to its ``url_name``, behind a confirmation dialog rendered from its ``dialog`` template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef

from accounts.models import Role, User
from curation.models import BenchmarkKind, BenchmarkSet
from curation.selectors import subclass_list

CLASS_PAGE, INBOX, TRASH = "class", "inbox", "trash"
GRID_PAGES = (CLASS_PAGE, INBOX, TRASH)
BENCHMARK_CHOICES_SHOWN = 200


@dataclass(frozen=True)
class GridAction:
    key: str  # names the dialog (``<key>-dialog``) and the button
    label: str  # the button, e.g. "Label as…"
    url_name: str  # where the confirmed action is posted
    dialog: str  # template of the confirmation <dialog>
    pages: frozenset[str]
    minimum_role: Role
    order: int
    danger: bool = False
    choices: Callable[[], dict[str, Any]] | None = None  # what the dialog offers, read on use


@dataclass(frozen=True)
class ShownAction:
    action: GridAction
    choices: dict[str, Any]

    @property
    def key(self) -> str:
        return self.action.key


_ACTIONS: dict[str, GridAction] = {}


def grid_action_register(action: GridAction) -> None:
    """Offer ``action`` on the grids it names. Registering a key again replaces it."""
    _ACTIONS[action.key] = action


def grid_actions_for(*, page: str, user: User) -> list[ShownAction]:
    """The actions ``user`` may take on ``page``, in order, with their dialog's choices."""
    allowed = [
        action
        for action in _ACTIONS.values()
        if page in action.pages and user.has_role(action.minimum_role)
    ]
    return [
        ShownAction(action, action.choices() if action.choices else {})
        for action in sorted(allowed, key=lambda a: a.order)
    ]


def _label_choices() -> dict[str, Any]:
    return {"subclasses": subclass_list()}


def _benchmark_choices() -> dict[str, Any]:
    newest = BenchmarkSet.objects.filter(
        ~Exists(BenchmarkSet.objects.filter(name=OuterRef("name"), version__gt=OuterRef("version")))
    ).order_by("name")
    return {
        "benchmark_sets": list(newest[:BENCHMARK_CHOICES_SHOWN]),
        "benchmark_kinds": BenchmarkKind.choices,
    }


for _action in (
    GridAction(
        key="label",
        label="Label as…",
        url_name="curation:grid-label",
        dialog="curation/grid/_label_dialog.html",
        pages=frozenset({CLASS_PAGE, INBOX}),
        minimum_role=Role.LABELLER,
        order=10,
        choices=_label_choices,
    ),
    GridAction(
        key="benchmark",
        label="Add to benchmark…",
        url_name="curation:grid-benchmark",
        dialog="curation/grid/_benchmark_dialog.html",
        pages=frozenset({CLASS_PAGE, INBOX}),
        minimum_role=Role.REVIEWER,
        order=30,
        choices=_benchmark_choices,
    ),
    GridAction(
        key="trash",
        label="Trash…",
        url_name="curation:grid-trash",
        dialog="curation/grid/_trash_dialog.html",
        pages=frozenset({CLASS_PAGE, INBOX}),
        minimum_role=Role.REVIEWER,
        order=90,
        danger=True,
    ),
    GridAction(
        key="restore",
        label="Restore…",
        url_name="curation:grid-restore",
        dialog="curation/grid/_restore_dialog.html",
        pages=frozenset({TRASH}),
        minimum_role=Role.REVIEWER,
        order=10,
    ),
):
    grid_action_register(_action)
