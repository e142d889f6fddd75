from __future__ import annotations

import traceback
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import User
from curation.models import Job, JobStatus

# Celery limits of a task that runs a job: the task-wide default (LOUPE_TASK_SOFT_TIME_LIMIT)
# is for the short per-chunk tasks, and would stop a job over a large library part way.
JOB_TASK_LIMITS = {
    "soft_time_limit": settings.LOUPE_JOB_SOFT_TIME_LIMIT,
    "time_limit": settings.LOUPE_JOB_SOFT_TIME_LIMIT + 60,
}

MAX_JOB_ATTEMPTS = 3


def job_create(
    *, kind: str, actor: User | None, params: dict[str, Any] | None = None, total: int = 0
) -> Job:
    return Job.objects.create(kind=kind, created_by=actor, params=params or {}, total=total)


def _stale_before() -> Any:
    return timezone.now() - timedelta(seconds=settings.LOUPE_JOB_STALE_SECONDS)


def job_claim(*, job_id: int) -> bool:
    """Mark the job running. Returns whether this caller may run it.

    A queued job is claimed once. A running job is claimed again only when its heartbeat has
    gone stale, which means its worker died (the task was redelivered); a running job with a
    live heartbeat, and a finished one, never are, so a duplicate delivery does nothing.
    """
    now = timezone.now()
    claimable = Q(status=JobStatus.QUEUED) | Q(
        status=JobStatus.RUNNING, heartbeat_at__lt=_stale_before()
    )
    claimed = (
        Job.objects.filter(pk=job_id, attempts__lt=MAX_JOB_ATTEMPTS)
        .filter(claimable)
        .update(
            status=JobStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            error="",
        )
    )
    return claimed == 1


def job_progress(*, job_id: int, done: int, total: int | None = None, message: str = "") -> None:
    """Record progress; it also proves the job's worker is alive."""
    fields: dict[str, Any] = {"done": done, "heartbeat_at": timezone.now()}
    if total is not None:
        fields["total"] = total
    if message:
        fields["message"] = message[:500]
    Job.objects.filter(pk=job_id).update(**fields)


def job_succeed(*, job_id: int, result: dict[str, Any], message: str = "") -> None:
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.SUCCEEDED,
        result=result,
        message=message[:500],
        finished_at=timezone.now(),
    )


def job_fail(*, job_id: int, error: BaseException | str) -> None:
    """Record the failure: the message is the error's ``job_message`` where it has one (an
    error written for the user, such as a refused model), else its type and text; ``error``
    keeps the traceback."""
    if isinstance(error, BaseException):
        summary = getattr(error, "job_message", "") or f"{type(error).__name__}: {error}"
        detail = "".join(traceback.format_exception(error))
    else:
        summary = detail = error
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.FAILED,
        message=summary[:500],
        error=detail,
        finished_at=timezone.now(),
    )


class JobCancelled(Exception):
    pass


def job_run(*, job_id: int, work: Any, retry_on: tuple[type[BaseException], ...] = ()) -> None:
    """Run ``work(job)`` as the job: claim it, record success or failure.

    ``work`` returns the result dict. A job already finished, or claimed too often, is skipped,
    so a redelivered task does nothing twice. ``retry_on`` names the errors the calling task
    retries: those put the job back in the queue (until its last attempt) instead of failing
    it, so the retry can claim it again.
    """
    if not job_claim(job_id=job_id):
        return
    job = Job.objects.get(pk=job_id)
    try:
        result = work(job)
    except Exception as exc:
        if isinstance(exc, retry_on) and job.attempts < MAX_JOB_ATTEMPTS:
            Job.objects.filter(pk=job_id).update(
                status=JobStatus.QUEUED,
                message=f"will retry after {type(exc).__name__}: {exc}"[:500],
            )
        else:
            job_fail(job_id=job_id, error=exc)
        raise
    job_succeed(job_id=job_id, result=result or {}, message=(result or {}).get("message", ""))


def job_enqueue(*, job: Job) -> bool:
    """Send the job's task once the surrounding transaction commits.

    When the broker cannot be reached the job stays ``queued`` and the periodic
    ``requeue_stalled_jobs`` sends it again later; the request that created it still succeeds.
    """
    from django.db import transaction

    transaction.on_commit(lambda: send_job(job_id=job.pk, kind=job.kind))
    return True


# A queued job older than this was probably never sent (the broker was down at the time).
QUEUED_RESEND_SECONDS = 120


def jobs_requeue_stalled(*, limit: int = 500) -> int:
    """Send again the jobs that no worker is running: queued ones whose first send failed, and
    running ones whose heartbeat went stale because their worker died (a SIGKILL, a lost
    machine: the broker may never redeliver their task). A stale job that has used all its
    attempts is failed instead, naming why. Returns how many were sent.

    Sending twice is harmless: ``job_claim`` lets exactly one delivery run the job.
    """
    now = timezone.now()
    stale = Q(status=JobStatus.RUNNING, heartbeat_at__lt=_stale_before())
    gave_up = (
        f"Gave up: the worker running this job stopped {MAX_JOB_ATTEMPTS} times (killed, or its "
        "machine lost) before finishing it."
    )
    Job.objects.filter(stale, attempts__gte=MAX_JOB_ATTEMPTS).update(
        status=JobStatus.FAILED, message=gave_up, error=gave_up, finished_at=now
    )
    unsent = Q(
        status=JobStatus.QUEUED, created_at__lt=now - timedelta(seconds=QUEUED_RESEND_SECONDS)
    )
    candidates = Job.objects.filter(unsent | stale, attempts__lt=MAX_JOB_ATTEMPTS).order_by("pk")
    sent = 0
    for job_id, kind in candidates.values_list("pk", "kind")[:limit]:
        sent += send_job(job_id=job_id, kind=kind)
    return sent


def send_job(*, job_id: int, kind: str) -> bool:
    import logging

    from config.celery import app

    try:
        app.send_task(
            kind,
            kwargs={"job_id": job_id},
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception:  # the broker is down: the sweeper retries
        logging.getLogger(__name__).warning("Could not enqueue job %s (%s) now", job_id, kind)
        return False
    return True
