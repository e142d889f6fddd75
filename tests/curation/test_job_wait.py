"""Pages that wait for a job show its progress bar, wired to the jobs API for
static/js/job-wait.js, instead of asking the user to reload (the browser side is in
tests/e2e/test_job_wait.py)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import User
from curation.models import ImportKind
from curation.services.datasets import DatasetParams, dataset_version_create
from curation.services.images import import_batch_create
from curation.services.jobs import job_claim, job_create, job_progress
from curation.services.quality import QUALITY_BASELINE_JOB

pytestmark = pytest.mark.django_db


def _waits_for(page: str, job_id: int) -> None:
    """The page follows the job: a progress bar bound to its API address, and no "reload"."""
    block = re.search(r'<div class="job-wait" data-job-wait="(\d+)" data-job-url="([^"]+)"', page)
    assert block is not None, "no job progress block"
    assert (block[1], block[2]) == (str(job_id), f"/api/v1/jobs/{job_id}/")
    assert 'role="progressbar"' in page
    assert "reload" not in re.sub(r"<script.*?</script>", "", page, flags=re.S).lower()
    assert 'src="/static/js/job-wait.js"' in page


@pytest.fixture
def as_reviewer(client: Client, reviewer: User) -> Client:
    client.force_login(reviewer)
    return client


def test_the_quality_page_follows_its_recompute_job(as_reviewer: Client) -> None:
    job = job_create(kind=QUALITY_BASELINE_JOB, actor=None)
    job_claim(job_id=job.pk)
    job_progress(job_id=job.pk, done=2, total=8, message="reading the library")
    page = as_reviewer.get("/quality/").content.decode()
    _waits_for(page, job.pk)
    assert 'aria-valuenow="25"' in page and "reading the library" in page


def test_a_running_import_follows_its_job(as_reviewer: Client) -> None:
    batch = import_batch_create(kind=ImportKind.ZIP, name="birds.zip", actor=None)
    batch.job = job_create(kind="import_archive", actor=None)
    batch.save(update_fields=["job"])
    page = as_reviewer.get(f"/imports/{batch.pk}/").content.decode()
    _waits_for(page, batch.job.pk)


def test_a_dataset_being_built_follows_its_job(as_reviewer: Client) -> None:
    version = dataset_version_create(name="d1", params=DatasetParams(), actor=None)
    version.job = job_create(kind="build_dataset", actor=None)
    version.save(update_fields=["job"])
    page = as_reviewer.get(f"/datasets/{version.pk}/").content.decode()
    _waits_for(page, version.job.pk)
