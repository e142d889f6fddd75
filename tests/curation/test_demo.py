from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from curation.demo import NOT_A_DIGIT_CLASS, UNKNOWN_CLASS, demo_files
from curation.models import (
    ClassKind,
    Image,
    ImportBatch,
    LabelClass,
    LabelEvent,
    Source,
    SubClass,
)

pytestmark = pytest.mark.django_db

DIGIT_CLASSES = [f"Digit {d}" for d in range(10)]


def _run_demo() -> dict[str, Any]:
    out = StringIO()
    # The library alone: the model the demo ends with is tests/inference/test_demo_model.py's.
    call_command("demo", "--small", "--no-model", "--json", stdout=out)
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def test_it_builds_ten_digit_classes_with_a_staged_subclass_each() -> None:
    _run_demo()

    for name in DIGIT_CLASSES:
        label_class = LabelClass.objects.get(name=name)
        assert label_class.kind == ClassKind.NORMAL
        real = SubClass.objects.get(label_class=label_class, is_default=True)
        staged = SubClass.objects.get(label_class=label_class, name="staged")
        assert staged.source == Source.STAGED
        assert real.image_count > 0
        assert staged.image_count > 0
        # The counters the overview reads agree with the rows.
        assert real.image_count == Image.objects.filter(subclass=real).count()
        assert staged.image_count == Image.objects.filter(subclass=staged).count()


def test_it_keeps_ambiguous_digits_in_an_unknown_holding_class() -> None:
    _run_demo()

    unknown = LabelClass.objects.get(name=UNKNOWN_CLASS)
    assert unknown.kind == ClassKind.HOLDING
    assert Image.objects.filter(subclass__label_class=unknown).count() >= 3


def test_it_leaves_digits_and_near_duplicate_photos_in_the_inbox() -> None:
    _run_demo()

    inbox = Image.objects.filter(subclass__isnull=True)
    names = set(inbox.values_list("original_filename", flat=True))
    assert any(n.startswith("digit-") for n in names)
    assert any(n.startswith("photo-") for n in names)
    # Each photo in the inbox has its original in "Not a digit".
    for name in (n for n in names if n.startswith("photo-")):
        stem = name.rsplit("-", 1)[0]
        assert Image.objects.filter(
            subclass__label_class__name=NOT_A_DIGIT_CLASS, original_filename=f"{stem}.jpg"
        ).exists()


def test_every_demo_image_has_its_original_thumbnail_and_import_event() -> None:
    _run_demo()

    images = list(Image.objects.all())
    assert len(images) > 150
    for image in images:
        assert image.thumbnail_ready
        assert default_storage.exists(image.storage_name)
        assert default_storage.exists(image.thumbnail_name)
    labelled = [i for i in images if i.subclass_id is not None]
    assert LabelEvent.objects.filter(reason="import").count() == len(labelled)


def test_running_it_twice_creates_nothing_new() -> None:
    first = _run_demo()
    counts = {
        model: model.objects.count()
        for model in (Image, LabelClass, SubClass, LabelEvent, ImportBatch)
    }

    second = _run_demo()

    assert first["created"] == first["files"] > 0
    assert second["created"] == 0
    assert second["already_stored"] == first["files"]
    assert second["batch"] is None
    for model, count in counts.items():
        assert model.objects.count() == count, model.__name__


def test_the_generated_files_are_the_same_bytes_every_time() -> None:
    first = [(f.path, f.sha256) for f in demo_files(small=True)]
    second = [(f.path, f.sha256) for f in demo_files(small=True)]

    assert first == second
    assert len({sha for _, sha in first}) == len(first)
