"""Evaluation runs: a model version over a scope, its reports and its Double-check queue.

A run gathers (image, ground-truth class) pairs from its scope a chunk at a time, makes the
predictions still missing (``predictions_make`` reuses every stored one), turns the stored
top-k into numpy arrays and computes every report from those arrays.

Which images are scored: an image counts when its class is a normal class that the model's
label map holds. Images in holding classes, in classes the label map lacks, and images without
a prediction (undecodable, trashed) are counted in ``excluded`` and never scored. Members of an
out-of-scope benchmark set have no class: for them only the false-positive rate (top score at
or above the threshold) and the score statistics are reported.

Probabilities: predictions store the top-k only. The probability of the given label is its
score when it is among the top k; otherwise the mass left over by the top k, shared evenly
among the other classes of the label map (at most the k-th score). Log loss is the mean of
``-log(max(p, 1e-15))`` over the scored images, which equals scikit-learn's ``log_loss`` on the
full probability rows when every given label is within the top k.

Weighted log loss: each scored image i has the loss ``l_i = -log p_i(true)`` and a weight
``w_i``: the weight of the listed commonly-confused pair {true_i, predicted_i} when the top-1
prediction is wrong and the pair is listed, otherwise 1. The weighted log loss is
``sum(w_i * l_i) / sum(w_i)`` (scikit-learn's ``log_loss`` with ``sample_weight=w``): a
mistake between look-alikes listed with weight 0.5 counts half as much as any other mistake.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Exists, FilteredRelation, Max, OuterRef, Q
from django.utils import timezone
from sklearn.metrics import (
    accuracy_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from accounts.models import User
from curation.models import (
    BadVerdict,
    BenchmarkKind,
    BenchmarkMember,
    BenchmarkSet,
    ClassKind,
    DatasetAssignment,
    DatasetVersion,
    Image,
    ImageStatus,
    Job,
    LabelClass,
    LabelReason,
    Split,
    SubClass,
)
from curation.services.images import image_label_confirm, image_relabel, image_trash
from curation.services.jobs import job_create, job_enqueue
from inference.models import (
    DoubleCheckItem,
    DoubleCheckKind,
    DoubleCheckStatus,
    EvaluationRun,
    EvaluationScopeKind,
    EvaluationStatus,
    LabelMatch,
    ModelVersion,
    Prediction,
)
from inference.services import predictions_make
from labelling.models import OpinionStatus, SecondOpinion

logger = logging.getLogger(__name__)

EVALUATE_KIND = "inference.evaluate"
CHUNK = 2000
HISTOGRAM_BINS = 1000  # top-score histograms for the threshold slider: exact to 0.001
TOP_PAIRS = 20
SUGGESTED_PAIRS = 10
MIN_PROBABILITY = 1e-15
QUEUE_INSERT = (
    "INSERT INTO inference_doublecheckitem (run_id, image_id, true_class_id, "
    "predicted_class_id, predicted_name, top1_score, given_probability, rank, why, kind, "
    "status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# The order in which a label-error ranking's queue presents the kinds.
KIND_ORDER = (
    DoubleCheckKind.LABEL_DOUBTFUL,
    DoubleCheckKind.MODEL_WRONG,
    DoubleCheckKind.MODEL_UNSURE,
    DoubleCheckKind.MODEL_AGREES,
)


def double_check_kinds(
    *, wrong: np.ndarray, given: np.ndarray, top1: np.ndarray, threshold: float
) -> np.ndarray:
    """Per image, the position in ``KIND_ORDER`` of its kind. A wrong answer doubts the label
    when the model is confident the image is not of its class (the given label's probability
    is at most 1 - threshold); otherwise it is the model's own mistake. A right answer below
    the threshold is the model being unsure, at or above it the model agreeing."""
    doubted = np.asarray(given) <= 1 - threshold + 1e-9  # 1 - 0.9 is 0.0999…
    confident = np.asarray(top1) >= threshold
    return np.where(np.asarray(wrong), np.where(doubted, 0, 1), np.where(confident, 3, 2))


class EvaluationError(Exception):
    """The evaluation cannot be started as asked; the message says why."""


# --- Scope ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationScope:
    kind: str = EvaluationScopeKind.LIBRARY
    dataset: DatasetVersion | None = None
    split: str = ""
    benchmark_set: BenchmarkSet | None = None

    @classmethod
    def parse(cls, text: str) -> EvaluationScope:
        """``library``, ``dataset:NAME[:split]`` or ``benchmark:NAME[:version]`` (latest
        version by default). Raises EvaluationError."""
        text = (text or "library").strip()
        if text == "library":
            return cls()
        kind, _, rest = text.partition(":")
        if kind == "dataset":
            name, _, split = rest.partition(":")
            dataset = DatasetVersion.objects.filter(name=name).first()
            if dataset is None:
                raise EvaluationError(f"No dataset version named {name!r}.")
            if split and split not in Split.values:
                raise EvaluationError(f"Split must be one of {', '.join(Split.values)}.")
            return cls(kind=EvaluationScopeKind.DATASET, dataset=dataset, split=split)
        if kind == "benchmark":
            name, _, version = rest.partition(":")
            sets = BenchmarkSet.objects.filter(name=name).order_by("-version")
            if version:
                sets = sets.filter(version=int(version)) if version.isdigit() else sets.none()
            benchmark_set = sets.first()
            if benchmark_set is None:
                raise EvaluationError(f"No benchmark set named {name!r}.")
            return cls(kind=EvaluationScopeKind.BENCHMARK, benchmark_set=benchmark_set)
        raise EvaluationError("Scope must be library, dataset:NAME[:split] or benchmark:NAME.")


def scope_describe(run: EvaluationRun) -> str:
    if run.scope_kind == EvaluationScopeKind.DATASET and run.dataset:
        return f"dataset {run.dataset.name}" + (f" ({run.split})" if run.split else "")
    if run.scope_kind == EvaluationScopeKind.BENCHMARK and run.benchmark_set:
        return f"benchmark set {run.benchmark_set}"
    if run.scope_kind == EvaluationScopeKind.CROSS_VALIDATION:
        return "labelled library, cross-validated"
    return "labelled library"


def run_label_map(run: EvaluationRun) -> list[str]:
    """The class names a run's reports index: the model's label map, or for a
    cross-validation run (whose model is the embedding model) the classes it ranked."""
    if run.scope_kind == EvaluationScopeKind.CROSS_VALIDATION:
        return list((run.metrics or {}).get("label_map", []))
    return list(run.model_version.label_map)


def _scope_rows(run: EvaluationRun) -> Iterator[list[tuple[int, int | None, str]]]:
    """Chunks of (image id, ground-truth class id or None, set name), in key order."""
    last = 0
    rows: list[Any]
    chunk: list[tuple[int, int | None, str]]
    while True:
        if run.scope_kind == EvaluationScopeKind.DATASET:
            query = DatasetAssignment.objects.filter(version_id=run.dataset_id, pk__gt=last)
            if run.split:
                query = query.filter(split=run.split)
            rows = list(
                query.order_by("pk").values_list("pk", "image_id", "label_class_id", "split")[
                    :CHUNK
                ]
            )
            chunk = [(image, cls, split) for _, image, cls, split in rows]
        elif run.scope_kind == EvaluationScopeKind.BENCHMARK:
            rows = list(
                BenchmarkMember.objects.filter(benchmark_set_id=run.benchmark_set_id, pk__gt=last)
                .order_by("pk")
                .values_list("pk", "image_id", "label_class_id")[:CHUNK]
            )
            name = str(run.benchmark_set)
            chunk = [(image, cls, name) for _, image, cls in rows]
        else:
            rows = list(
                Image.objects.filter(status=ImageStatus.ACTIVE, subclass__isnull=False, pk__gt=last)
                .order_by("pk")
                .values_list("pk", "pk", "subclass__label_class_id")[:CHUNK]
            )
            chunk = [(image, cls, "library") for _, image, cls in rows]
        if not rows:
            return
        last = rows[-1][0]
        yield chunk


# --- Runs -----------------------------------------------------------------------------------


def evaluation_create(
    *,
    version: ModelVersion,
    scope: EvaluationScope,
    actor: User | None,
    threshold: float = 0.95,
    enqueue: bool = True,
) -> EvaluationRun:
    """Record a run and its job; the job is sent once the transaction commits."""
    if not 0 < threshold <= 1:
        raise EvaluationError("The threshold must be above 0 and at most 1.")
    with transaction.atomic():
        run = EvaluationRun.objects.create(
            model_version=version,
            scope_kind=scope.kind,
            dataset=scope.dataset,
            split=scope.split,
            benchmark_set=scope.benchmark_set,
            threshold=threshold,
            created_by=actor,
        )
        job = job_create(kind=EVALUATE_KIND, actor=actor, params={"evaluation_id": run.pk})
        run.job = job
        run.save(update_fields=["job"])
        if enqueue:
            job_enqueue(job=job)
    return run


@dataclass
class Samples:
    """Per-image arrays of one run, in scope order."""

    image_ids: np.ndarray
    true_index: np.ndarray  # model output index of the ground truth; -1 out of scope
    true_class: np.ndarray  # library class id; 0 when none
    pred_index: np.ndarray
    top1: np.ndarray
    p_true: np.ndarray
    group: np.ndarray
    groups: list[str]
    excluded: dict[str, int] = field(default_factory=dict)
    excluded_classes: dict[str, int] = field(default_factory=dict)
    # Sub-class and import batch ids (0: none), when the scope query carried them.
    subclass: np.ndarray | None = None
    batch: np.ndarray | None = None


def samples_collect(
    run: EvaluationRun, progress: Callable[[int, int], None] | None = None
) -> Samples:
    """Make missing predictions and build the arrays every report is computed from."""
    version = run.model_version
    class_count = len(version.label_map)
    index_of: dict[int, int] = {}
    class_of_index: dict[int, int] = {}
    for index, class_id in LabelMatch.objects.filter(
        model_version=version, label_class__isnull=False
    ).values_list("index", "label_class_id"):
        index_of.setdefault(class_id, index)
        class_of_index[index] = class_id
    holding = set(LabelClass.objects.filter(kind=ClassKind.HOLDING).values_list("pk", flat=True))
    class_names = dict(LabelClass.objects.values_list("pk", "name"))

    total = _scope_count(run)
    _predictions_ensure(run, total, progress)
    keys = ("id", "t", "c", "p", "s", "pt", "g", "sub", "batch")
    columns: dict[str, list[Any]] = {key: [] for key in keys}
    groups: list[str] = []
    excluded: Counter[str] = Counter()
    excluded_classes: Counter[str] = Counter()
    # A right top-1 answer's score is the probability of the given label; only the wrong ones
    # need the stored top-k read back (a JSON decode per row).
    needs_top_k: list[int] = []
    for chunk in _scored_rows(run):
        for image_id, class_id, group, top1_index, top1_score, subclass, batch in chunk:
            if class_id is not None and class_id in holding:
                excluded["holding_class"] += 1
                excluded_classes[class_names.get(class_id, str(class_id))] += 1
                continue
            if class_id is not None and class_id not in index_of:
                excluded["class_not_in_label_map"] += 1
                excluded_classes[class_names.get(class_id, str(class_id))] += 1
                continue
            if top1_index is None:
                excluded["no_prediction"] += 1
                continue
            true_index = index_of[class_id] if class_id is not None else -1
            if group not in groups:
                groups.append(group)
            if true_index == top1_index:
                given = top1_score
            else:
                given = 0.0
                if true_index >= 0:
                    needs_top_k.append(len(columns["id"]))
            columns["id"].append(image_id)
            columns["t"].append(true_index)
            columns["c"].append(class_id or 0)
            columns["p"].append(top1_index)
            columns["s"].append(top1_score)
            columns["pt"].append(given)
            columns["g"].append(groups.index(group))
            columns["sub"].append(subclass or 0)
            columns["batch"].append(batch or 0)
    given_column = columns["pt"]
    for start in range(0, len(needs_top_k), CHUNK):
        positions = needs_top_k[start : start + CHUNK]
        stored = _stored_predictions(version, [columns["id"][at] for at in positions])
        for at in positions:
            indices, scores = stored[columns["id"][at]]
            given_column[at] = _given_probability(columns["t"][at], indices, scores, class_count)
    if progress:
        progress(total, total)
    return Samples(
        image_ids=np.asarray(columns["id"], dtype=np.int64),
        true_index=np.asarray(columns["t"], dtype=np.int64),
        true_class=np.asarray(columns["c"], dtype=np.int64),
        pred_index=np.asarray(columns["p"], dtype=np.int64),
        top1=np.asarray(columns["s"], dtype=np.float64),
        p_true=np.asarray(given_column, dtype=np.float64),
        group=np.asarray(columns["g"], dtype=np.int64),
        groups=groups,
        excluded=dict(excluded),
        excluded_classes=dict(excluded_classes.most_common(50)),
        subclass=np.asarray(columns["sub"], dtype=np.int64)
        if run.scope_kind == EvaluationScopeKind.LIBRARY
        else None,
        batch=np.asarray(columns["batch"], dtype=np.int64)
        if run.scope_kind == EvaluationScopeKind.LIBRARY
        else None,
    )


def _predictions_ensure(
    run: EvaluationRun, total: int, progress: Callable[[int, int], None] | None
) -> None:
    """Predictions of the run's version for the scope's images that have none (stored ones
    are reused: an image's content never changes, nor does a model version)."""
    version = run.model_version
    if run.scope_kind == EvaluationScopeKind.DATASET:
        query: Any = DatasetAssignment.objects.filter(version_id=run.dataset_id)
        if run.split:
            query = query.filter(split=run.split)
    elif run.scope_kind == EvaluationScopeKind.BENCHMARK:
        query = BenchmarkMember.objects.filter(benchmark_set_id=run.benchmark_set_id)
    else:
        query = Image.objects.filter(status=ImageStatus.ACTIVE, subclass__isnull=False)
    image_field = "pk" if run.scope_kind == EvaluationScopeKind.LIBRARY else "image_id"
    has = Prediction.objects.filter(model_version=version, image_id=OuterRef(image_field))
    missing = query.filter(~Exists(has))
    last = 0
    done = 0
    while True:
        rows = list(
            missing.filter(pk__gt=last).order_by("pk").values_list("pk", image_field)[:CHUNK]
        )
        if not rows:
            break
        predictions_make(image_ids=[image_id for _, image_id in rows], version=version)
        last = rows[-1][0]
        done += len(rows)
        if progress:
            progress(done, max(done, total))


def _scored_rows(run: EvaluationRun) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of (image id, ground-truth class id, set name, top-1 index, top-1 score); the
    index is None for images without a prediction."""
    version = run.model_version
    if run.scope_kind == EvaluationScopeKind.LIBRARY:
        # Driven by the image primary key (a range scan), the prediction joined on its
        # (image, version) unique index; a missing prediction reads as None.
        images = Image.objects.filter(status=ImageStatus.ACTIVE, subclass__isnull=False).annotate(
            prediction=FilteredRelation(
                "predictions", condition=Q(predictions__model_version=version)
            )
        )
        last = 0
        while True:
            rows = list(
                images.filter(pk__gt=last)
                .order_by("pk")
                .values_list(
                    "pk",
                    "subclass__label_class_id",
                    "prediction__top1_index",
                    "prediction__top1_score",
                    "subclass_id",
                    "import_batch_id",
                )[:CHUNK]
            )
            if not rows:
                return
            last = rows[-1][0]
            yield [(row[0], row[1], "library", *row[2:]) for row in rows]
    for chunk in _scope_rows(run):
        top1 = {
            image_id: (index, score)
            for image_id, index, score in Prediction.objects.filter(
                model_version=version, image_id__in=[image for image, _, _ in chunk]
            ).values_list("image_id", "top1_index", "top1_score")
        }
        yield [
            (image, cls, group, *top1.get(image, (None, 0.0)), None, None)
            for image, cls, group in chunk
        ]


def _stored_predictions(
    version: ModelVersion, image_ids: list[int]
) -> dict[int, tuple[list[int], list[float]]]:
    return {
        image_id: (indices, scores)
        for image_id, indices, scores in Prediction.objects.filter(
            model_version=version, image_id__in=image_ids
        ).values_list("image_id", "class_indices", "scores")
    }


def _scope_count(run: EvaluationRun) -> int:
    if run.scope_kind == EvaluationScopeKind.DATASET:
        query = DatasetAssignment.objects.filter(version_id=run.dataset_id)
        return (query.filter(split=run.split) if run.split else query).count()
    if run.scope_kind == EvaluationScopeKind.BENCHMARK:
        return BenchmarkMember.objects.filter(benchmark_set_id=run.benchmark_set_id).count()
    return Image.objects.filter(status=ImageStatus.ACTIVE, subclass__isnull=False).count()


def _given_probability(
    true_index: int, indices: list[int], scores: list[float], class_count: int
) -> float:
    if true_index < 0:
        return 0.0
    for index, score in zip(indices, scores, strict=False):
        if index == true_index:
            return float(score)
    others = class_count - len(indices)
    if others <= 0:
        return 0.0
    left = max(0.0, 1.0 - float(sum(scores))) / others
    return min(left, float(scores[-1]) if scores else left)


# --- Reports --------------------------------------------------------------------------------


def log_losses(p_true: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(p_true, MIN_PROBABILITY, 1.0))


def pair_weights(
    true_index: np.ndarray, pred_index: np.ndarray, pairs: dict[frozenset[int], float]
) -> np.ndarray:
    """Per-image weights of the weighted log loss (see the module docstring)."""
    weights = np.ones(len(true_index), dtype=np.float64)
    if not pairs:
        return weights
    wrong = np.flatnonzero(true_index != pred_index)
    for position in wrong:
        key = frozenset((int(true_index[position]), int(pred_index[position])))
        if key in pairs:
            weights[position] = pairs[key]
    return weights


def weighted_log_loss(
    true_index: np.ndarray,
    pred_index: np.ndarray,
    p_true: np.ndarray,
    pairs: dict[frozenset[int], float],
) -> float | None:
    if not len(p_true):
        return None
    weights = pair_weights(true_index, pred_index, pairs)
    if weights.sum() <= 0:
        return None
    return float((weights * log_losses(p_true)).sum() / weights.sum())


def threshold_report(top1: np.ndarray, correct: np.ndarray, threshold: float) -> dict[str, Any]:
    """Shares of images whose top score is at or above ``threshold``, right and wrong."""
    total = len(top1)
    above = top1 >= threshold
    right = int((above & correct).sum())
    wrong = int((above & ~correct).sum())
    return {
        "threshold": threshold,
        "images": total,
        "above_right": right,
        "above_wrong": wrong,
        "below": int(total - right - wrong),
        "true_positive_rate": right / total if total else None,
        "false_positive_rate": wrong / total if total else None,
        "precision_above": right / (right + wrong) if right + wrong else None,
    }


def score_stats(top1: np.ndarray, threshold: float) -> dict[str, Any]:
    if not len(top1):
        return {"images": 0}
    return {
        "images": len(top1),
        "min": float(top1.min()),
        "max": float(top1.max()),
        "median": float(np.median(top1)),
        "mean": float(top1.mean()),
        "above": int((top1 >= threshold).sum()),
        "below": int((top1 < threshold).sum()),
    }


def _histogram(values: np.ndarray) -> list[int]:
    bins = np.minimum((values * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
    return np.bincount(np.maximum(bins, 0), minlength=HISTOGRAM_BINS).tolist()


def set_report(
    *,
    true_index: np.ndarray,
    pred_index: np.ndarray,
    top1: np.ndarray,
    p_true: np.ndarray,
    label_map: list[str],
    threshold: float,
    pairs: dict[frozenset[int], float],
    out_of_scope: bool = False,
) -> dict[str, Any]:
    """Every report of one set of images (one split, one benchmark set, the library)."""
    if out_of_scope:
        stats = score_stats(top1, threshold)
        above = int((top1 >= threshold).sum())
        return {
            "out_of_scope": True,
            "images": len(top1),
            "threshold": {
                "threshold": threshold,
                "images": len(top1),
                "above": above,
                "false_positive_rate": above / len(top1) if len(top1) else None,
            },
            "score_stats": stats,
            "histogram": {"wrong": _histogram(top1), "right": [0] * HISTOGRAM_BINS},
            "predicted_classes": _named_counts(pred_index, label_map, TOP_PAIRS),
        }
    correct = true_index == pred_index
    n = len(true_index)
    report: dict[str, Any] = {"out_of_scope": False, "images": int(n)}
    if not n:
        return report
    labels = np.union1d(true_index, pred_index)
    precision, recall, f1, support = precision_recall_fscore_support(
        true_index, pred_index, labels=labels, zero_division=0
    )
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            true_index, pred_index, labels=labels, average=average, zero_division=0
        )
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    losses = log_losses(p_true)
    report["metrics"] = {
        "accuracy": float(accuracy_score(true_index, pred_index)),
        "macro": averages["macro"],
        "weighted": averages["weighted"],
        "log_loss": float(losses.mean()),
        "weighted_log_loss": weighted_log_loss(true_index, pred_index, p_true, pairs),
        "matthews": float(matthews_corrcoef(true_index, pred_index)) if n > 1 else None,
        "errors": int((~correct).sum()),
    }
    predicted_count = np.bincount(pred_index, minlength=len(label_map))
    wrong_true = np.bincount(true_index[~correct], minlength=len(label_map))
    wrong_pred = np.bincount(pred_index[~correct], minlength=len(label_map))
    report["per_class"] = [
        {
            "index": int(index),
            "name": _name(label_map, index),
            "support": int(support[position]),
            "predicted": int(predicted_count[index]),
            "precision": float(precision[position]),
            "recall": float(recall[position]),
            "f1": float(f1[position]),
            "errors": int(wrong_true[index]),
            "false_positives": int(wrong_pred[index]),
        }
        for position, index in enumerate(labels)
    ]
    report["threshold"] = threshold_report(top1, correct, threshold)
    report["score_stats"] = score_stats(top1, threshold)
    report["histogram"] = {"right": _histogram(top1[correct]), "wrong": _histogram(top1[~correct])}
    report["errors_by_true_class"] = _named_counts(true_index[~correct], label_map, TOP_PAIRS)
    report["errors_by_predicted_class"] = _named_counts(pred_index[~correct], label_map, TOP_PAIRS)
    report["confused_pairs"] = _top_pairs(true_index[~correct], pred_index[~correct], label_map)
    # Loss sums per wrong (true, predicted) pair: the weighted log loss can be recomputed for
    # any list of pair weights without the per-image arrays.
    report["loss_sums"] = _loss_sums(true_index, pred_index, losses)
    return report


def _name(label_map: list[str], index: int) -> str:
    return label_map[index] if 0 <= index < len(label_map) else f"#{index}"


def _named_counts(values: np.ndarray, label_map: list[str], limit: int) -> list[dict[str, Any]]:
    counts = np.bincount(values, minlength=len(label_map)) if len(values) else np.zeros(0)
    order = np.argsort(-counts, kind="stable")[:limit]
    return [
        {"index": int(i), "name": _name(label_map, int(i)), "count": int(counts[i])}
        for i in order
        if counts[i] > 0
    ]


def _top_pairs(
    true_index: np.ndarray, pred_index: np.ndarray, label_map: list[str]
) -> list[dict[str, Any]]:
    if not len(true_index):
        return []
    width = max(len(label_map), int(max(true_index.max(), pred_index.max())) + 1)
    codes = true_index * width + pred_index
    unique, counts = np.unique(codes, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:TOP_PAIRS]
    return [
        {
            "true": _name(label_map, int(unique[i] // width)),
            "predicted": _name(label_map, int(unique[i] % width)),
            "true_index": int(unique[i] // width),
            "predicted_index": int(unique[i] % width),
            "count": int(counts[i]),
        }
        for i in order
    ]


def _loss_sums(
    true_index: np.ndarray, pred_index: np.ndarray, losses: np.ndarray
) -> dict[str, Any]:
    correct = true_index == pred_index
    wrong = np.flatnonzero(~correct)
    sums: dict[tuple[int, int], list[float]] = {}
    for position in wrong:
        key = (int(true_index[position]), int(pred_index[position]))
        entry = sums.setdefault(key, [0, 0.0])
        entry[0] += 1
        entry[1] += float(losses[position])
    return {
        "correct": [int(correct.sum()), float(losses[correct].sum())],
        "wrong": [[t, p, count, total] for (t, p), (count, total) in sums.items()],
    }


def weighted_log_loss_from_sums(loss_sums: dict[str, Any], pairs: dict[frozenset[int], float]):
    """The weighted log loss of a stored report for another list of pair weights."""
    count, total = loss_sums["correct"]
    weight_sum, loss_sum = float(count), float(total)
    for true, predicted, pair_count, pair_total in loss_sums["wrong"]:
        weight = pairs.get(frozenset((true, predicted)), 1.0)
        weight_sum += weight * pair_count
        loss_sum += weight * pair_total
    return loss_sum / weight_sum if weight_sum else None


def pairs_by_index(run: EvaluationRun) -> dict[frozenset[int], float]:
    """The run's commonly-confused pairs as {frozenset of output indices: weight}."""
    position = {name: index for index, name in enumerate(run_label_map(run))}
    pairs: dict[frozenset[int], float] = {}
    for pair in run.confused_pairs or []:
        a, b = position.get(pair.get("a")), position.get(pair.get("b"))
        if a is not None and b is not None and a != b:
            pairs[frozenset((a, b))] = float(pair.get("weight", 1.0))
    return pairs


def suggested_pairs(reports: dict[str, Any]) -> list[dict[str, Any]]:
    """Unordered pairs with the most confusions in either direction, weight 1."""
    counts: Counter[tuple[str, str]] = Counter()
    for report in reports.values():
        for pair in report.get("confused_pairs", []):
            a, b = sorted((pair["true"], pair["predicted"]))
            counts[(a, b)] += pair["count"]
    return [
        {"a": a, "b": b, "weight": 1.0, "count": count}
        for (a, b), count in counts.most_common(SUGGESTED_PAIRS)
    ]


def tag_report(samples: Samples, in_scope: np.ndarray) -> list[dict[str, Any]]:
    """For each tag (sub-class, source, import batch, bad-image verdict): share of all errors
    that carry it, error rate among images that carry it, share of the data that carries it.
    Sorted by excess errors (errors beyond what the overall error rate predicts)."""
    ids = samples.image_ids[in_scope]
    wrong = (samples.true_index != samples.pred_index)[in_scope]
    if samples.subclass is not None and samples.batch is not None:
        subclass_of = samples.subclass[in_scope]
        batch_of = samples.batch[in_scope]
    else:
        subclass_of = np.zeros(len(ids), dtype=np.int64)
        batch_of = np.zeros(len(ids), dtype=np.int64)
        order = np.argsort(ids)
        sorted_ids = ids[order]
        for start in range(0, len(ids), CHUNK):
            chunk = [int(i) for i in sorted_ids[start : start + CHUNK]]
            rows = np.asarray(
                Image.objects.filter(pk__in=chunk)
                .order_by("pk")
                .values_list("pk", "subclass_id", "import_batch_id"),
                dtype=object,
            )
            if len(rows):
                at = order[np.searchsorted(sorted_ids, rows[:, 0].astype(np.int64))]
                subclass_of[at] = [value or 0 for value in rows[:, 1]]
                batch_of[at] = [value or 0 for value in rows[:, 2]]
    # Bad-image verdicts are given by people, one at a time: few enough to read whole.
    in_run = set(ids.tolist())
    bad = [
        (image_id, reason)
        for image_id, reason in BadVerdict.objects.values_list("image_id", "reason").iterator()
        if image_id in in_run
    ]
    subclasses = {
        pk: (f"{class_name} / {name}", source)
        for pk, name, class_name, source in SubClass.objects.filter(
            pk__in=[int(v) for v in np.unique(subclass_of) if v]
        ).values_list("pk", "name", "label_class__name", "source")
    }
    total = len(ids)
    errors = int(wrong.sum())
    rate = errors / total if total else 0.0
    counted: list[tuple[str, int, int]] = []  # tag, images, errors

    def count_codes(codes: np.ndarray, name: Callable[[int], str | None]) -> None:
        values, inverse = np.unique(codes, return_inverse=True)
        carried = np.bincount(inverse)
        wrong_count = np.bincount(inverse, weights=wrong.astype(np.float64))
        for value, n, e in zip(values, carried, wrong_count, strict=True):
            label = name(int(value)) if value else None
            if label:
                counted.append((label, int(n), int(e)))

    count_codes(
        subclass_of, lambda pk: f"sub-class: {subclasses[pk][0]}" if pk in subclasses else None
    )
    # Sources as small integer codes (0: no sub-class), looked up per sub-class.
    source_names = sorted({source for _, source in subclasses.values()})
    source_code = {name: code for code, name in enumerate(source_names, start=1)}
    code_of_subclass = np.zeros(int(subclass_of.max(initial=0)) + 1, dtype=np.int64)
    for pk, (_, source) in subclasses.items():
        code_of_subclass[pk] = source_code[source]
    count_codes(code_of_subclass[subclass_of], lambda code: f"source: {source_names[code - 1]}")
    count_codes(batch_of, lambda pk: f"import batch: #{pk}")
    if bad:
        position = {int(image_id): i for i, image_id in enumerate(ids)}
        by_reason: dict[str, list[int]] = {}
        for image_id, reason in bad:
            by_reason.setdefault(reason, []).append(position[image_id])
        for reason, positions in by_reason.items():
            counted.append(
                (f"bad image: {reason}", len(positions), int(wrong[np.asarray(positions)].sum()))
            )
    rows_out: list[dict[str, Any]] = [
        {
            "tag": tag,
            "images": carried,
            "errors": tag_errors,
            "share_of_errors": tag_errors / errors if errors else 0.0,
            "error_rate": tag_errors / carried if carried else 0.0,
            "share_of_data": carried / total if total else 0.0,
            "excess_errors": tag_errors - carried * rate,
        }
        for tag, carried, tag_errors in counted
    ]
    rows_out.sort(key=lambda row: (-row["excess_errors"], -row["errors"], row["tag"]))
    return rows_out[:200]


def reports_compute(run: EvaluationRun, samples: Samples) -> dict[str, Any]:
    label_map = list(run.model_version.label_map)
    pairs = pairs_by_index(run)
    out_of_scope_set = (
        run.scope_kind == EvaluationScopeKind.BENCHMARK
        and run.benchmark_set is not None
        and run.benchmark_set.kind == BenchmarkKind.OUT_OF_SCOPE
    )
    reports: dict[str, Any] = {}
    selections = [(name, samples.group == index) for index, name in enumerate(samples.groups)]
    if len(selections) > 1:
        selections.append(("all", np.ones(len(samples.group), dtype=bool)))
    no_class = samples.true_index < 0
    for name, selected in selections:
        classed = selected & ~no_class
        if classed.any() or not (selected & no_class).any():
            reports[name] = set_report(
                true_index=samples.true_index[classed],
                pred_index=samples.pred_index[classed],
                top1=samples.top1[classed],
                p_true=samples.p_true[classed],
                label_map=label_map,
                threshold=run.threshold,
                pairs=pairs,
            )
        if (selected & no_class).any():
            key = name if not classed.any() and out_of_scope_set else f"{name} (no class)"
            reports[key] = set_report(
                true_index=samples.true_index[selected & no_class],
                pred_index=samples.pred_index[selected & no_class],
                top1=samples.top1[selected & no_class],
                p_true=samples.p_true[selected & no_class],
                label_map=label_map,
                threshold=run.threshold,
                pairs=pairs,
                out_of_scope=True,
            )
    return {
        "scope": scope_describe(run),
        "model_version": run.model_version.number,
        "threshold": run.threshold,
        "images_scored": int((~no_class).sum()),
        "images_without_class": int(no_class.sum()),
        "excluded": samples.excluded,
        "excluded_classes": samples.excluded_classes,
        "sets": reports,
        "suggested_pairs": suggested_pairs(reports),
        "tags": tag_report(samples, ~no_class),
    }


# --- Double-check queue ---------------------------------------------------------------------


def queue_fill(run: EvaluationRun, samples: Samples) -> int:
    """Misclassified images and correct ones below the threshold, plus images a second opinion
    sent to Double-check, ranked by the model's probability of the given label, lowest first."""
    scored = samples.true_index >= 0
    wrong = samples.true_index != samples.pred_index
    low = samples.top1 < run.threshold
    referred = set(
        SecondOpinion.objects.filter(status=OpinionStatus.DOUBLE_CHECK).values_list(
            "image_id", flat=True
        )
    )
    referred_mask = np.isin(samples.image_ids, np.fromiter(referred, dtype=np.int64))
    chosen = np.flatnonzero(scored & (wrong | low | referred_mask))
    order = chosen[np.argsort(samples.p_true[chosen], kind="stable")]
    class_of_index = dict(
        LabelMatch.objects.filter(model_version=run.model_version).values_list(
            "index", "label_class_id"
        )
    )
    label_map = run.model_version.label_map
    kinds = double_check_kinds(
        wrong=wrong, given=samples.p_true, top1=samples.top1, threshold=run.threshold
    )
    DoubleCheckItem.objects.filter(run=run).delete()
    rows = []
    for rank, position in enumerate(order, start=1):
        predicted = int(samples.pred_index[position])
        if wrong[position]:
            why = "misclassified"
        elif referred_mask[position]:
            why = "second_opinion"
        else:
            why = "low_confidence"
        rows.append(
            (
                run.pk,
                int(samples.image_ids[position]),
                int(samples.true_class[position]) or None,
                class_of_index.get(predicted),
                _name(label_map, predicted)[:500],
                float(samples.top1[position]),
                float(samples.p_true[position]),
                rank,
                why,
                KIND_ORDER[kinds[position]].value,
                DoubleCheckStatus.OPEN.value,
            )
        )
    # Tens of thousands of rows: one prepared INSERT run many times, not model instances.
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 5000):
            cursor.executemany(
                QUEUE_INSERT,
                rows[start : start + 5000],
            )
    return len(rows)


