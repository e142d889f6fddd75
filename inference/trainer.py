"""The quick trainer: a logistic-regression head on the embedding model's features of a dataset
version's train split, checked on its val split, exported with the embedding model as one ONNX
model, registered as a model version and evaluated on the test split.

The job embeds whatever images of the dataset have no embedding yet (usually the embedding job
or the worker did that already), fits the head (``inference.head``), writes the notes and
the result, registers the composed model (output ``probabilities``, and ``embedding`` so the
new version is an embedding model too) and queues its evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from django.core.files.storage import default_storage
from django.db import transaction
from sklearn.metrics import log_loss

from accounts.models import User
from curation.models import (
    DatasetAssignment,
    DatasetStatus,
    DatasetVersion,
    Job,
    JobStatus,
    LabelClass,
    Split,
)
from curation.services.jobs import job_create, job_enqueue
from inference.embeddings import (
    EmbeddingError,
    embedding_matrix,
    embedding_version,
    embeddings_make,
)
from inference.evaluation import EvaluationScope, evaluation_create
from inference.head import HeadError, compose, head_fit, top_k_accuracy
from inference.models import EvaluationRun, EvaluationScopeKind, ModelVersion, OutputKind
from inference.preprocessing import PreprocessSpec
from inference.services import model_version_register
from inference.validation import ModelRejected

TRAIN_KIND = "inference.train_model"
DEFAULT_C = 1.0
DEFAULT_MAX_ITER = 300
MAX_ITER_LIMIT = 10_000
EMBED_CHUNK = 256
TOP_K = 3
Progress = Callable[[int, int, str], None]


class TrainingError(Exception):
    """The training cannot be started or finished as asked; the message says why."""


@dataclass(frozen=True)
class TrainingParams:
    dataset_id: int
    C: float = DEFAULT_C
    max_iter: int = DEFAULT_MAX_ITER
    activate: bool = False

    def check(self) -> None:
        if not (self.C > 0 and np.isfinite(self.C)):
            raise TrainingError("The regularisation C must be a number above 0.")
        if not 1 <= self.max_iter <= MAX_ITER_LIMIT:
            raise TrainingError(f"Max iterations must be between 1 and {MAX_ITER_LIMIT:,}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingParams:
        return cls(
            dataset_id=int(data["dataset_id"]),
            C=float(data.get("C", DEFAULT_C)),
            max_iter=int(data.get("max_iter", DEFAULT_MAX_ITER)),
            activate=bool(data.get("activate", False)),
        )


def _ready_dataset(dataset: DatasetVersion) -> None:
    if dataset.status != DatasetStatus.READY:
        raise TrainingError(f"Dataset version {dataset.name!r} is not built ({dataset.status}).")


def embedding_model_required(error: type[Exception] = TrainingError) -> ModelVersion:
    """The embedding model; raises ``error`` naming the problem when there is none."""
    try:
        version = embedding_version()
    except EmbeddingError as exc:
        raise error(str(exc)) from None
    if version is None:
        raise error("No model version has an embedding output; run `manage.py install_backbone`.")
    return version


def training_start(
    *,
    dataset: DatasetVersion,
    actor: User | None,
    C: float = DEFAULT_C,
    max_iter: int = DEFAULT_MAX_ITER,
    activate: bool = False,
    enqueue: bool = True,
) -> Job:
    """Record a training job (sent once the transaction commits). Raises TrainingError."""
    params = TrainingParams(dataset_id=dataset.pk, C=C, max_iter=max_iter, activate=activate)
    params.check()
    _ready_dataset(dataset)
    embedding_model_required()
    with transaction.atomic():
        job = job_create(
            kind=TRAIN_KIND, actor=actor, params={**asdict(params), "dataset": dataset.name}
        )
        if enqueue:
            job_enqueue(job=job)
    return job


# --- The dataset's features -----------------------------------------------------------------


@dataclass
class SplitFeatures:
    image_ids: np.ndarray
    features: np.ndarray
    labels: np.ndarray


def dataset_classes(dataset: DatasetVersion) -> list[tuple[int, str]]:
    """(class id, current class name) of the dataset's classes, in label-map order."""
    summary = dataset.summary or {}
    order = summary.get("label_map", {})
    ids = {
        row["name"]: row["class_id"]
        for row in summary.get("classes", [])
        if row.get("status") == "included"
    }
    names = dict(LabelClass.objects.filter(pk__in=list(ids.values())).values_list("pk", "name"))
    return [
        (ids[name], names.get(ids[name], name))
        for name, _ in sorted(order.items(), key=lambda item: item[1])
        if name in ids
    ]


