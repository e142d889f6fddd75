from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from curation.models import Image, Job, JobStatus, SubClass
from curation.selectors import inbox_count, inbox_images
from curation.services.images import image_relabel, image_restore, image_trash
from curation.services.jobs import job_claim, job_create
from curation.services.taxonomy import class_create


def test_the_inbox_counter_follows_imports_labels_trash_and_restore(
    make_image: Callable[..., Image],
) -> None:
    robin = SubClass.objects.get(
        label_class=class_create(name="Robin", actor=None), is_default=True
    )
    first, second, labelled = make_image(), make_image(), make_image(robin)
    assert inbox_count() == 2

    image_relabel(image_id=first.pk, subclass=robin, actor=None, reason="api", expected_version=1)
    assert inbox_count() == 1
    image_relabel(image_id=first.pk, subclass=None, actor=None, reason="undo", expected_version=2)
    assert inbox_count() == 2
    image_trash(image_id=second.pk, actor=None, note="blurry")
    assert inbox_count() == 1
    image_trash(image_id=labelled.pk, actor=None, note="duplicate")
    assert inbox_count() == 1
    image_restore(image_id=second.pk, actor=None)
    assert inbox_count() == inbox_images().count() == 2


def test_a_running_job_is_claimed_again_only_when_its_heartbeat_is_stale(db: None) -> None:
    job = job_create(kind="curation.sweep_orphans", actor=None)
    assert job_claim(job_id=job.pk)
    # A second delivery while the first worker is alive does nothing.
    assert not job_claim(job_id=job.pk)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert job_claim(job_id=job.pk)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    assert not job_claim(job_id=job.pk)