def queue_add_images(
    *, run: EvaluationRun, label_class: LabelClass | None = None, subclass: SubClass | None = None
) -> int:
    """Put every active image of a class or sub-class at the end of the run's queue (lowest
    top score first); images already queued keep their place. Returns how many were added."""
    if run.scope_kind == EvaluationScopeKind.CROSS_VALIDATION:
        # Its model is the embedding model: no stored prediction ranks the other images.
        raise EvaluationError(
            "A label-error ranking queues only the images its cross-validated heads doubt; "
            "rank again with another threshold to see more."
        )
    images = Image.objects.filter(status=ImageStatus.ACTIVE)
    if subclass is not None:
        images = images.filter(subclass=subclass)
    elif label_class is not None:
        images = images.filter(subclass__label_class=label_class)
    else:
        raise EvaluationError("Name a class or a sub-class.")
    queued = DoubleCheckItem.objects.filter(run=run).values("image_id")
    rows = list(
        images.exclude(pk__in=queued)
        .order_by("pk")
        .values_list("pk", "subclass__label_class_id")[:20000]
    )
    if not rows:
        return 0
    version = run.model_version
    predictions_make(image_ids=[pk for pk, _ in rows], version=version)
    class_count = len(version.label_map)
    index_of = dict(
        LabelMatch.objects.filter(model_version=version, label_class__isnull=False).values_list(
            "label_class_id", "index"
        )
    )
    class_of_index = {index: class_id for class_id, index in index_of.items()}
    stored = {
        image_id: (indices, scores)
        for image_id, indices, scores in Prediction.objects.filter(
            model_version=version, image_id__in=[pk for pk, _ in rows]
        ).values_list("image_id", "class_indices", "scores")
    }
    entries = []
    for image_id, class_id in rows:
        indices, scores = stored.get(image_id, ([], []))
        true_index = index_of.get(class_id, -1)
        given = _given_probability(true_index, indices, scores, class_count) if indices else 0.0
        entries.append((given, image_id, class_id, indices, scores))
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    start = (DoubleCheckItem.objects.filter(run=run).aggregate(m=Max("rank"))["m"] or 0) + 1
    DoubleCheckItem.objects.bulk_create(
        [
            DoubleCheckItem(
                run=run,
                image_id=image_id,
                true_class_id=class_id,
                predicted_class_id=class_of_index.get(indices[0]) if indices else None,
                predicted_name=_name(version.label_map, indices[0]) if indices else "",
                top1_score=float(scores[0]) if scores else 0.0,
                given_probability=given,
                rank=start + offset,
                why="added",
                kind=_added_kind(run, class_id, class_of_index, indices, scores, given),
            )
            for offset, (given, image_id, class_id, indices, scores) in enumerate(entries)
        ],
        batch_size=1000,
        ignore_conflicts=True,
    )
    return len(entries)