def dataset_features(
    *,
    dataset: DatasetVersion,
    version: ModelVersion,
    class_index: dict[int, int],
    progress: Progress | None = None,
) -> tuple[dict[str, SplitFeatures], dict[str, int], int]:
    """The embeddings of the dataset's train and val images with their output indices (the
    images without one are embedded first; the test split is scored by the trained model
    itself, in its evaluation). Returns those splits, the image count of every split, and how
    many train and val images have no embedding (unreadable or trashed since the build)."""
    rows = list(
        DatasetAssignment.objects.filter(version=dataset)
        .order_by("image_id")
        .values_list("image_id", "split", "label_class_id")
    )
    counts = {split: 0 for split in Split.values}
    for _, split, _ in rows:
        counts[split] += 1
    fitted = [row for row in rows if row[1] in (Split.TRAIN, Split.VAL)]
    ids_wanted = [image_id for image_id, _, _ in fitted]
    total = len(ids_wanted)
    for start in range(0, total, EMBED_CHUNK):
        embeddings_make(image_ids=ids_wanted[start : start + EMBED_CHUNK], version=version)
        if progress:
            progress(min(start + EMBED_CHUNK, total), total, "embedding the dataset's images")
    ids, matrix = embedding_matrix(image_ids=ids_wanted, model_version=version)
    position = {int(image_id): at for at, image_id in enumerate(ids)}
    splits: dict[str, SplitFeatures] = {}
    for split in (Split.TRAIN, Split.VAL):
        chosen = [
            (position[image_id], image_id, class_index[class_id])
            for image_id, row_split, class_id in fitted
            if row_split == split and image_id in position and class_id in class_index
        ]
        at = np.asarray([c[0] for c in chosen], dtype=np.int64)
        splits[split] = SplitFeatures(
            image_ids=np.asarray([c[1] for c in chosen], dtype=np.int64),
            features=matrix[at]
            if len(at)
            else np.zeros((0, matrix.shape[1] if matrix.size else 0), np.float32),
            labels=np.asarray([c[2] for c in chosen], dtype=np.int64),
        )
    return splits, counts, total - len(position)


def validation_metrics(
    probabilities: np.ndarray, labels: np.ndarray, class_count: int
) -> dict[str, Any]:
    if not len(labels):
        return {"images": 0, "accuracy": None, "log_loss": None, "top3_accuracy": None}
    return {
        "images": len(labels),
        "accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
        "log_loss": float(log_loss(labels, probabilities, labels=list(range(class_count)))),
        "top3_accuracy": top_k_accuracy(probabilities, labels, TOP_K),
    }


# --- The run --------------------------------------------------------------------------------


def _notes(
    *,
    dataset: DatasetVersion,
    version: ModelVersion,
    params: TrainingParams,
    counts: dict[str, int],
    validation: dict[str, Any],
    iterations: int,
) -> str:
    lines = [
        f"Quick trainer: multinomial logistic regression (C={params.C:g}, "
        f"max {params.max_iter} iterations, {iterations} used) on the {version.embedding_output!r} "
        f"output of v{version.number} {version.name}, L2-normalised and standardised.",
        f"Dataset version {dataset.name}: {counts['train']} train, {counts['val']} val, "
        f"{counts['test']} test images.",
    ]
    if validation["images"]:
        lines.append(
            f"Validation ({validation['images']} images): accuracy {validation['accuracy']:.4f}, "
            f"log loss {validation['log_loss']:.4f}, top-3 accuracy "
            f"{validation['top3_accuracy']:.4f}."
        )
    else:
        lines.append("No validation split: no validation figures.")
    return "\n".join(lines)


