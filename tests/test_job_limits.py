"""Jobs run over the whole library in one task each, so they get the job time limit; the
short per-chunk tasks keep the task-wide default."""

from __future__ import annotations

import inspect

from django.conf import settings

from config.celery import app


def test_every_task_that_runs_a_job_has_the_job_time_limits() -> None:
    app.loader.import_default_modules()
    tasks = {
        name: task
        for name, task in app.tasks.items()
        if name.startswith(("curation.", "inference."))
    }
    jobs = {
        name for name, task in tasks.items() if "job_id" in inspect.signature(task.run).parameters
    }
    assert {
        "curation.import_archive",
        "inference.recompute_predictions",
        "inference.evaluate",
    } <= jobs
    for name in sorted(jobs):
        task = tasks[name]
        assert task.soft_time_limit == settings.LOUPE_JOB_SOFT_TIME_LIMIT, name
        assert task.time_limit == settings.LOUPE_JOB_SOFT_TIME_LIMIT + 60, name
    for name in sorted(set(tasks) - jobs):
        assert tasks[name].soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT, name
    assert settings.LOUPE_JOB_SOFT_TIME_LIMIT > settings.CELERY_TASK_SOFT_TIME_LIMIT
