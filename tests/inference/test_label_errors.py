from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import (
    DuplicateGroup,
    DuplicateMember,
    DuplicateStatus,
    Image,
    Job,
    LabelEvent,
    LabelReason,
    SubClass,
)
from curation.services.taxonomy import class_create
from inference import label_errors
from inference.embeddings import embedding_matrix, vector_encode
from inference.label_errors import (
    LABEL_ERRORS_KIND,
    discriminant_fit,
    fold_assignment,
    label_error_ranking,
    label_error_ranking_start,
    label_errors_execute,
)
from inference.models import (
    DoubleCheckItem,
    DoubleCheckKind,
    DoubleCheckStatus,
    EvaluationRun,
    EvaluationScopeKind,
    ImageEmbedding,
    ModelVersion,
)
from tests.inference.digits import digits_with_backbone, swap_labels
from tests.inference.onnx_models import tiny_embedder

pytestmark = pytest.mark.django_db

NAMES = ("Robin", "Sparrow", "Wren", "Finch")
DIMS = 24
PER_CLASS = 12


@pytest.fixture
def embedding_model() -> ModelVersion:
    return tiny_embedder()


@pytest.fixture
def library(embedding_model: ModelVersion, make_image: Callable[..., Image]) -> dict[str, Any]:
    """PER_CLASS images per class whose embeddings sit around their class's centre, except
    three whose embeddings belong to another class than their label (label errors)."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(len(NAMES), DIMS)) * 3
    subclasses = {}
    for name in NAMES:
        label_class = class_create(name=name, actor=None)
        subclasses[name] = SubClass.objects.get(label_class=label_class, is_default=True)
    images: dict[str, list[Image]] = {name: [] for name in NAMES}
    errors = []
    for c, name in enumerate(NAMES):
        for k in range(PER_CLASS):
            looks_like = c
            if k == 0 and c < 3:  # the first Robin, Sparrow and Wren look like the next class
                looks_like = c + 1
            image = make_image(subclasses[name])
            vector = centres[looks_like] + rng.normal(size=DIMS)
            ImageEmbedding.objects.create(
                model_version=embedding_model, image=image, vector=vector_encode(vector)
            )
            images[name].append(image)
            if looks_like != c:
                errors.append(image.pk)
    return {"images": images, "errors": errors, "subclasses": subclasses}


def _run(**kwargs: Any) -> EvaluationRun:
    run = label_error_ranking_start(actor=None, enqueue=False, **kwargs.pop("start", {}))
    label_errors_execute(run=run, **kwargs)
    run.refresh_from_db()
    return run


# --- Folds ----------------------------------------------------------------------------------


def test_folds_are_stratified_and_seeded() -> None:
    labels_ = np.repeat(np.arange(3), [10, 7, 23])
    folds = fold_assignment(labels_, folds=5, seed=1)
    for label in range(3):
        counts = np.bincount(folds[labels_ == label], minlength=5)
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    assert np.array_equal(folds, fold_assignment(labels_, folds=5, seed=1))
    assert not np.array_equal(folds, fold_assignment(labels_, folds=5, seed=2))


def test_a_near_duplicate_group_lands_in_one_fold() -> None:
    labels_ = np.repeat(np.arange(2), 20)
    groups = np.full(40, -1)
    groups[[3, 17, 25, 38]] = 7
    folds = fold_assignment(labels_, folds=4, seed=0, groups=groups)
    assert len(set(folds[[3, 17, 25, 38]].tolist())) == 1


def test_folds_stay_even_around_large_near_duplicate_groups() -> None:
    labels_ = np.repeat(np.arange(3), [40, 40, 21])
    groups = np.full(len(labels_), -1)
    groups[0:10] = 1  # a fold's whole share of label 0
    groups[10:18] = 2
    groups[40:47] = 3
    groups[[47, 80]] = 4  # near-duplicates labelled differently
    folds = fold_assignment(labels_, folds=4, seed=0, groups=groups)
    for group in (1, 2, 3, 4):
        assert len(set(folds[groups == group].tolist())) == 1
    for label in range(3):
        counts = np.bincount(folds[labels_ == label], minlength=4)
        assert counts.max() - counts.min() <= 1, (label, counts)
    sizes = np.bincount(folds, minlength=4)
    assert sizes.max() - sizes.min() <= 1, sizes
    assert np.array_equal(folds, fold_assignment(labels_, folds=4, seed=0, groups=groups))


def test_a_group_larger_than_a_fold_share_takes_one_fold_and_the_rest_level_around_it() -> None:
    labels_ = np.zeros(40, dtype=np.int64)
    groups = np.full(40, -1)
    groups[:16] = 0
    folds = fold_assignment(labels_, folds=4, seed=2, groups=groups)
    assert sorted(np.bincount(folds, minlength=4).tolist()) == [8, 8, 8, 16]


# --- Runs -----------------------------------------------------------------------------------


def test_no_image_is_scored_by_a_head_trained_on_it(
    library: dict[str, Any], embedding_model: ModelVersion
) -> None:
    robins = library["images"]["Robin"]
    # A resolved and an open near-duplicate group that share an image: one unit of three.
    for pair, status in (
        ((robins[3], robins[4]), DuplicateStatus.RESOLVED),
        ((robins[4], robins[5]), DuplicateStatus.OPEN),
    ):
        group = DuplicateGroup.objects.create(max_distance=8, size=2, status=status)
        for image in pair:
            DuplicateMember.objects.create(
                group=group, image=image, is_open=status == DuplicateStatus.OPEN
            )
    ids, matrix = embedding_matrix(model_version=embedding_model)
    image_of_row = {row.tobytes(): int(i) for i, row in zip(ids, matrix, strict=True)}
    heads: list[dict[str, set[int]]] = []

    class SpyHead:
        def __init__(self, head: Any, record: dict[str, set[int]]) -> None:
            self.head, self.record = head, record

        def probabilities(self, features: np.ndarray) -> np.ndarray:
            self.record["scored"] |= {image_of_row[row.tobytes()] for row in features}
            return self.head.probabilities(features)

    def spy_fit(**kwargs: Any) -> tuple[Any, Any]:
        head, model = discriminant_fit(**kwargs)
        record = {"trained": {image_of_row[row.tobytes()] for row in kwargs["features"]}}
        record["scored"] = set()
        heads.append(record)
        return SpyHead(head, record), model

    run = _run(fit=spy_fit, folds=4, repeats=3, seed=3)
    assert len(heads) == 4 * 3
    every = set().union(*(head["scored"] for head in heads))
    assert len(every) == run.metrics["images_ranked"] == len(NAMES) * PER_CLASS
    for repeat in range(3):
        # Each repeat scores every image exactly once, each time by a head that never saw it.
        fits = heads[repeat * 4 : (repeat + 1) * 4]
        assert sum(len(head["scored"]) for head in fits) == len(every)
        assert set().union(*(head["scored"] for head in fits)) == every
        for head in fits:
            assert head["trained"].isdisjoint(head["scored"])
            assert head["trained"] | head["scored"] == every
        # The near-duplicates were scored by the same head, so none of them trained it.
        assert any({robins[3].pk, robins[4].pk, robins[5].pk} <= head["scored"] for head in fits)
    # The repeats deal the folds differently: that is what averaging them is for.
    assert (
        len({frozenset(frozenset(h["scored"]) for h in heads[r * 4 : r * 4 + 4]) for r in range(3)})
        == 3
    )
    assert run.metrics["fold_sizes"] == [len(head["scored"]) for head in heads[:4]]
    assert run.metrics["duplicate_groups_kept_together"] == 1


def _star_groups(component: list[list[Image]], status: str = DuplicateStatus.OPEN) -> None:
    """One near-duplicate component reviewed as several star groups that share no image."""
    key = None
    for part in component:
        group = DuplicateGroup.objects.create(
            max_distance=8, size=len(part), status=status, centre=part[0], component=key
        )
        key = key or group.pk
        if group.component is None:
            DuplicateGroup.objects.filter(pk=group.pk).update(component=key)
        for image in part:
            DuplicateMember.objects.create(
                group=group, image=image, is_open=status == DuplicateStatus.OPEN
            )


def test_a_chain_reviewed_in_several_groups_is_scored_by_one_head(
    library: dict[str, Any], embedding_model: ModelVersion
) -> None:
    robins, wrens = library["images"]["Robin"], library["images"]["Wren"]
    _star_groups([[robins[3], robins[4]], [robins[5], robins[6]], [wrens[2], wrens[3]]])
    chain = {image.pk for image in (*robins[3:7], wrens[2], wrens[3])}
    ids, matrix = embedding_matrix(model_version=embedding_model)
    image_of_row = {row.tobytes(): int(i) for i, row in zip(ids, matrix, strict=True)}
    trained: list[set[int]] = []

    def spy_fit(**kwargs: Any) -> tuple[Any, Any]:
        trained.append({image_of_row[row.tobytes()] for row in kwargs["features"]})
        return discriminant_fit(**kwargs)

    run = _run(fit=spy_fit, folds=4, repeats=1, seed=1)
    # One head never saw any of the chain and scored all of it; the others trained on all of it.
    assert sorted(len(chain & images) for images in trained) == [0, 6, 6, 6]
    assert run.metrics["duplicate_groups_kept_together"] == 1


def test_a_chain_longer_than_the_cap_is_kept_together_by_its_groups_only(
    library: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(label_errors, "MAX_GROUP", 3)
    robins = library["images"]["Robin"]
    _star_groups([robins[0:2], robins[2:4], robins[4:8]])  # 8 images: over the cap
    _star_groups([robins[8:10], robins[10:12]])  # 4 images: over the cap
    ids = np.asarray([image.pk for image in robins], dtype=np.int64)
    units, kept = label_errors._duplicate_units(ids)
    assert kept == 4  # the four pairs; the group of four is over the cap too
    for pair in ((0, 1), (2, 3), (8, 9), (10, 11)):
        assert units[pair[0]] == units[pair[1]] >= 0
    assert len({int(units[0]), int(units[2]), int(units[8]), int(units[10])}) == 4
    assert (units[4:8] == -1).all()


def test_a_chain_dismissed_as_a_whole_keeps_nothing_together(
    library: dict[str, Any],
) -> None:
    robins = library["images"]["Robin"]
    _star_groups([robins[0:2], robins[2:4]], status=DuplicateStatus.DISMISSED)
    ids = np.asarray([image.pk for image in robins], dtype=np.int64)
    units, kept = label_errors._duplicate_units(ids)
    assert kept == 0 and (units == -1).all()


def test_the_label_errors_come_first_in_the_double_check_queue(
    library: dict[str, Any], embedding_model: ModelVersion
) -> None:
    run = _run(folds=5, seed=0)
    assert run.scope_kind == EvaluationScopeKind.CROSS_VALIDATION
    assert run.model_version == embedding_model
    items = list(DoubleCheckItem.objects.filter(run=run).order_by("rank"))
    assert {item.image_id for item in items[:3]} == set(library["errors"])
    given = [item.given_probability for item in items]
    assert given == sorted(given)
    assert given[0] < 0.2
    sparrow = library["subclasses"]["Sparrow"].label_class
    first_robin = next(item for item in items if item.image_id == library["errors"][0])
    assert first_robin.predicted_class == sparrow
    assert first_robin.predicted_name == "Sparrow"
    assert first_robin.why == "misclassified"
    assert {item.kind for item in items[:3]} == {DoubleCheckKind.LABEL_DOUBTFUL}
    metrics = run.metrics
    assert metrics["images_ranked"] == len(NAMES) * PER_CLASS
    assert metrics["folds"] == 5 and metrics["repeats"] == 3 and metrics["seed"] == 0
    assert metrics["embedding_model"]["number"] == embedding_model.number
    assert metrics["label_map"] == sorted(NAMES)
    assert metrics["double_check_items"] == len(items)
    assert metrics["sets"]["cross-validation"]["metrics"]["errors"] >= 3


def test_classes_with_fewer_images_than_folds_are_skipped_and_counted(
    library: dict[str, Any], embedding_model: ModelVersion, make_image: Callable[..., Image]
) -> None:
    rare = SubClass.objects.get(label_class=class_create(name="Hoopoe", actor=None))
    rare_ids = []
    for k in range(3):
        image = make_image(rare)
        ImageEmbedding.objects.create(
            model_version=embedding_model, image=image, vector=vector_encode(np.ones(DIMS) * k)
        )
        rare_ids.append(image.pk)
    run = _run(folds=5)
    metrics = run.metrics
    assert metrics["classes_skipped"] == 1
    assert metrics["images_skipped"] == 3
    assert metrics["excluded_classes"] == {"Hoopoe": 3}
    assert metrics["excluded"] == {"class_below_folds": 3}
    assert "Hoopoe" not in metrics["label_map"]
    assert not DoubleCheckItem.objects.filter(run=run, image_id__in=rare_ids).exists()


def test_a_ranking_opens_in_double_check_and_its_answers_are_label_events(
    library: dict[str, Any], reviewer: User
) -> None:
    run = _run(folds=4)
    client = Client()
    client.force_login(reviewer)
    report = client.get(f"/models/evaluations/{run.pk}/")
    assert report.status_code == 200
    assert "cross-validated" in report.content.decode()
    # No stored prediction ranks the images it did not queue: adding a class is refused.
    assert 'id="add-title"' not in report.content.decode()
    queued = DoubleCheckItem.objects.filter(run=run).count()
    robin = library["subclasses"]["Robin"].label_class
    refused = client.post(
        f"/models/evaluations/{run.pk}/double-check/add/",
        {"target": f"class:{robin.pk}"},
        follow=True,
    )
    assert "queues only the images" in refused.content.decode()
    assert DoubleCheckItem.objects.filter(run=run).count() == queued
    page = client.get(f"/models/evaluations/{run.pk}/double-check/")
    assert page.status_code == 200
    first = DoubleCheckItem.objects.filter(run=run).order_by("rank").first()
    assert first is not None and first.image_id == page.context["item"].image_id
    html = page.content.decode()
    assert "Cross-validated head on" in html
    assert page.context["top"] == [(first.predicted_name, first.top1_score)]
    # Exemplars of the given class: images the heads agreed with, never a queued one.
    queued = set(DoubleCheckItem.objects.filter(run=run).values_list("image_id", flat=True))
    exemplars = page.context["true_exemplars"]
    assert exemplars and not queued & {entry["image"].pk for entry in exemplars}

    answer = client.post(
        f"/models/evaluations/{run.pk}/double-check/{first.pk}/",
        {"action": "predicted", "version": page.context["image"].version},
    )
    assert answer.status_code == 302
    image = Image.objects.select_related("subclass").get(pk=first.image_id)
    assert image.subclass.label_class_id == first.predicted_class_id
    event = LabelEvent.objects.filter(image=image).latest("pk")
    assert event.reason == LabelReason.DOUBLE_CHECK
    first.refresh_from_db()
    assert first.status == DoubleCheckStatus.RELABELLED


def test_confused_pairs_of_a_ranking_name_its_classes(library: dict[str, Any]) -> None:
    from inference.evaluation import confused_pairs_update

    run = _run(folds=4)
    run = confused_pairs_update(run=run, pairs=[{"a": "Robin", "b": "Sparrow", "weight": 0.5}])
    assert run.confused_pairs == [{"a": "Robin", "b": "Sparrow", "weight": 0.5}]


def _progress_of(**kwargs: Any) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    _run(progress=lambda done, total, message: seen.append((done, total, message)), **kwargs)
    return seen


def test_the_jobs_progress_moves_with_the_ranking_when_embeddings_are_stored(
    library: dict[str, Any],
) -> None:
    seen = _progress_of(folds=4, repeats=2)
    assert len({total for _, total, _ in seen}) == 1
    total = seen[0][1]
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and done[-1] == total and seen[-1][2] == "done"
    assert not any("embedding images" in message for _, _, message in seen)
    messages = [message for _, _, message in seen]
    assert any(m.startswith("projecting") for m in messages)
    # The heads are most of the work: the bar is not near its end after the first of eight.
    first_head = next(d for d, _, m in seen if m.startswith("head 1 of 8"))
    assert 0.3 < first_head / total < 0.5
    last_head = next(d for d, _, m in seen if m.startswith("head 8 of 8"))
    assert "writing the reports" in messages[done.index(last_head)]
    assert 0.9 < last_head / total < 1


def test_the_jobs_progress_counts_the_images_it_embeds_first(
    embedding_model: ModelVersion, make_image: Callable[..., Image]
) -> None:
    for name in ("Robin", "Wren"):
        subclass = SubClass.objects.get(label_class=class_create(name=name, actor=None))
        for _ in range(5):
            make_image(subclass)  # no embedding stored: the job computes them first
    seen = _progress_of(folds=2, repeats=1)
    embedding = [(d, m) for d, _, m in seen if m.startswith("embedding images")]
    assert embedding[-1] == (10, "embedding images without one: 10 of 10")
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and done[-1] == seen[0][1]
    assert ImageEmbedding.objects.filter(model_version=embedding_model).count() == 10


# --- API, page button, command --------------------------------------------------------------


def test_the_api_starts_a_ranking_as_a_job(
    embedding_model: ModelVersion, reviewer_api: APIClient, api: APIClient
) -> None:
    response = reviewer_api.post(
        "/api/v1/label-error-rankings/", {"folds": 3, "seed": 4}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["scope_kind"] == "cross_validation"
    assert body["model_version"] == embedding_model.number
    job = Job.objects.get(pk=body["job"]["id"])
    assert job.kind == LABEL_ERRORS_KIND
    assert job.params["folds"] == 3 and job.params["seed"] == 4
    assert reviewer_api.post("/api/v1/label-error-rankings/", {"folds": 1}).status_code == 400
    assert api.post("/api/v1/label-error-rankings/", {}).status_code == 403


def test_the_api_names_a_missing_embedding_model(reviewer_api: APIClient) -> None:
    response = reviewer_api.post("/api/v1/label-error-rankings/", {}, format="json")
    assert response.status_code == 400
    assert "install_backbone" in response.json()["detail"]


def test_the_evaluations_page_button_starts_a_ranking(
    embedding_model: ModelVersion, reviewer: User
) -> None:
    client = Client()
    client.force_login(reviewer)
    page = client.get("/models/evaluations/")
    assert 'id="label-errors-form"' in page.content.decode()
    response = client.post("/models/evaluations/label-errors/", {"folds": "4"})
    run = EvaluationRun.objects.get(scope_kind=EvaluationScopeKind.CROSS_VALIDATION)
    assert response.status_code == 302 and response["Location"].endswith(f"/{run.pk}/")
    assert run.job is not None and run.job.params["folds"] == 4


def test_the_command_prints_the_ranking_as_json(library: dict[str, Any]) -> None:
    out = io.StringIO()
    call_command("rank_label_errors", "--folds", "3", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["images_ranked"] == len(NAMES) * PER_CLASS
    assert summary["folds"] == 3
    assert summary["top"][0]["image"] in library["errors"]


# --- Real digits through the backbone -------------------------------------------------------


def test_swapped_digit_labels_come_first_with_the_real_backbone() -> None:
    """The demo's handwritten digits, 13-15 per class, embedded by EfficientNet-Lite0. Three
    labels are swapped. The subset also holds a few genuinely ambiguous scans (a 9 that
    reads as an 8), which the ranking rightly puts among the swapped ones: the swapped images
    must all be within the first five, the first among them."""
    digits_with_backbone()
    Image.objects.filter(subclass__name="staged").delete()  # two printed digits per class
    swapped = swap_labels([(0, 1), (6, 2), (3, 7)])
    run = _run(folds=5)
    items = list(DoubleCheckItem.objects.filter(run=run).order_by("rank")[:5])
    assert items[0].image_id in swapped
    assert set(swapped) <= {item.image_id for item in items}
    assert all(item.given_probability < 0.01 for item in items if item.image_id in swapped)
    assert run.metrics["images_without_embedding"] == 0
    assert run.metrics["images_ranked"] > 140


def test_a_rankings_queue_is_answered_over_the_api_like_any_evaluation(
    library: dict[str, Any], reviewer_api: APIClient
) -> None:
    run = _run(folds=4)
    listed = reviewer_api.get(f"/api/v1/evaluations/{run.pk}/double-check/").json()
    assert listed["results"][0]["image"] in library["errors"]
    kept = reviewer_api.post(
        f"/api/v1/evaluations/{run.pk}/double-check/1/",
        {"action": "keep", "version": listed["results"][0]["version"]},
        format="json",
    )
    assert kept.status_code == 200 and kept.json()["status"] == "kept"
    trashed = reviewer_api.post(
        f"/api/v1/evaluations/{run.pk}/double-check/2/",
        {"action": "trash", "reason": "blurry", "version": listed["results"][1]["version"]},
        format="json",
    )
    assert trashed.status_code == 200 and trashed.json()["status"] == "trashed"
    second = DoubleCheckItem.objects.get(run=run, rank=2)
    assert Image.objects.get(pk=second.image_id).status == "trashed"


def test_the_queue_says_why_each_item_is_there_and_filters_by_it(
    library: dict[str, Any], reviewer_api: APIClient, reviewer: User
) -> None:
    run = _run(folds=4)
    kinds = dict(DoubleCheckItem.objects.filter(run=run).values_list("image_id", "kind"))
    assert {kinds[image_id] for image_id in library["errors"]} == {"label_doubtful"}
    listed = reviewer_api.get(f"/api/v1/evaluations/{run.pk}/double-check/").json()["results"]
    assert [item["kind"] for item in listed[:3]] == ["label_doubtful"] * 3
    doubted = reviewer_api.get(
        f"/api/v1/evaluations/{run.pk}/double-check/", {"kind": "model_unsure"}
    ).json()["results"]
    assert {item["kind"] for item in doubted} <= {"model_unsure"}
    assert len(doubted) == sum(kind == "model_unsure" for kind in kinds.values())
    refused = reviewer_api.get(f"/api/v1/evaluations/{run.pk}/double-check/", {"kind": "x"})
    assert refused.status_code == 400

    client = Client()
    client.force_login(reviewer)
    page = client.get(f"/models/evaluations/{run.pk}/double-check/?kind=label_doubtful")
    html = page.content.decode()
    assert 'id="dc-kind">Label looks wrong<' in html
    assert '<input type="hidden" name="kind" value="label_doubtful">' in html
    first = DoubleCheckItem.objects.get(run=run, rank=1)
    answered = client.post(
        f"/models/evaluations/{run.pk}/double-check/{first.pk}/",
        {"action": "skip", "kind": "label_doubtful"},
    )
    assert answered["Location"].endswith("?after=1&kind=label_doubtful")


# --- The ranking itself ---------------------------------------------------------------------


def _noisy_digits(rate: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits (pixels as features, L2-normalised) with ``rate`` of
    the labels moved to another digit: (features, noisy labels, indices changed)."""
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    features = pixels / np.linalg.norm(pixels, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    changed = rng.choice(len(labels), size=round(rate * len(labels)), replace=False)
    noisy = labels.copy()
    noisy[changed] = (labels[changed] + rng.integers(1, 10, size=len(changed))) % 10
    return features, noisy, changed


def test_the_ranking_is_deterministic_for_a_seed() -> None:
    features, noisy, _ = _noisy_digits()
    first = label_error_ranking(features, noisy, seed=4, components=32)
    again = label_error_ranking(features, noisy, seed=4, components=32)
    other = label_error_ranking(features, noisy, seed=5, components=32)
    assert np.array_equal(first.probabilities, again.probabilities)
    assert np.array_equal(first.order, again.order)
    assert not np.array_equal(first.fold_of, other.fold_of)


def test_averaging_repeats_halves_how_much_the_ranking_depends_on_the_seed() -> None:
    features, noisy, changed = _noisy_digits()
    shortlist = 2 * len(changed)

    def disagreement(repeats: int) -> float:
        """Mean images in one seed's shortlist and not another's, over pairs of seeds."""
        tops = [
            set(
                label_error_ranking(features, noisy, repeats=repeats, seed=10 * s, components=32)
                .order[:shortlist]
                .tolist()
            )
            for s in range(4)
        ]
        return float(np.mean([len(a ^ b) for i, a in enumerate(tops) for b in tops[i + 1 :]]))

    single, averaged = disagreement(1), disagreement(4)
    assert averaged < 0.7 * single, (single, averaged)
    ranking = label_error_ranking(features, noisy, repeats=4, components=32)
    assert np.isin(ranking.order[: len(changed)], changed).mean() > 0.9


def test_the_kinds_are_assigned_as_defined() -> None:
    from inference.evaluation import KIND_ORDER, double_check_kinds

    # (wrong, given, top1) at threshold 0.9
    cases = {
        (True, 0.02, 0.97): DoubleCheckKind.LABEL_DOUBTFUL,  # confidently not its class
        (True, 0.10, 0.85): DoubleCheckKind.LABEL_DOUBTFUL,  # exactly 1 - threshold
        (True, 0.30, 0.60): DoubleCheckKind.MODEL_WRONG,  # wrong, but the label is plausible
        (False, 0.70, 0.70): DoubleCheckKind.MODEL_UNSURE,
        (False, 0.95, 0.95): DoubleCheckKind.MODEL_AGREES,
    }
    wrong, given, top1 = (np.array(column) for column in zip(*cases, strict=True))
    kinds = double_check_kinds(wrong=wrong, given=given, top1=top1, threshold=0.9)
    assert [KIND_ORDER[k] for k in kinds] == list(cases.values())