def training_run(
    *,
    params: TrainingParams,
    actor: User | None,
    progress: Progress | None = None,
    enqueue_evaluation: bool = True,
) -> dict[str, Any]:
    """Fit, export, register and queue the evaluation; returns the job result."""
    started = time.perf_counter()
    report = progress or (lambda done, total, message: None)
    params.check()
    dataset = DatasetVersion.objects.filter(pk=params.dataset_id).first()
    if dataset is None:
        raise TrainingError(f"Dataset version {params.dataset_id} no longer exists.")
    _ready_dataset(dataset)
    version = embedding_model_required()
    classes = dataset_classes(dataset)
    if len(classes) < 2:
        raise TrainingError(f"Dataset version {dataset.name!r} has fewer than two classes.")
    class_index = {class_id: index for index, (class_id, _) in enumerate(classes)}
    names = [name for _, name in classes]

    splits, counts, without_embedding = dataset_features(
        dataset=dataset, version=version, class_index=class_index, progress=report
    )
    embedded_at = time.perf_counter()
    train, val = splits[Split.TRAIN], splits[Split.VAL]
    missing = sorted(set(range(len(classes))) - set(train.labels.tolist()))
    if missing:
        raise TrainingError(
            "No training images with embeddings for "
            + ", ".join(names[i] for i in missing[:5])
            + (" …" if len(missing) > 5 else "")
            + "."
        )
    report(0, 1, f"fitting the head on {len(train.labels)} images")
    try:
        head, _ = head_fit(
            features=train.features,
            labels=train.labels,
            class_count=len(classes),
            C=params.C,
            max_iter=params.max_iter,
        )
    except HeadError as exc:
        raise TrainingError(str(exc)) from None
    fitted_at = time.perf_counter()
    validation = validation_metrics(
        head.probabilities(val.features) if len(val.labels) else np.zeros((0, len(classes))),
        val.labels,
        len(classes),
    )

    report(1, 1, "exporting and registering the model")
    with default_storage.open(version.onnx_file, "rb") as stream:
        base = stream.read()
    try:
        composed = compose(
            embedding_model=base,
            embedding_output=version.embedding_output,
            head=head,
            doc=f"v{version.number} {version.name} with a logistic-regression head for "
            f"dataset version {dataset.name}",
        )
        registration = model_version_register(
            onnx_data=composed,
            labels=names,
            name=f"Quick head on {dataset.name}",
            actor=actor,
            spec=PreprocessSpec.of(version),
            output_kind=OutputKind.PROBABILITIES,
            embedding_output=version.embedding_output,
            notes=_notes(
                dataset=dataset,
                version=version,
                params=params,
                counts=counts,
                validation=validation,
                iterations=head.iterations,
            ),
            activate=params.activate,
        )
    except (HeadError, ModelRejected) as exc:
        raise TrainingError(f"The composed model was refused: {exc}") from None
    trained = registration.version
    registered_at = time.perf_counter()

    split = Split.TEST if counts[Split.TEST] else Split.VAL
    run = evaluation_create(
        version=trained,
        scope=EvaluationScope(kind=EvaluationScopeKind.DATASET, dataset=dataset, split=split),
        actor=actor,
        enqueue=enqueue_evaluation,
    )
    accuracy = validation["accuracy"]
    return {
        "model_version": trained.number,
        "model_name": trained.name,
        "evaluation_id": run.pk,
        "evaluation_split": split,
        "dataset": dataset.name,
        "embedding_model": version.number,
        "classes": len(classes),
        "C": params.C,
        "max_iter": params.max_iter,
        "iterations": head.iterations,
        "converged": head.converged,
        "images": counts,
        "images_without_embedding": without_embedding,
        "validation": validation,
        "activated": trained.is_active,
        "seconds": {
            "embedding": round(embedded_at - started, 3),
            "head": round(fitted_at - embedded_at, 3),
            "export_and_register": round(registered_at - fitted_at, 3),
            "total": round(time.perf_counter() - started, 3),
        },
        "message": f"v{trained.number} trained on {len(train.labels)} images of {dataset.name}"
        + (f", val accuracy {accuracy:.3f}" if accuracy is not None else "")
        + f"; evaluation {run.pk} on the {split} split",
    }


def training_job_work(job: Job, progress: Progress, *, enqueue_evaluation: bool = True):
    return training_run(
        params=TrainingParams.from_dict(job.params),
        actor=job.created_by,
        progress=progress,
        enqueue_evaluation=enqueue_evaluation,
    )


# --- Reads ----------------------------------------------------------------------------------


def trainings_recent(*, limit: int = 50) -> list[Job]:
    return list(
        Job.objects.filter(kind=TRAIN_KIND).select_related("created_by").order_by("-id")[:limit]
    )


def training_links(jobs: list[Job]) -> dict[int, tuple[ModelVersion | None, EvaluationRun | None]]:
    """The model version and evaluation run each finished training produced (two queries)."""
    numbers = {
        job.pk: job.result.get("model_version")
        for job in jobs
        if job.status == JobStatus.SUCCEEDED and job.result
    }
    evaluations = {job.pk: job.result.get("evaluation_id") for job in jobs if job.result}
    versions = ModelVersion.objects.in_bulk([n for n in numbers.values() if n], field_name="number")
    runs = EvaluationRun.objects.defer("metrics").in_bulk([e for e in evaluations.values() if e])
    return {
        job.pk: (versions.get(numbers.get(job.pk)), runs.get(evaluations.get(job.pk)))
        for job in jobs
    }