def _added_kind(
    run: EvaluationRun,
    class_id: int,
    class_of_index: dict[int, int],
    indices: list[int],
    scores: list[float],
    given: float,
) -> str:
    """The kind of an image added to the queue by hand, from its stored prediction."""
    if not indices:
        return DoubleCheckKind.MODEL_UNSURE.value
    kind = double_check_kinds(
        wrong=np.array(class_of_index.get(indices[0]) != class_id),
        given=np.array(given),
        top1=np.array(scores[0]),
        threshold=run.threshold,
    )
    return KIND_ORDER[int(kind)].value


# --- Running --------------------------------------------------------------------------------


def evaluation_execute(
    *, run: EvaluationRun, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Compute the run's reports and fill its Double-check queue. Safe to run again."""
    EvaluationRun.objects.filter(pk=run.pk).update(status=EvaluationStatus.RUNNING)
    try:
        samples = samples_collect(run, progress)
        metrics = reports_compute(run, samples)
        with transaction.atomic():
            metrics["double_check_items"] = queue_fill(run, samples)
            run.metrics = metrics
            run.status = EvaluationStatus.DONE
            run.finished_at = timezone.now()
            if not run.confused_pairs:
                run.confused_pairs = [
                    {key: pair[key] for key in ("a", "b", "weight")}
                    for pair in metrics["suggested_pairs"][:5]
                ]
            run.save(update_fields=["metrics", "status", "finished_at", "confused_pairs"])
    except Exception:
        EvaluationRun.objects.filter(pk=run.pk).update(status=EvaluationStatus.FAILED)
        raise
    return metrics


def evaluation_job_work(job: Job, progress: Callable[[int, int], None]) -> dict[str, Any]:
    run = EvaluationRun.objects.select_related("model_version").get(pk=job.params["evaluation_id"])
    metrics = evaluation_execute(run=run, progress=progress)
    return {
        "evaluation_id": run.pk,
        "images_scored": metrics["images_scored"],
        "double_check_items": metrics["double_check_items"],
        "message": f"Evaluated v{run.model_version.number} on {metrics['scope']}: "
        f"{metrics['images_scored']} images scored, "
        f"{metrics['double_check_items']} to double-check",
    }


def confused_pairs_update(*, run: EvaluationRun, pairs: list[dict[str, Any]]) -> EvaluationRun:
    """Replace the run's commonly-confused pairs and recompute its weighted log losses from the
    stored loss sums. Raises EvaluationError on a pair the label map does not hold."""
    names = set(run_label_map(run))
    cleaned = []
    for pair in pairs:
        a, b = str(pair.get("a", "")).strip(), str(pair.get("b", "")).strip()
        if a not in names or b not in names or a == b:
            raise EvaluationError(f"{a!r} / {b!r} is not a pair of the model's classes.")
        try:
            weight = float(pair.get("weight", 1.0))
        except (TypeError, ValueError):
            raise EvaluationError("Weights must be numbers.") from None
        if not (0 <= weight <= 1) or math.isnan(weight):
            raise EvaluationError("Weights must be between 0 and 1.")
        cleaned.append({"a": a, "b": b, "weight": weight})
    run.confused_pairs = cleaned
    by_index = pairs_by_index(run)
    for report in (run.metrics or {}).get("sets", {}).values():
        if "loss_sums" in report:
            report["metrics"]["weighted_log_loss"] = weighted_log_loss_from_sums(
                report["loss_sums"], by_index
            )
    run.save(update_fields=["confused_pairs", "metrics"])
    return run


# --- Double-check actions -------------------------------------------------------------------


class DoubleCheckError(Exception):
    pass


def _default_subclass(label_class_id: int) -> SubClass:
    subclass = (
        SubClass.objects.filter(label_class_id=label_class_id).order_by("-is_default", "pk").first()
    )
    if subclass is None:
        raise DoubleCheckError("That class has no sub-class to label with.")
    return subclass


DOUBLE_CHECK_ACTIONS = ("keep", "predicted", "relabel", "trash", "skip")


@transaction.atomic
def double_check_resolve(
    *,
    item: DoubleCheckItem,
    action: str,
    actor: User,
    expected_version: int | None,
    subclass: SubClass | None = None,
    note: str = "",
) -> DoubleCheckItem:
    """Apply one Double-check answer to the image as the answerer saw it.

    ``expected_version`` is the image version the page or client showed; every answer but
    ``skip`` needs it, and an image changed since raises ``VersionConflict`` (which names who
    changed it) with the image and the item left as they are. ``keep`` records a label event
    confirming the label; ``predicted`` relabels to the predicted class's default sub-class and
    ``relabel`` to ``subclass``, and either is a ``keep`` when it names the label the image
    already has; ``trash`` moves the image to the trash with ``note`` as the reason; ``skip``
    only marks the item. Each goes through the library's image services, the ones the labelling
    page uses, as a label event with reason ``double_check``."""
    if action not in DOUBLE_CHECK_ACTIONS:
        raise DoubleCheckError(f"Unknown action {action!r}.")
    item = DoubleCheckItem.objects.select_for_update().get(pk=item.pk)
    if action == "skip":
        status = DoubleCheckStatus.SKIPPED
    else:
        if expected_version is None:
            raise DoubleCheckError(
                "Say which version of the image the answer is for (the page sends it; over "
                "the API send the item's version)."
            )
        # Locked before deciding: the answer is judged against the label the services will see.
        image = (
            Image.objects.select_for_update(of=("self",))
            .select_related("subclass")
            .get(pk=item.image_id)
        )
        target = _answer_target(item=item, image=image, action=action, subclass=subclass)
        context = f"Double-check of evaluation {item.run_id}"
        if action == "keep" or (target is not None and target.pk == image.subclass_id):
            image_label_confirm(
                image_id=image.pk,
                actor=actor,
                reason=LabelReason.DOUBLE_CHECK,
                expected_version=expected_version,
                note=f"label kept after {context}",
            )
            status = DoubleCheckStatus.KEPT
        elif action == "trash":
            image_trash(
                image_id=image.pk,
                actor=actor,
                note=note or "bad image (Double-check)",
                reason=LabelReason.DOUBLE_CHECK,
                expected_version=expected_version,
            )
            status = DoubleCheckStatus.TRASHED
        else:
            image_relabel(
                image_id=image.pk,
                subclass=target,
                actor=actor,
                reason=LabelReason.DOUBLE_CHECK,
                expected_version=expected_version,
                note=context,
            )
            status = DoubleCheckStatus.RELABELLED
    item.status = status
    item.resolved_by = actor
    item.resolved_at = timezone.now()
    item.save(update_fields=["status", "resolved_by", "resolved_at"])
    return item


def _answer_target(
    *, item: DoubleCheckItem, image: Image, action: str, subclass: SubClass | None
) -> SubClass | None:
    """The sub-class a relabelling answer moves the image to (``None`` for keep and trash).
    The predicted class the image already belongs to keeps its sub-class."""
    if action == "predicted":
        if item.predicted_class_id is None:
            raise DoubleCheckError("The predicted label is not a library class.")
        if image.subclass is not None and image.subclass.label_class_id == item.predicted_class_id:
            return image.subclass
        return _default_subclass(item.predicted_class_id)
    if action == "relabel":
        if subclass is None:
            raise DoubleCheckError("Choose a class or sub-class.")
        return subclass
    return None


def queue_next(
    run: EvaluationRun, *, after_rank: int = 0, kind: str | None = None
) -> DoubleCheckItem | None:
    """The first open item, of ``kind`` when given (skipped ones come back once the open ones
    are done)."""
    items = DoubleCheckItem.objects.filter(run=run).select_related(
        "image__subclass__label_class", "true_class", "predicted_class"
    )
    if kind:
        items = items.filter(kind=kind)
    return (
        items.filter(status=DoubleCheckStatus.OPEN, rank__gt=after_rank).order_by("rank").first()
        or items.filter(status=DoubleCheckStatus.OPEN).order_by("rank").first()
        or items.filter(status=DoubleCheckStatus.SKIPPED).order_by("resolved_at", "rank").first()
    )
