"""Out-of-sample label-error ranking: K-fold cross-validated probabilities of quick-trainer
heads over the labelled library, written as an evaluation run whose Double-check queue puts
the likeliest label errors first.

Which images: active images labelled in a normal class, with an embedding from the embedding
model (missing ones are computed first; unreadable images are counted and left out). Classes
with fewer images than folds are left out and counted, since a fold could not both train and
score them.

Folds: stratified, seeded and even (``fold_assignment``). Near-duplicate components (as
``find_duplicates`` recorded them, the units a dataset build keeps in one split) are each kept
in one fold, so no head is trained on a copy of an image it scores; a component larger than
``MAX_GROUP`` is a chain of merely similar images on a low-information library, kept together
only by its review groups of at most ``MAX_GROUP``. Fold k's head is fitted on every image
outside fold k and scores only fold k: every image is scored exactly once, by a head that never
saw it (``out_of_sample_probabilities``).

The run's model version is the embedding model; its report is computed over the run's own label
map (the ranked classes, by name), stored in ``metrics["label_map"]``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import User
from curation.models import (
    ClassKind,
    Image,
    ImageStatus,
    Job,
    LabelClass,
)
from curation.services.datasets import UnionFind, component_members
from curation.services.jobs import job_create, job_enqueue
from inference.embeddings import (
    embedding_matrix,
    embeddings_make,
)
from inference.evaluation import (
    KIND_ORDER,
    QUEUE_INSERT,
    EvaluationError,
    Samples,
    double_check_kinds,
    pairs_by_index,
    set_report,
    suggested_pairs,
    tag_report,
)
from inference.head import Head, HeadError
from inference.models import (
    DoubleCheckItem,
    DoubleCheckStatus,
    EvaluationRun,
    EvaluationScopeKind,
    EvaluationStatus,
    ImageEmbedding,
    ModelVersion,
)
from inference.trainer import embedding_model_required

logger = logging.getLogger(__name__)

LABEL_ERRORS_KIND = "inference.rank_label_errors"
DEFAULT_FOLDS = 5
DEFAULT_REPEATS = 3
DEFAULT_SEED = 0
DEFAULT_COMPONENTS = 256
MAX_FOLDS = 20
MAX_REPEATS = 10
MAX_GROUP = 50
READ_CHUNK = 5000
APPLY_CHUNK = 8192  # rows projected at a time
EMBED_CHUNK = 256
SET_NAME = "cross-validation"
METHOD = (
    "shrinkage LDA on whitened principal components, repeated stratified K-fold, "
    "ranked by the averaged out-of-sample probability of the given label"
)
Fit = Callable[..., tuple[Head, Any]]  # discriminant_fit's signature
Progress = Callable[[int, int, str], None]


def label_error_ranking_start(
    *,
    actor: User | None,
    folds: int = DEFAULT_FOLDS,
    repeats: int = DEFAULT_REPEATS,
    seed: int = DEFAULT_SEED,
    threshold: float = 0.95,
    enqueue: bool = True,
) -> EvaluationRun:
    """Record a cross-validation run and its job (sent once the transaction commits).
    Raises EvaluationError."""
    if not 2 <= folds <= MAX_FOLDS:
        raise EvaluationError(f"Folds must be between 2 and {MAX_FOLDS}.")
    if not 1 <= repeats <= MAX_REPEATS:
        raise EvaluationError(f"Repeats must be between 1 and {MAX_REPEATS}.")
    if not 0 < threshold <= 1:
        raise EvaluationError("The threshold must be above 0 and at most 1.")
    version = embedding_model_required(EvaluationError)
    with transaction.atomic():
        run = EvaluationRun.objects.create(
            model_version=version,
            scope_kind=EvaluationScopeKind.CROSS_VALIDATION,
            threshold=threshold,
            created_by=actor,
        )
        job = job_create(
            kind=LABEL_ERRORS_KIND,
            actor=actor,
            params={
                "evaluation_id": run.pk,
                "folds": folds,
                "repeats": repeats,
                "seed": seed,
            },
        )
        run.job = job
        run.save(update_fields=["job"])
        if enqueue:
            job_enqueue(job=job)
    return run


# --- Folds and out-of-sample probabilities --------------------------------------------------


def fold_assignment(
    labels: np.ndarray, *, folds: int, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """The fold (0 … folds-1) of each image: stratified by label, seeded, with the images of
    one group (``groups[i] >= 0``) in one fold.

    Groups are placed first, largest first (equal sizes in seeded order), each in the fold
    that holds the fewest images of its labels so far. The other images of each label are
    then shuffled with the seed and dealt to level the label's folds (``_level``), the
    remainder going to the folds with the fewest images overall, so fold sizes stay as even
    as the groups allow: within one image of each other when there are none."""
    labels = np.asarray(labels, dtype=np.int64)
    classes, label_index = np.unique(labels, return_inverse=True)
    fold_of = np.full(len(labels), -1, dtype=np.int64)
    counts = np.zeros((folds, len(classes)), dtype=np.int64)
    totals = np.zeros(folds, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if groups is not None:
        groups = np.asarray(groups, dtype=np.int64)
        grouped = np.flatnonzero(groups >= 0)
        units, unit_of, sizes = np.unique(groups[grouped], return_inverse=True, return_counts=True)
        members = np.split(grouped[np.argsort(unit_of, kind="stable")], np.cumsum(sizes)[:-1])
        shuffled = rng.permutation(len(units))
        for unit in shuffled[np.argsort(-sizes[shuffled], kind="stable")]:
            composition = np.bincount(label_index[members[unit]], minlength=len(classes))
            fold = int(np.lexsort((totals, counts @ composition))[0])
            fold_of[members[unit]] = fold
            counts[fold] += composition
            totals[fold] += sizes[unit]
    start = 0
    for index in range(len(classes)):
        rest = np.flatnonzero((label_index == index) & (fold_of < 0))
        rest = rest[rng.permutation(len(rest))]
        needs = _level(counts[:, index], totals, len(rest), start=start)
        fold_of[rest] = np.repeat(np.arange(folds), needs)
        counts[:, index] += needs
        totals += needs
        start = (start + len(rest)) % folds
    return fold_of


def _level(counts: np.ndarray, totals: np.ndarray, items: int, *, start: int) -> np.ndarray:
    """How many of ``items`` each fold gets so that ``counts`` rise as evenly as possible:
    the lowest folds are filled up to a common level, and the items left over (fewer than
    the folds at that level) go to those with the smallest ``totals``, ties broken in turn
    from fold ``start``."""
    folds = len(counts)
    low, high = int(counts.min()), int(counts.min()) + items
    while low < high:  # the highest level the items can fill every fold up to
        level = (low + high + 1) // 2
        if int(np.maximum(level - counts, 0).sum()) <= items:
            low = level
        else:
            high = level - 1
    needs = np.maximum(low - counts, 0)
    left = items - int(needs.sum())
    if left:
        at_level = np.flatnonzero(counts + needs == low)
        turn = (at_level - start) % folds
        needs[at_level[np.lexsort((turn, totals[at_level]))[:left]]] += 1
    return needs


def discriminant_fit(
    *,
    features: np.ndarray,
    labels: np.ndarray,
    class_count: int,
    projection: Projection,
    projected: np.ndarray | None = None,
) -> tuple[Head, Any]:
    """A linear discriminant head fitted on ``features`` (raw embeddings, n x d) with output
    indices ``labels``: shared-covariance LDA in the whitened ``projection``, its covariance
    shrunk towards the identity by the Ledoit-Wolf estimate of this training set alone (the
    regularisation is chosen from the training folds, never fixed). The projection and the
    discriminant are folded into one affine map, so the head scores raw embeddings like any
    quick-trainer head. Classes absent from ``labels`` are never predicted.

    ``projected`` is ``projection.apply(features)`` when the caller has it already: the
    ranking projects every image once rather than its training set once per fit, which cost
    as much as the fit itself."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    if len(present) < 2:
        raise HeadError("Training needs images of at least two classes.")
    model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    with threadpool_limits(limits=1):
        model.fit(projection.apply(features) if projected is None else projected, labels)
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # two classes: sigmoid(z) is softmax([0, z])
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    weight = np.zeros((class_count, features.shape[1]), dtype=np.float64)
    bias = np.full(class_count, -1e4, dtype=np.float64)
    weight[present] = coef @ projection.matrix.T
    bias[present] = intercept - weight[present] @ projection.mean
    return Head(weight=weight, bias=bias), model


