"""Thin Celery adapters for the inference app."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils import timezone

from curation.models import Job
from curation.services.jobs import JOB_TASK_LIMITS, job_progress, job_run
from inference.bulk import IDENTIFY_KIND, Scope, identification_run
from inference.embeddings import EMBEDDINGS_KIND, embeddings_compute
from inference.models import ModelVersion
from inference.services import RECOMPUTE_KIND, recompute_job_work


@shared_task(name=RECOMPUTE_KIND, acks_late=True, **JOB_TASK_LIMITS)
def recompute_predictions(job_id: int) -> None:
    def work(job: Job) -> dict[str, Any]:
        def progress(done: int, total: int) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=f"{done} of {total} images")

        return recompute_job_work(job, progress)

    job_run(job_id=job_id, work=work)


@shared_task(name=IDENTIFY_KIND, acks_late=True, **JOB_TASK_LIMITS)
def identify_images(job_id: int) -> None:
    def work(job: Job) -> dict[str, Any]:
        version = ModelVersion.objects.get(pk=job.params["model_version_id"])
        scope = Scope.from_params(job.params.get("scope", {}))

        def progress(done: int, total: int) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=f"{done} of {total} images")

        result = identification_run(version=version, scope=scope, progress=progress)
        return {
            **result,
            "model_version": version.number,
            "message": f"{result['written']} new predictions from v{version.number} "
            f"over {scope.describe()}",
        }

    job_run(job_id=job_id, work=work)


@shared_task(name="inference.evaluate", acks_late=True, **JOB_TASK_LIMITS)
def evaluate(job_id: int) -> None:
    from inference.evaluation import evaluation_job_work

    def work(job: Job) -> dict[str, Any]:
        def progress(done: int, total: int) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=f"{done} of {total} images")

        return evaluation_job_work(job, progress)

    job_run(job_id=job_id, work=work)


@shared_task(name=EMBEDDINGS_KIND, acks_late=True, **JOB_TASK_LIMITS)
def compute_embeddings(job_id: int) -> None:
    def work(job: Job) -> dict[str, Any]:
        version = ModelVersion.objects.get(pk=job.params["model_version_id"])

        def progress(done: int, total: int) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=f"{done} of {total} images")

        def stage(message: str) -> None:
            # The images are done; what follows has no count, only a name (and proves life).
            Job.objects.filter(pk=job.pk).update(message=message, heartbeat_at=timezone.now())

        return embeddings_compute(version=version, progress=progress, stage=stage)

    job_run(job_id=job_id, work=work)


@shared_task(name="inference.train_model", acks_late=True, **JOB_TASK_LIMITS)
def train_model(job_id: int) -> None:
    from inference.trainer import training_job_work

    def work(job: Job) -> dict[str, Any]:
        def progress(done: int, total: int, message: str) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=message)

        return training_job_work(job, progress)

    job_run(job_id=job_id, work=work)


@shared_task(name="inference.rank_label_errors", acks_late=True, **JOB_TASK_LIMITS)
def rank_label_errors(job_id: int) -> None:
    from inference.label_errors import label_errors_job_work

    def work(job: Job) -> dict[str, Any]:
        def progress(done: int, total: int, message: str) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=message)

        return label_errors_job_work(job, progress)

    job_run(job_id=job_id, work=work)


@shared_task(name="inference.validate_model", acks_late=True, **JOB_TASK_LIMITS)
def validate_model(job_id: int) -> None:
    """An uploaded model: the checker and a dry run in a bounded child process, then its
    registration (``inference.uploads``)."""
    from inference.uploads import model_upload_validate

    def work(job: Job) -> dict[str, Any]:
        def progress(done: int, total: int, message: str) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=message)

        return model_upload_validate(job=job, progress=progress)

    job_run(job_id=job_id, work=work)
