"""The model half of ``manage.py demo`` (a stage of ``curation.demo``, registered from
``InferenceConfig.ready``): after the demo library is imported, the demo ends with a model that
knows its classes, through the same services and jobs the pages use.

1. the pretrained backbone (``install_backbone``), registered but not activated: its ImageNet
   names mean nothing in this library;
2. the whole library's embeddings, OOD scores and similarity index (the embeddings job;
   skipped with ``--no-embeddings``, then the worker computes them);
3. the dataset version "demo" (the dataset build job): 70/15/15, the default cutoffs;
4. the quick trainer's head on it (the training job), evaluated on the test split (the
   evaluation job);
5. that version activated and its suggestions computed for every active image, the inbox
   included (the recompute job activation starts).

Each job is created and run here, not sent to a worker, so the demo ends with everything done
and a worker running beside it cannot take a job half way. Running the demo again finds the
backbone, the dataset and the trained version and makes nothing new.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from curation.demo import DemoError, DemoOptions
from curation.models import (
    DatasetAssignment,
    DatasetStatus,
    DatasetVersion,
    ImageStatus,
    Job,
    JobStatus,
    Split,
)
from curation.services.dataset_jobs import dataset_build_job_start
from curation.services.datasets import DatasetError, DatasetParams
from curation.services.jobs import job_create, job_progress, job_run
from inference import backbone
from inference.embeddings import (
    EMBEDDINGS_KIND,
    EmbeddingError,
    embedding_version,
    embeddings_compute,
    embeddings_missing,
)
from inference.evaluation import evaluation_job_work
from inference.models import EvaluationRun, ModelVersion, Prediction
from inference.services import (
    active_version,
    backbone_install,
    model_version_activate,
    recompute_job_work,
)
from inference.trainer import TRAIN_KIND, TrainingError, training_job_work, training_start
from inference.validation import ModelRejected

DEMO_DATASET = "demo"
DEMO_RATIOS = (70, 15, 15)
# The small demo (--small) has about 15 images per class.
SMALL_MIN_PER_CLASS = 5
TOP_K = 3


def _bar(options: DemoOptions, stage: str) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        if options.progress is not None:
            options.progress(stage, done, total)

    return progress


def _job_progress(options: DemoOptions, stage: str, job_id: int) -> Callable[..., None]:
    """Progress for the command's bar and for the job row (the jobs page follows it too)."""
    bar = _bar(options, stage)

    def progress(done: int, total: int, message: str = "") -> None:
        bar(done, total)
        job_progress(job_id=job_id, done=done, total=total, message=message)

    return progress


