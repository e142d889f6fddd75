"""The getting-started path on the library page: import → label → dataset → train → evaluate →
Double-check, each step a link, each marked done when the library shows it; gone once all are
done, and the user can hide it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from curation.models import DatasetStatus, DatasetVersion, Image, LabelReason, SubClass
from curation.services.images import image_relabel
from inference.models import (
    DoubleCheckItem,
    DoubleCheckStatus,
    EvaluationRun,
    EvaluationScopeKind,
    EvaluationStatus,
)
from inference.preprocessing import PreprocessSpec
from inference.services import model_version_register
from tests.factories import LabelClassFactory
from tests.inference.onnx_models import labels, linear, to_bytes

pytestmark = pytest.mark.django_db

STEPS = ["import", "label", "dataset", "train", "evaluate", "double_check"]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def steps(html: str) -> dict[str, tuple[bool, str | None]]:
    """Each step on the page: whether it is marked done, and where its link goes."""
    found = {}
    for match in re.finditer(r'<li class="step([^"]*)" data-step="(\w+)">(.*?)</li>', html, re.S):
        link = re.search(r'<a [^>]*href="([^"]+)"', match.group(3))
        found[match.group(2)] = ("step-done" in match.group(1), link.group(1) if link else None)
    return found


def test_an_empty_library_shows_the_whole_path_each_step_a_link(reviewer: User) -> None:
    html = signed_in(reviewer).get("/").content.decode()

    assert "Getting started" in html and "0 of 6 done" in html
    found = steps(html)
    assert list(found) == STEPS
    assert {key: link for key, (_, link) in found.items()} == {
        "import": "/import/",
        "label": "/inbox/",
        "dataset": "/datasets/",
        "train": "/models/train/",
        "evaluate": "/models/evaluations/",
        "double_check": "/models/evaluations/",
    }
    assert not any(done for done, _ in found.values())
    # The first step not done is the one to take now.
    assert re.search(r'class="step step-next" data-step="import"', html)


def test_each_step_is_marked_done_when_the_library_gets_there(
    reviewer: User, make_image: Callable[..., Image]
) -> None:
    client = signed_in(reviewer)
    robin = LabelClassFactory(name="Robin")
    wren = LabelClassFactory(name="Wren")

    def done() -> list[str]:
        return [
            key for key, (is_done, _) in steps(client.get("/").content.decode()).items() if is_done
        ]

    images = [make_image(None) for _ in range(3)]
    assert done() == ["import"]

    image_relabel(
        image_id=images[0].pk,
        subclass=SubClass.objects.get(label_class=robin, is_default=True),
        actor=reviewer,
        reason=LabelReason.LABELLING,
        expected_version=None,
    )
    assert done() == ["import", "label"]

    dataset = DatasetVersion.objects.create(name="first", params={}, status=DatasetStatus.READY)
    assert done() == ["import", "label", "dataset"]

    imagenet_like = model_version_register(
        onnx_data=to_bytes(linear(classes=2)),
        labels=labels("tench", "goldfish"),
        name="no library class",
        actor=None,
        spec=PreprocessSpec(input_size=8),
    ).version
    assert "train" not in done()  # a model whose labels are not the library's knows nothing
    trained = model_version_register(
        onnx_data=to_bytes(linear(classes=2, seed=1)),
        labels=labels("Robin", "Wren"),
        name="quick head",
        actor=None,
        spec=PreprocessSpec(input_size=8),
    ).version
    assert done() == ["import", "label", "dataset", "train"]

    run = EvaluationRun.objects.create(
        model_version=trained,
        scope_kind=EvaluationScopeKind.DATASET,
        dataset=dataset,
        status=EvaluationStatus.DONE,
    )
    html = client.get("/").content.decode()
    assert [k for k, (d, _) in steps(html).items() if d][-1] == "evaluate"
    assert steps(html)["double_check"][1] == f"/models/evaluations/{run.pk}/double-check/"

    item = DoubleCheckItem.objects.create(
        run=run, image=images[0], true_class=robin, predicted_class=wren, rank=1
    )
    assert "double_check" not in done()
    DoubleCheckItem.objects.filter(pk=item.pk).update(status=DoubleCheckStatus.KEPT)

    html = client.get("/").content.decode()
    assert 'id="getting-started"' not in html  # every step done: the path is gone
    assert imagenet_like.number == 1


def test_a_finished_path_costs_no_query_for_the_rest_of_the_session(
    reviewer: User, make_image: Callable[..., Image]
) -> None:
    client = signed_in(reviewer)
    session = client.session
    session["getting_started_complete"] = True
    session.save()
    with CaptureQueriesContext(connection) as queries:
        html = client.get("/").content.decode()
    assert 'id="getting-started"' not in html
    assert not any("evaluationrun" in q["sql"] or "datasetversion" in q["sql"] for q in queries)


def test_a_user_can_hide_the_path_and_bring_it_back(labeller: User) -> None:
    client = signed_in(labeller)
    hidden = client.post("/getting-started")
    assert hidden.status_code == 302 and hidden["Location"] == "/"
    assert hidden.cookies["loupe_getting_started"]["httponly"]

    html = client.get("/").content.decode()
    assert 'id="getting-started"' not in html
    assert "Show the getting-started steps" in html

    client.post("/getting-started", {"show": "1"})
    assert 'id="getting-started"' in client.get("/").content.decode()


def test_a_labeller_sees_the_reviewers_steps_without_their_links(labeller: User) -> None:
    found = steps(signed_in(labeller).get("/").content.decode())
    assert found["import"][1] == "/import/" and found["label"][1] == "/inbox/"
    assert all(found[key][1] is None for key in ("dataset", "train", "evaluate", "double_check"))


def test_the_path_reads_a_fixed_number_of_rows_whatever_the_library(
    reviewer: User, make_image: Callable[..., Any]
) -> None:
    client = signed_in(reviewer)
    with CaptureQueriesContext(connection) as empty:
        client.get("/")
    for _ in range(12):
        make_image(None)
    with CaptureQueriesContext(connection) as larger:
        client.get("/")
    assert len(larger.captured_queries) == len(empty.captured_queries)