@dataclass(frozen=True)
class Projection:
    """Whitened principal components of the embeddings, ``(x - mean) @ matrix``: fitted on
    every ranked image's embedding without its label, so no head learns a label from it."""

    mean: np.ndarray
    matrix: np.ndarray  # d x components, each column scaled to unit variance

    def apply(self, features: np.ndarray) -> np.ndarray:
        """``(features - mean) @ matrix`` in float64, a block of rows at a time: the centred
        float64 copy of a whole 100,000 x 1,280 library alone would take 1 GB."""
        out = np.empty((len(features), self.matrix.shape[1]), dtype=np.float64)
        for start in range(0, len(features), APPLY_CHUNK):
            block = np.asarray(features[start : start + APPLY_CHUNK], dtype=np.float64)
            out[start : start + len(block)] = (block - self.mean) @ self.matrix
        return out


def projection_fit(features: np.ndarray, *, components: int, seed: int) -> Projection:
    """At most ``components`` whitened principal components (fewer than half the images on a
    small library): the discriminant's covariance is then well estimated after shrinkage, and
    the fits cost the same whatever the embedding width."""
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    n, d = features.shape
    kept = max(1, min(components, d, n // 2 or 1, n - 1))
    pca = PCA(n_components=kept, svd_solver="randomized", random_state=seed)
    with threadpool_limits(limits=2):
        pca.fit(np.asarray(features, dtype=np.float32))
    scale = np.sqrt(np.maximum(pca.explained_variance_, 1e-12))
    return Projection(
        mean=np.asarray(pca.mean_, dtype=np.float64),
        matrix=(np.asarray(pca.components_, dtype=np.float64) / scale[:, None]).T,
    )


@dataclass(frozen=True)
class Ranking:
    """Out-of-sample probabilities averaged over ``repeats`` fold assignments, and what the
    queue is ordered by: the averaged probability of each image's given label."""

    probabilities: np.ndarray  # n x classes
    labels: np.ndarray
    fold_of: np.ndarray  # repeats x n
    components: int

    @property
    def given(self) -> np.ndarray:
        return self.probabilities[np.arange(len(self.labels)), self.labels]

    @property
    def order(self) -> np.ndarray:
        """Image positions, likeliest label error first (ties in position order)."""
        return np.lexsort((np.arange(len(self.labels)), self.given))

    def queue(self, *, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(positions, kind per position as an index of ``KIND_ORDER``) of the Double-check
        queue: the images predicted as another class and those whose top score is below
        ``threshold``; those whose label looks wrong first, then the model's mistakes, then
        the unsure, each by the given label's probability, lowest first. Since a doubted
        label is one whose probability is at most 1 - threshold, the queue leads with the
        lowest given probabilities whatever the threshold."""
        top1 = self.probabilities.max(axis=1)
        wrong = self.probabilities.argmax(axis=1) != self.labels
        kinds = double_check_kinds(wrong=wrong, given=self.given, top1=top1, threshold=threshold)
        chosen = np.flatnonzero(wrong | (top1 < threshold))
        order = chosen[np.lexsort((chosen, self.given[chosen], kinds[chosen]))]
        return order, kinds[order]


def label_error_ranking(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    folds: int = DEFAULT_FOLDS,
    repeats: int = DEFAULT_REPEATS,
    seed: int = DEFAULT_SEED,
    components: int = DEFAULT_COMPONENTS,
    class_count: int | None = None,
    fit: Fit = discriminant_fit,
    progress: Callable[[int], None] | None = None,
) -> Ranking:
    """Score every image with heads that never saw it, ``repeats`` times over stratified
    folds seeded ``seed``, ``seed + 1``, …, and average: one seed's folds decide which
    look-alike images share a training set, so a single assignment ranks by luck as much as
    by evidence. Deterministic for a given seed. ``progress`` gets the fits done so far: 0 once
    the projection is fitted, then 1 to ``folds * repeats``."""
    labels = np.asarray(labels, dtype=np.int64)
    class_count = class_count or int(labels.max()) + 1
    projection = projection_fit(features, components=components, seed=seed)
    projected = projection.apply(features)
    if progress:
        progress(0)
    total = np.zeros((len(labels), class_count), dtype=np.float64)
    assignments = []
    for repeat in range(repeats):
        fold_of = fold_assignment(labels, folds=folds, seed=seed + repeat, groups=groups)
        assignments.append(fold_of)
        total += out_of_sample_probabilities(
            features,
            labels,
            fold_of,
            class_count=class_count,
            fit=lambda **kwargs: fit(projection=projection, **kwargs),
            projected=projected,
            progress=_offset(progress, repeat * folds),
        )
    return Ranking(
        probabilities=total / repeats,
        labels=labels,
        fold_of=np.stack(assignments),
        components=projection.matrix.shape[1],
    )


def _offset(progress: Callable[[int], None] | None, before: int) -> Callable[[int], None] | None:
    """``progress`` counting on from the ``before`` fits of earlier repeats."""
    if progress is None:
        return None
    return lambda done: progress(before + done)


def out_of_sample_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    fold_of: np.ndarray,
    *,
    class_count: int,
    fit: Callable[..., tuple[Head, Any]],
    projected: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Probabilities (n x class_count) where row i comes from the head fitted on every image
    outside fold ``fold_of[i]``, i.e. never from a head that was trained on image i. With
    ``projected`` (the features already projected, row for row), each fit also gets its
    training rows of it as ``projected``."""
    probabilities = np.zeros((len(labels), class_count), dtype=np.float64)
    for done, fold in enumerate(np.unique(fold_of), start=1):
        scored = fold_of == fold
        extra = {} if projected is None else {"projected": projected[~scored]}
        head, _ = fit(
            features=features[~scored], labels=labels[~scored], class_count=class_count, **extra
        )
        probabilities[scored] = head.probabilities(features[scored])
        if progress:
            progress(done)
    return probabilities


# --- The run --------------------------------------------------------------------------------


def labelled_images() -> tuple[list[int], list[int]]:
    """Ids and class ids of the active images labelled in normal classes, in id order."""
    normal = set(LabelClass.objects.filter(kind=ClassKind.NORMAL).values_list("pk", flat=True))
    ids: list[int] = []
    classes: list[int] = []
    last = 0
    while True:
        rows = list(
            Image.objects.filter(status=ImageStatus.ACTIVE, subclass__isnull=False, pk__gt=last)
            .order_by("pk")
            .values_list("pk", "subclass__label_class_id")[:READ_CHUNK]
        )
        if not rows:
            break
        last = rows[-1][0]
        for image_id, class_id in rows:
            if class_id in normal:
                ids.append(image_id)
                classes.append(class_id)
    return ids, classes


def _duplicate_units(image_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Per image, the near-duplicate unit it shares a fold with (-1: none), and how many
    units that keeps together. A unit is a whole near-duplicate component, the same one a
    dataset build keeps in one split (``component_members``), so no head trains on an image
    near one it scores, even along a chain reviewed in several groups. A component of more
    than ``MAX_GROUP`` images falls back to its review groups of at most ``MAX_GROUP``: on
    low-information libraries such chains join hundreds of merely similar images, and one
    fold holding them all would leave the others short of that class."""
    members: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for key, group_id, image_id in component_members():
        members[key].append((group_id, image_id))
    units = UnionFind()
    for component in members.values():
        images = {image_id for _, image_id in component}
        if len(images) <= MAX_GROUP:
            parts = [images]
        else:
            by_group: dict[int, set[int]] = defaultdict(set)
            for group_id, image_id in component:
                by_group[group_id].add(image_id)
            parts = [part for part in by_group.values() if len(part) <= MAX_GROUP]
        for part in parts:
            first, *rest = part
            for image_id in rest:
                units.union(first, image_id)
    groups = np.fromiter(
        (units.find(int(i)) if int(i) in units.parent else -1 for i in image_ids),
        dtype=np.int64,
        count=len(image_ids),
    )
    values, counts = np.unique(groups[groups >= 0], return_counts=True)
    kept = values[counts > 1]
    groups[~np.isin(groups, kept)] = -1
    return groups, len(kept)


def label_errors_execute(
    *,
    run: EvaluationRun,
    folds: int = DEFAULT_FOLDS,
    repeats: int = DEFAULT_REPEATS,
    seed: int = DEFAULT_SEED,
    progress: Progress | None = None,
    fit: Fit = discriminant_fit,
) -> dict[str, Any]:
    """Rank the labelled library by the out-of-sample probability of each image's label and
    fill the run's reports and Double-check queue. Safe to run again."""
    EvaluationRun.objects.filter(pk=run.pk).update(status=EvaluationStatus.RUNNING)
    try:
        metrics = _rank(run, folds=folds, repeats=repeats, seed=seed, progress=progress, fit=fit)
    except Exception:
        EvaluationRun.objects.filter(pk=run.pk).update(status=EvaluationStatus.FAILED)
        raise
    return metrics


def _rank(
    run: EvaluationRun,
    *,
    folds: int,
    repeats: int,
    seed: int,
    progress: Progress | None,
    fit: Fit,
) -> dict[str, Any]:
    started = time.perf_counter()
    report = progress or (lambda done, total, message: None)
    fits = folds * repeats
    version: ModelVersion = run.model_version
    ids, class_ids = labelled_images()
    total = len(ids)
    missing = max(0, total - _embedded_count(version))
    steps = _ProgressSteps(missing=missing, images=total, fits=fits)
    if missing:
        made = 0
        for start in range(0, total, EMBED_CHUNK):
            chunk = ids[start : start + EMBED_CHUNK]
            made += len(embeddings_make(image_ids=chunk, version=version))
            message = f"embedding images without one: {made} of {missing}"
            report(min(made, missing), steps.whole, message)
    report(missing, steps.whole, f"reading the embeddings of {total} images")
    embedded_ids, matrix = embedding_matrix(image_ids=ids, model_version=version)
    class_of = dict(zip(ids, class_ids, strict=True))
    without_embedding = total - len(embedded_ids)

    counts = Counter(class_of[int(i)] for i in embedded_ids)
    names = dict(LabelClass.objects.filter(pk__in=list(counts)).values_list("pk", "name"))
    ranked_classes = sorted((c for c, n in counts.items() if n >= folds), key=lambda c: names[c])
    skipped = {names[c]: n for c, n in counts.items() if n < folds}
    if len(ranked_classes) < 2:
        raise EvaluationError(
            f"Ranking needs two classes with at least {folds} images with embeddings; "
            f"the library has {len(ranked_classes)}."
        )
    index_of = {class_id: index for index, class_id in enumerate(ranked_classes)}
    label_map = [names[c] for c in ranked_classes]
    keep = np.fromiter((class_of[int(i)] in index_of for i in embedded_ids), dtype=bool)
    image_ids = embedded_ids[keep]
    features = matrix[keep]
    labels = np.fromiter((index_of[class_of[int(i)]] for i in image_ids), dtype=np.int64)
    groups, kept_groups = _duplicate_units(image_ids)
    report(missing, steps.whole, f"projecting {len(labels)} embeddings on their principal axes")

    try:
        ranking = label_error_ranking(
            features,
            labels,
            groups=groups,
            folds=folds,
            repeats=repeats,
            seed=seed,
            class_count=len(label_map),
            fit=fit,
            progress=lambda done: report(steps.after_fits(done), steps.whole, steps.message(done)),
        )
    except HeadError as exc:
        raise EvaluationError(str(exc)) from None
    probabilities = ranking.probabilities
    predicted = probabilities.argmax(axis=1)
    top1 = probabilities.max(axis=1)
    given = probabilities[np.arange(len(labels)), labels]
    class_array = np.asarray(ranked_classes, dtype=np.int64)

    run.metrics = {"label_map": label_map}  # pairs_by_index reads the run's own label map
    samples = Samples(
        image_ids=image_ids,
        true_index=labels,
        true_class=class_array[labels],
        pred_index=predicted,
        top1=top1,
        p_true=given,
        group=np.zeros(len(labels), dtype=np.int64),
        groups=[SET_NAME],
    )
    set_metrics = set_report(
        true_index=labels,
        pred_index=predicted,
        top1=top1,
        p_true=given,
        label_map=label_map,
        threshold=run.threshold,
        pairs=pairs_by_index(run),
    )
    reports = {SET_NAME: set_metrics}
    skipped_images = int(sum(skipped.values()))
    excluded = {
        key: value
        for key, value in (
            ("class_below_folds", skipped_images),
            ("no_embedding", without_embedding),
        )
        if value
    }
    metrics: dict[str, Any] = {
        "scope": f"labelled library, {folds}-fold cross-validation",
        "model_version": version.number,
        "embedding_model": {"number": version.number, "name": version.name},
        "threshold": run.threshold,
        "label_map": label_map,
        "folds": folds,
        "repeats": repeats,
        "seed": seed,
        "method": METHOD,
        "components": ranking.components,
        "images_ranked": len(labels),
        "images_scored": len(labels),
        "images_without_class": 0,
        "classes_ranked": len(label_map),
        "classes_skipped": len(skipped),
        "images_skipped": skipped_images,
        "images_without_embedding": without_embedding,
        "excluded": excluded,
        "excluded_classes": dict(Counter(skipped).most_common(50)),
        "fold_sizes": np.bincount(ranking.fold_of[0], minlength=folds).tolist(),
        "duplicate_groups_kept_together": kept_groups,
        "sets": reports,
        "suggested_pairs": suggested_pairs(reports),
        "tags": tag_report(samples, np.ones(len(labels), dtype=bool)),
    }
    with transaction.atomic():
        metrics["double_check_items"] = _queue_fill(run, samples, label_map, ranking)
        metrics["seconds"] = round(time.perf_counter() - started, 3)
        run.metrics = metrics
        run.status = EvaluationStatus.DONE
        run.finished_at = timezone.now()
        if not run.confused_pairs:
            run.confused_pairs = [
                {key: pair[key] for key in ("a", "b", "weight")}
                for pair in metrics["suggested_pairs"][:5]
            ]
        run.save(update_fields=["metrics", "status", "finished_at", "confused_pairs"])
    report(steps.whole, steps.whole, "done")
    return metrics


def _embedded_count(version: ModelVersion) -> int:
    """How many of the images ``labelled_images`` lists have an embedding already (one
    count, so a library with every embedding stored skips the embedding pass)."""
    return ImageEmbedding.objects.filter(
        model_version=version,
        image__status=ImageStatus.ACTIVE,
        image__subclass__label_class__kind=ClassKind.NORMAL,
    ).count()


@dataclass(frozen=True)
class _ProgressSteps:
    """The job's progress in units of work, so the bar moves with the time it takes. Embedding
    an image costs about ten times what ranking one does (about 9 ms against 0.6-0.8 ms on two
    cores at 100,000 images, ``bench/label_error_scale.py``), so the ranking counts one unit
    per ten images: 35% of it the projection, 60% the heads, 5% the reports and the queue."""

    missing: int
    images: int
    fits: int

    @property
    def ranking(self) -> int:
        return max(20 * self.fits, self.images // 10)

    @property
    def whole(self) -> int:
        return self.missing + self.ranking

    def after_fits(self, done: int) -> int:
        projection = self.ranking * 35 // 100
        heads = self.ranking * 60 // 100
        return self.missing + projection + heads * done // self.fits

    def message(self, done: int) -> str:
        if done == 0:
            return f"projection fitted; fitting {self.fits} heads"
        if done == self.fits:
            return f"head {done} of {self.fits} fitted and scored; writing the reports and queue"
        return f"head {done} of {self.fits} fitted and scored"


def _queue_fill(
    run: EvaluationRun, samples: Samples, label_map: list[str], ranking: Ranking
) -> int:
    """The images the heads got wrong and the right ones below the threshold, in
    ``Ranking.queue`` order: the labels that look wrong first."""
    order, kinds = ranking.queue(threshold=run.threshold)
    wrong = samples.true_index != samples.pred_index
    class_of_index = {
        index: int(class_id)
        for index, class_id in zip(samples.true_index, samples.true_class, strict=True)
    }
    DoubleCheckItem.objects.filter(run=run).delete()
    rows = [
        (
            run.pk,
            int(samples.image_ids[at]),
            int(samples.true_class[at]),
            class_of_index.get(int(samples.pred_index[at])),
            label_map[int(samples.pred_index[at])][:500],
            float(samples.top1[at]),
            float(samples.p_true[at]),
            rank,
            "misclassified" if wrong[at] else "low_confidence",
            KIND_ORDER[kind].value,
            DoubleCheckStatus.OPEN.value,
        )
        for rank, (at, kind) in enumerate(zip(order, kinds, strict=True), start=1)
    ]
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 5000):
            cursor.executemany(QUEUE_INSERT, rows[start : start + 5000])
    return len(rows)


def label_errors_job_work(job: Job, progress: Progress) -> dict[str, Any]:
    run = EvaluationRun.objects.select_related("model_version").get(pk=job.params["evaluation_id"])
    metrics = label_errors_execute(
        run=run,
        folds=int(job.params.get("folds", DEFAULT_FOLDS)),
        repeats=int(job.params.get("repeats", DEFAULT_REPEATS)),
        seed=int(job.params.get("seed", DEFAULT_SEED)),
        progress=progress,
    )
    return {
        "evaluation_id": run.pk,
        "images_ranked": metrics["images_ranked"],
        "double_check_items": metrics["double_check_items"],
        "message": f"Ranked {metrics['images_ranked']} images by {metrics['folds']}-fold "
        f"cross-validation, {metrics['repeats']} times: "
        f"{metrics['double_check_items']} to double-check",
    }


# --- Double-check support -------------------------------------------------------------------


def confident_images(
    *, run: EvaluationRun, label_class_id: int | None, exclude: set[int], limit: int
) -> list[Image]:
    """Images of a class that the run ranked and did not queue, i.e. whose out-of-sample head
    agreed with their label at or above the threshold: exemplars for Double-check."""
    if label_class_id is None or limit <= 0:
        return []
    embedded = ImageEmbedding.objects.filter(model_version=run.model_version, image=OuterRef("pk"))
    return list(
        Image.objects.filter(status=ImageStatus.ACTIVE, subclass__label_class_id=label_class_id)
        .filter(Exists(embedded))
        .exclude(pk__in=DoubleCheckItem.objects.filter(run=run).values("image_id"))
        .exclude(pk__in=exclude)
        .select_related("subclass")
        .order_by("pk")[:limit]
    )
