from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient
from sklearn.metrics import log_loss

from accounts.models import User
from curation.models import (
    ClassKind,
    Image,
    ImageStatus,
    Job,
    LabelClass,
    LabelEvent,
    LabelReason,
    SubClass,
)
from curation.services.taxonomy import class_create
from inference.evaluation import (
    EVALUATE_KIND,
    EvaluationScope,
    confused_pairs_update,
    double_check_resolve,
    evaluation_create,
    evaluation_execute,
    threshold_report,
    weighted_log_loss,
)
from inference.models import (
    DoubleCheckItem,
    DoubleCheckStatus,
    EvaluationRun,
    ModelVersion,
    Prediction,
)
from inference.preprocessing import PreprocessSpec
from inference.services import model_version_register
from inference.tasks import evaluate
from tests.inference.onnx_models import labels, linear, to_bytes

pytestmark = pytest.mark.django_db

NAMES = ("Robin", "Sparrow", "Wren")


def register() -> ModelVersion:
    return model_version_register(
        onnx_data=to_bytes(linear(classes=len(NAMES), seed=3)),
        labels=labels(*NAMES),
        name="tiny",
        actor=None,
        spec=PreprocessSpec(input_size=8),
    ).version


def predict(image: Image, version: ModelVersion, scores: list[float]) -> None:
    """A stored prediction whose scores we choose: the model "knows" what we tell it."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    Prediction.objects.filter(image=image, model_version=version).delete()
    Prediction.objects.create(
        image=image,
        model_version=version,
        class_indices=order,
        class_names=[NAMES[i] for i in order],
        scores=[scores[i] for i in order],
        top1_index=order[0],
        top1_score=scores[order[0]],
    )


@pytest.fixture
def classes() -> dict[str, SubClass]:
    made = {}
    for name in NAMES:
        label_class = class_create(name=name, actor=None)
        made[name] = SubClass.objects.get(label_class=label_class, is_default=True)
    return made


# --- Hand-computed reports ------------------------------------------------------------------


def test_threshold_report_matches_a_hand_count() -> None:
    top1 = np.array([0.99, 0.97, 0.96, 0.94, 0.50, 0.95])
    correct = np.array([True, False, True, True, False, True])
    report = threshold_report(top1, correct, 0.95)
    # At or above 0.95: 0.99 right, 0.97 wrong, 0.96 right, 0.95 right -> 3 right, 1 wrong.
    assert report["above_right"] == 3
    assert report["above_wrong"] == 1
    assert report["below"] == 2
    assert report["true_positive_rate"] == pytest.approx(3 / 6)
    assert report["false_positive_rate"] == pytest.approx(1 / 6)
    assert report["precision_above"] == pytest.approx(3 / 4)


def test_weighted_log_loss_matches_a_hand_computation() -> None:
    true = np.array([0, 0, 1, 2])
    pred = np.array([0, 1, 0, 2])
    p_true = np.array([0.9, 0.2, 0.4, 0.6])
    pairs = {frozenset((0, 1)): 0.5}
    # Images 2 and 3 are Robin<->Sparrow mistakes, weight 0.5; the others weigh 1.
    losses = [-math.log(0.9), -math.log(0.2), -math.log(0.4), -math.log(0.6)]
    hand = (losses[0] + 0.5 * losses[1] + 0.5 * losses[2] + losses[3]) / 3.0
    assert weighted_log_loss(true, pred, p_true, pairs) == pytest.approx(hand)
    # Same as scikit-learn's log loss with those sample weights on full probability rows.
    rows = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    sk = log_loss(true, rows, sample_weight=[1, 0.5, 0.5, 1], labels=[0, 1, 2])
    assert weighted_log_loss(true, pred, p_true, pairs) == pytest.approx(sk)
    # With no listed pairs it is the plain log loss.
    assert weighted_log_loss(true, pred, p_true, {}) == pytest.approx(sum(losses) / 4)


# --- Runs over the library ------------------------------------------------------------------


def _library(
    make_image: Callable[..., Image], classes: dict[str, SubClass], version: ModelVersion
) -> tuple[list[Image], list[Image]]:
    """Twelve images the model gets right with confidence, and three planted mislabels: the
    model is sure they belong elsewhere."""
    good = []
    for n in range(12):
        name = NAMES[n % 3]
        image = make_image(classes[name])
        scores = [0.01, 0.01, 0.01]
        scores[NAMES.index(name)] = 0.98
        predict(image, version, scores)
        good.append(image)
    planted = []
    for given, truth, p_given in (
        ("Robin", "Wren", 0.001),
        ("Sparrow", "Robin", 0.01),
        ("Wren", "Sparrow", 0.03),
    ):
        image = make_image(classes[given])
        scores = [0.0, 0.0, 0.0]
        scores[NAMES.index(given)] = p_given
        scores[NAMES.index(truth)] = 1 - p_given - 0.005
        scores[3 - NAMES.index(given) - NAMES.index(truth)] = 0.005
        predict(image, version, scores)
        planted.append(image)
    return good, planted


def test_the_queue_puts_planted_mislabels_first(
    make_image: Callable[..., Image], classes: dict[str, SubClass]
) -> None:
    version = register()
    _good, planted = _library(make_image, classes, version)
    unsure = make_image(classes["Wren"])
    predict(unsure, version, [0.1, 0.2, 0.7])  # right, but below the threshold
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    metrics = evaluation_execute(run=run)

    items = list(DoubleCheckItem.objects.filter(run=run).order_by("rank"))
    assert [item.image_id for item in items[:3]] == [image.pk for image in planted]
    assert items[3].image_id == unsure.pk and items[3].why == "low_confidence"
    assert len(items) == 4
    report = metrics["sets"]["library"]
    assert report["images"] == 16
    assert report["metrics"]["accuracy"] == pytest.approx(13 / 16)
    assert report["threshold"]["above_right"] == 12
    assert report["threshold"]["above_wrong"] == 3  # the planted ones: sure and "wrong"
    assert metrics["excluded"] == {}
    # Predictions were reused, not recomputed.
    assert Prediction.objects.filter(model_version=version).count() == 16


def test_holding_classes_and_unknown_classes_are_counted_not_scored(
    make_image: Callable[..., Image], classes: dict[str, SubClass]
) -> None:
    version = register()
    _library(make_image, classes, version)
    holding = class_create(name="Unknown bird", actor=None, kind=ClassKind.HOLDING)
    other = class_create(name="Heron", actor=None)
    for label_class in (holding, holding, other):
        image = make_image(SubClass.objects.get(label_class=label_class, is_default=True))
        predict(image, version, [0.9, 0.05, 0.05])
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    metrics = evaluation_execute(run=run)
    assert metrics["excluded"] == {"holding_class": 2, "class_not_in_label_map": 1}
    assert metrics["excluded_classes"] == {"Unknown bird": 2, "Heron": 1}
    assert metrics["images_scored"] == 15


def test_editing_pair_weights_recomputes_the_weighted_log_loss(
    make_image: Callable[..., Image], classes: dict[str, SubClass]
) -> None:
    version = register()
    _library(make_image, classes, version)
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    evaluation_execute(run=run)
    run.refresh_from_db()
    plain = run.metrics["sets"]["library"]["metrics"]["log_loss"]
    confused_pairs_update(run=run, pairs=[{"a": "Robin", "b": "Wren", "weight": 0}])
    run.refresh_from_db()
    weighted = run.metrics["sets"]["library"]["metrics"]["weighted_log_loss"]
    # The Robin-given, Wren-predicted image (p = 0.001) no longer counts at all.
    losses = [-math.log(0.98)] * 12 + [-math.log(0.01), -math.log(0.03)]
    assert weighted == pytest.approx(sum(losses) / 14)
    assert weighted < plain


def test_the_job_runs_through_the_task(
    make_image: Callable[..., Image], classes: dict[str, SubClass]
) -> None:
    version = register()
    _library(make_image, classes, version)
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    assert run.job is not None and run.job.kind == EVALUATE_KIND
    evaluate.apply(args=[run.job.pk])
    job = Job.objects.get(pk=run.job.pk)
    assert job.status == "succeeded", job.error
    assert job.result["double_check_items"] == 3
    run.refresh_from_db()
    assert run.status == "done"


def test_the_command_prints_json(
    make_image: Callable[..., Image], classes: dict[str, SubClass], capsys: pytest.CaptureFixture
) -> None:
    version = register()
    _library(make_image, classes, version)
    call_command("evaluate", "--model", str(version.number), "--json")
    out = json.loads(capsys.readouterr().out)
    assert out["sets"]["library"]["metrics"]["errors"] == 3
    assert out["double_check_items"] == 3


# --- Double-check actions -------------------------------------------------------------------


@pytest.fixture
def queued(
    make_image: Callable[..., Image], classes: dict[str, SubClass]
) -> tuple[EvaluationRun, list[DoubleCheckItem]]:
    version = register()
    _library(make_image, classes, version)
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    evaluation_execute(run=run)
    return run, list(DoubleCheckItem.objects.filter(run=run).order_by("rank"))


def _events(image_id: int) -> list[LabelEvent]:
    return list(
        LabelEvent.objects.filter(image_id=image_id, reason=LabelReason.DOUBLE_CHECK).order_by("pk")
    )


def test_keep_records_a_confirming_label_event(queued, reviewer: User) -> None:
    _, items = queued
    before = Image.objects.get(pk=items[0].image_id).subclass_id
    double_check_resolve(item=items[0], action="keep", actor=reviewer, expected_version=1)
    [event] = _events(items[0].image_id)
    assert event.from_subclass_id == event.to_subclass_id == before
    assert event.actor == reviewer
    assert DoubleCheckItem.objects.get(pk=items[0].pk).status == DoubleCheckStatus.KEPT


def test_relabel_to_predicted_moves_the_image_to_the_predicted_class(
    queued, reviewer: User
) -> None:
    _, items = queued
    item = items[0]  # given Robin, the model says Wren
    double_check_resolve(item=item, action="predicted", actor=reviewer, expected_version=1)
    image = Image.objects.select_related("subclass__label_class").get(pk=item.image_id)
    assert image.subclass.label_class.name == "Wren"
    [event] = _events(item.image_id)
    assert event.to_subclass_id == image.subclass_id
    assert event.from_subclass.label_class.name == "Robin"


def test_relabel_to_another_class_and_trash_and_skip(
    queued, reviewer: User, classes: dict[str, SubClass]
) -> None:
    _, items = queued
    double_check_resolve(
        item=items[0],
        action="relabel",
        actor=reviewer,
        subclass=classes["Sparrow"],
        expected_version=1,
    )
    assert Image.objects.get(pk=items[0].image_id).subclass == classes["Sparrow"]
    double_check_resolve(
        item=items[1], action="trash", actor=reviewer, note="Blurry", expected_version=1
    )
    image = Image.objects.get(pk=items[1].image_id)
    assert image.status == ImageStatus.TRASHED
    [event] = _events(items[1].image_id)
    assert event.to_status == ImageStatus.TRASHED and event.note == "Blurry"
    double_check_resolve(item=items[2], action="skip", actor=reviewer, expected_version=None)
    assert _events(items[2].image_id) == []
    assert DoubleCheckItem.objects.get(pk=items[2].pk).status == DoubleCheckStatus.SKIPPED


# --- API ------------------------------------------------------------------------------------


def test_reviewers_start_runs_and_read_the_queue_over_the_api(
    make_image: Callable[..., Image],
    classes: dict[str, SubClass],
    reviewer_api: APIClient,
    api: APIClient,
) -> None:
    version = register()
    _, planted = _library(make_image, classes, version)
    assert api.post("/api/v1/evaluations/", {"model": version.number}).status_code == 403
    response = reviewer_api.post("/api/v1/evaluations/", {"model": version.number}, format="json")
    assert response.status_code == 202, response.content
    run = EvaluationRun.objects.get(pk=response.json()["id"])
    evaluate.apply(args=[run.job_id])
    detail = reviewer_api.get(f"/api/v1/evaluations/{run.pk}/").json()
    assert detail["status"] == "done"
    assert detail["metrics"]["sets"]["library"]["metrics"]["errors"] == 3
    queue = reviewer_api.get(f"/api/v1/evaluations/{run.pk}/double-check/").json()
    assert [row["image"] for row in queue["results"]] == [image.pk for image in planted]
    assert queue["results"][0]["sha256"] == planted[0].sha256
    second = reviewer_api.get(f"/api/v1/evaluations/{run.pk}/double-check/?limit=1&offset=1")
    assert [row["image"] for row in second.json()["results"]] == [planted[1].pk]
    assert second.json()["count"] == len(planted)


def test_each_version_keeps_its_evaluation_history(
    make_image: Callable[..., Image],
    classes: dict[str, SubClass],
    reviewer_api: APIClient,
    reviewer: User,
) -> None:
    first, second = register(), register()
    _library(make_image, classes, first)
    runs = [
        evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
        for version in (first, second, first)
    ]
    history = reviewer_api.get(f"/api/v1/evaluations/?model={first.number}").json()["results"]
    assert [row["id"] for row in history] == [runs[2].pk, runs[0].pk]
    assert reviewer_api.get("/api/v1/evaluations/?model=abc").status_code == 400
    client = Client()
    client.force_login(reviewer)
    models_page = client.get("/models/").content.decode()
    assert f'href="/models/evaluations/?model={first.number}">2 runs</a>' in models_page
    assert f'href="/models/evaluations/?model={second.number}">1 run</a>' in models_page
    everything = client.get("/models/evaluations/").content.decode()
    newest_first = [everything.index(f'href="/models/evaluations/{run.pk}/"') for run in runs[::-1]]
    assert newest_first == sorted(newest_first)
    listing = client.get(f"/models/evaluations/?model={second.number}").content.decode()
    assert f"Runs of v{second.number}" in listing
    assert f'href="/models/evaluations/{runs[1].pk}/"' in listing
    assert f'href="/models/evaluations/{runs[0].pk}/"' not in listing


def test_report_and_double_check_pages_render(
    make_image: Callable[..., Image], classes: dict[str, SubClass], reviewer: User
) -> None:
    version = register()
    _, planted = _library(make_image, classes, version)
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    evaluation_execute(run=run)
    client = Client()
    client.force_login(reviewer)
    listing = client.get("/models/evaluations/")
    assert listing.status_code == 200
    assert f"/models/evaluations/{run.pk}/double-check/".encode() in listing.content
    page = client.get(f"/models/evaluations/{run.pk}/")
    assert page.status_code == 200
    assert b"Confidence threshold" in page.content
    check = client.get(f"/models/evaluations/{run.pk}/double-check/")
    assert check.status_code == 200
    assert (
        f"/images/{planted[0].pk}/".encode() in check.content
        or str(planted[0].pk).encode() in check.content
    )
    assert LabelClass.objects.count() == 3


def test_errors_by_tag_put_the_worst_sub_class_first(
    make_image: Callable[..., Image], classes: dict[str, SubClass]
) -> None:
    from curation.services.taxonomy import subclass_create

    version = register()
    _library(make_image, classes, version)
    juvenile = subclass_create(
        label_class=classes["Robin"].label_class, name="juvenile", actor=None
    )
    for _ in range(2):
        predict(make_image(juvenile), version, [0.01, 0.98, 0.01])  # always called Sparrow
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    metrics = evaluation_execute(run=run)
    top = metrics["tags"][0]
    assert top["tag"] == "sub-class: Robin / juvenile"
    assert top["images"] == 2 and top["errors"] == 2
    assert top["error_rate"] == 1.0
    assert top["share_of_errors"] == pytest.approx(2 / 5)
    assert top["share_of_data"] == pytest.approx(2 / 17)


def test_benchmark_and_dataset_scopes(
    make_image: Callable[..., Image], classes: dict[str, SubClass]
) -> None:
    from curation.models import (
        BenchmarkKind,
        BenchmarkMember,
        BenchmarkSet,
        DatasetAssignment,
        DatasetVersion,
    )

    version = register()
    good, planted = _library(make_image, classes, version)
    outside = BenchmarkSet.objects.create(name="not birds", kind=BenchmarkKind.OUT_OF_SCOPE)
    scores = ([0.97, 0.02, 0.01], [0.5, 0.3, 0.2], [0.96, 0.02, 0.02], [0.4, 0.4, 0.2])
    for score in scores:
        image = make_image(None)
        predict(image, version, score)
        BenchmarkMember.objects.create(benchmark_set=outside, image=image, label_class=None)
    run = evaluation_create(
        version=version,
        scope=EvaluationScope.parse("benchmark:not birds"),
        actor=None,
        enqueue=False,
    )
    report = evaluation_execute(run=run)["sets"]["not birds v1"]
    assert report["out_of_scope"] is True
    assert report["threshold"]["above"] == 2
    assert report["threshold"]["false_positive_rate"] == pytest.approx(0.5)
    assert report["score_stats"]["max"] == pytest.approx(0.97)
    assert DoubleCheckItem.objects.filter(run=run).count() == 0

    dataset = DatasetVersion.objects.create(name="d1")
    for n, image in enumerate([*good[:6], *planted]):
        DatasetAssignment.objects.create(
            version=dataset,
            image=image,
            split="train" if n < 4 else "test",
            label_class=image.subclass.label_class,
            subclass=image.subclass,
            source=image.subclass.source,
        )
    run = evaluation_create(
        version=version, scope=EvaluationScope.parse("dataset:d1"), actor=None, enqueue=False
    )
    sets = evaluation_execute(run=run)["sets"]
    assert set(sets) == {"train", "test", "all"}
    assert sets["train"]["metrics"]["errors"] == 0
    assert sets["test"]["metrics"]["errors"] == 3
    assert sets["all"]["images"] == 9


def test_a_reviewer_adds_a_whole_class_to_the_queue(
    make_image: Callable[..., Image], classes: dict[str, SubClass], reviewer: User
) -> None:
    version = register()
    _library(make_image, classes, version)
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    evaluation_execute(run=run)
    client = Client()
    client.force_login(reviewer)
    response = client.post(
        f"/models/evaluations/{run.pk}/double-check/add/",
        {"target": f"subclass:{classes['Sparrow'].pk}"},
    )
    assert response.status_code == 302
    items = list(DoubleCheckItem.objects.filter(run=run).order_by("rank"))
    # The planted Sparrow image was queued already; the four right ones follow the rest.
    assert len(items) == 3 + 4
    assert {item.why for item in items[3:]} == {"added"}
    assert all(item.true_class == classes["Sparrow"].label_class for item in items[3:])


def test_comparing_two_runs_lists_the_images_that_flipped(
    make_image: Callable[..., Image], classes: dict[str, SubClass], reviewer: User
) -> None:
    version = register()
    _, planted = _library(make_image, classes, version)
    before = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    evaluation_execute(run=before)
    predict(planted[0], version, [0.98, 0.01, 0.01])  # now right: it is a Robin
    after = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    evaluation_execute(run=after)
    client = Client()
    client.force_login(reviewer)
    page = client.get(f"/models/evaluations/{after.pk}/compare/{before.pk}/")
    assert page.status_code == 200
    assert page.context["flipped"]["fixed"] == [planted[0]]
    assert page.context["flipped"]["broken"] == []


def test_queue_items_are_answered_over_the_api(
    queued, reviewer_api: APIClient, reviewer: User, classes: dict[str, SubClass]
) -> None:
    run, items = queued
    url = f"/api/v1/evaluations/{run.pk}/double-check"
    response = reviewer_api.post(f"{url}/1/", {"action": "predicted", "version": 1}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "relabelled"
    assert response.json()["version"] == 2
    assert _events(items[0].image_id)[0].to_subclass == classes["Wren"]
    response = reviewer_api.post(
        f"{url}/2/",
        {"action": "relabel", "subclass": classes["Wren"].pk, "version": 1},
        format="json",
    )
    assert response.json()["status"] == "relabelled"
    response = reviewer_api.post(
        f"{url}/3/", {"action": "trash", "reason": "Blurry", "version": 1}, format="json"
    )
    assert response.json()["status"] == "trashed"
    again = reviewer_api.post(
        f"{url}/3/", {"action": "trash", "reason": "x", "version": 2}, format="json"
    )
    assert again.status_code == 409
    assert "already in the trash" in again.json()["detail"]
    assert reviewer_api.post(f"{url}/99/", {"action": "skip"}, format="json").status_code == 404


def test_pair_weights_are_edited_over_the_api(queued, reviewer_api: APIClient) -> None:
    run, _ = queued
    url = f"/api/v1/evaluations/{run.pk}/confused-pairs/"
    bad = reviewer_api.put(url, {"pairs": [{"a": "Robin", "b": "Heron"}]}, format="json")
    assert bad.status_code == 400 and "Heron" in bad.json()["detail"]
    response = reviewer_api.put(
        url, {"pairs": [{"a": "Robin", "b": "Wren", "weight": 0}]}, format="json"
    )
    assert response.status_code == 200
    weighted = response.json()["metrics"]["sets"]["library"]["metrics"]["weighted_log_loss"]
    losses = [-math.log(0.98)] * 12 + [-math.log(0.01), -math.log(0.03)]
    assert weighted == pytest.approx(sum(losses) / 14)