def _finished(job_id: int) -> Job:
    job = Job.objects.get(pk=job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise DemoError(f"Job {job_id} ({job.kind}) did not finish: {job.message}")
    return job


def _embeddings(options: DemoOptions, version: ModelVersion) -> dict[str, Any]:
    job = job_create(
        kind=EMBEDDINGS_KIND, actor=options.actor, params={"model_version_id": version.pk}
    )
    progress = _job_progress(options, "embeddings", job.pk)
    job_run(
        job_id=job.pk,
        work=lambda j: embeddings_compute(version=version, progress=progress),
    )
    return _finished(job.pk).result


def _dataset(options: DemoOptions) -> DatasetVersion:
    """The dataset version "demo", built now if it does not exist."""
    from curation.tasks import build_dataset

    existing = DatasetVersion.objects.filter(name=DEMO_DATASET).first()
    if existing is not None:
        if existing.status != DatasetStatus.READY:
            raise DemoError(
                f"The dataset version {DEMO_DATASET!r} exists but is {existing.status}; "
                "delete it or build it again on the Datasets page."
            )
        return existing
    params = DatasetParams(ratios=DEMO_RATIOS)
    if options.small:
        params = DatasetParams(ratios=DEMO_RATIOS, min_per_class=SMALL_MIN_PER_CLASS)
    try:
        version, job = dataset_build_job_start(
            name=DEMO_DATASET, params=params, actor=options.actor, enqueue=False
        )
    except DatasetError as exc:
        raise DemoError(str(exc)) from None
    build_dataset(job.pk)  # the build job's own task, run here
    _finished(job.pk)
    version.refresh_from_db()
    return version


def _trained(dataset: DatasetVersion) -> ModelVersion | None:
    """The version an earlier run trained on ``dataset``, if it still exists."""
    for job in Job.objects.filter(
        kind=TRAIN_KIND, status=JobStatus.SUCCEEDED, params__dataset_id=dataset.pk
    ).order_by("-id")[:5]:
        version = ModelVersion.objects.filter(number=job.result.get("model_version")).first()
        if version is not None:
            return version
    return None


def _train(options: DemoOptions, dataset: DatasetVersion) -> tuple[ModelVersion, dict[str, Any]]:
    try:
        job = training_start(dataset=dataset, actor=options.actor, enqueue=False)
    except TrainingError as exc:
        raise DemoError(str(exc)) from None
    progress = _job_progress(options, "training", job.pk)
    job_run(
        job_id=job.pk,
        work=lambda j: training_job_work(j, progress, enqueue_evaluation=False),
    )
    result = _finished(job.pk).result
    run = EvaluationRun.objects.get(pk=result["evaluation_id"])
    assert run.job_id is not None
    evaluation_progress = _job_progress(options, "evaluation", run.job_id)
    job_run(job_id=run.job_id, work=lambda j: evaluation_job_work(j, evaluation_progress))
    _finished(run.job_id)
    return ModelVersion.objects.get(number=result["model_version"]), result


def split_accuracy(*, dataset: DatasetVersion, version: ModelVersion) -> dict[str, Any]:
    """Top-1 and top-3 accuracy of ``version``'s stored predictions on the dataset's test
    split (the images its evaluation scored)."""
    truth = dict(
        DatasetAssignment.objects.filter(version=dataset, split=Split.TEST).values_list(
            "image_id", "label_class__name"
        )
    )
    predicted = dict(
        Prediction.objects.filter(model_version=version, image_id__in=list(truth)).values_list(
            "image_id", "class_names"
        )
    )
    scored = [(truth[image], names) for image, names in predicted.items()]
    if not scored:
        return {"images": 0, "top1": None, "top3": None}
    return {
        "images": len(scored),
        "top1": sum(names[0] == name for name, names in scored) / len(scored),
        "top3": sum(name in names[:TOP_K] for name, names in scored) / len(scored),
    }


def _suggestions(options: DemoOptions, version: ModelVersion, *, created: bool) -> dict[str, Any]:
    """Activate ``version`` (when the demo just trained it, or nothing is active: a model the
    user activated since is left alone) and compute its suggestions."""
    current = active_version()
    if current is not None and current.pk != version.pk and not created:
        return {"activated": False, "active": current.number}
    job = model_version_activate(version=version, actor=options.actor, enqueue=False)
    result: dict[str, Any] = {"activated": job is not None, "active": version.number}
    if job is not None:
        progress = _bar(options, "suggestions")

        def work(j: Job) -> dict[str, object]:
            def both(done: int, total: int) -> None:
                progress(done, total)
                job_progress(job_id=j.pk, done=done, total=total, message=f"{done} of {total}")

            return recompute_job_work(j, both)

        job_run(job_id=job.pk, work=work)
        result.update(_finished(job.pk).result)
    result["inbox_suggested"] = Prediction.objects.filter(
        model_version=version, image__subclass__isnull=True, image__status=ImageStatus.ACTIVE
    ).count()
    return result


def demo_model(options: DemoOptions) -> dict[str, object]:
    """The stage: see the module's docstring. Returns its summary and the lines to print."""
    seconds: dict[str, float] = {}
    lines: list[str] = []
    if not options.model:
        return _embeddings_only(options)

    started = time.monotonic()
    try:
        installed = backbone_install(actor=options.actor, activate=False)
    except (backbone.BackboneUnavailable, ModelRejected) as exc:
        raise DemoError(f"No demo model: {exc}") from None
    base = installed.version
    seconds["backbone"] = round(time.monotonic() - started, 2)
    summary: dict[str, Any] = {
        "backbone": {"number": base.number, "installed": installed.registration is not None}
    }

    if options.embeddings and embeddings_missing(version=base).exists():
        t0 = time.monotonic()
        summary["embeddings"] = _embeddings(options, base)
        seconds["embeddings"] = round(time.monotonic() - t0, 2)

    t0 = time.monotonic()
    dataset = _dataset(options)
    seconds["dataset"] = round(time.monotonic() - t0, 2)
    totals = (dataset.summary or {}).get("totals", {})
    summary["dataset"] = {"name": dataset.name, "id": dataset.pk, "totals": totals}

    t0 = time.monotonic()
    trained = _trained(dataset)
    created = trained is None
    if trained is None:
        trained, training = _train(options, dataset)
        summary["training"] = {
            key: training.get(key)
            for key in ("model_version", "evaluation_id", "images", "validation", "seconds")
        }
    seconds["training"] = round(time.monotonic() - t0, 2)

    t0 = time.monotonic()
    summary["suggestions"] = _suggestions(options, trained, created=created)
    seconds["suggestions"] = round(time.monotonic() - t0, 2)
    summary["test"] = split_accuracy(dataset=dataset, version=trained)
    summary["model"] = {"number": trained.number, "name": trained.name, "created": created}
    seconds["total"] = round(time.monotonic() - started, 2)
    summary["seconds"] = seconds

    state = "installed" if installed.registration else "already installed"
    embedded = f"; {summary['embeddings']['message']}" if "embeddings" in summary else ""
    lines.append(f"Model: backbone v{base.number} ({state}){embedded}")
    classes = (dataset.summary or {}).get("included_classes", 0)
    lines.append(
        f"  dataset {dataset.name!r}: train {totals.get('train', 0)}, val "
        f"{totals.get('val', 0)}, test {totals.get('test', 0)} images in {classes} classes"
    )
    test = summary["test"]
    figures = (
        f"test top-1 {test['top1']:.3f}, top-3 {test['top3']:.3f} on {test['images']} images"
        if test["images"]
        else "no test images"
    )
    lines.append(
        f"  v{trained.number} {trained.name!r}"
        + (" trained now" if created else " trained before")
        + f": {figures}"
    )
    suggestions = summary["suggestions"]
    if suggestions["activated"] or suggestions["active"] == trained.number:
        lines.append(
            f"  v{trained.number} is active: it suggests labels for all "
            f"{suggestions['inbox_suggested']} inbox images ({seconds['total']:.0f} s in all)"
        )
    else:
        lines.append(
            f"  v{suggestions['active']} stays active (activated since); activate "
            f"v{trained.number} on the Models page to use the demo's model"
        )
    summary["lines"] = lines
    return summary


def _embeddings_only(options: DemoOptions) -> dict[str, object]:
    """--no-model: embeddings when an embedding model is installed, as the demo always did."""
    try:
        version = embedding_version()
    except EmbeddingError as exc:
        raise DemoError(str(exc)) from None
    if version is None or not options.embeddings:
        return {
            "lines": [
                "No model: `manage.py install_backbone` installs the backbone, the quick "
                "trainer (Models → Quick trainer) trains one on a dataset."
                if version is None
                else "Embeddings are left to the worker."
            ]
        }
    result = _embeddings(options, version)
    return {"embeddings": result, "lines": [str(result["message"])]}
