"""Model uploads (the API and the models page): cheap checks in the request, validation in the
worker as a job.

The request refuses what it can tell without loading the graph: the file size, the label map,
the preprocessing and the node count, read from the protobuf wire format in a fraction of a
second (``node_count_check``). It stores the file under ``models/pending/`` and answers with
the job. The job runs the onnx checker and a dry run in a child process with bounded memory and
time (``onnx_check_isolated``) and only then registers the model version: until the job
succeeds no row exists, so nothing can activate, evaluate or predict with the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import IO, Any

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import transaction

from accounts.models import User
from curation.models import Job, JobStatus
from curation.services.jobs import job_create, job_enqueue
from inference.models import ModelVersion, OutputKind
from inference.preprocessing import PreprocessSpec
from inference.services import Registration, model_version_register
from inference.validation import (
    ModelRejected,
    label_map_parse,
    model_size_check,
    node_count_check,
)
from inference.validation_process import onnx_check_isolated

UPLOAD_KIND = "inference.validate_model"
PENDING_PREFIX = "models/pending"
# Unmatched label names kept in the job's result (the model page lists them all).
RESULT_UNMATCHED = 50
Progress = Callable[[int, int, str], None]


@contextlib.contextmanager
def _readable(upload: IO[bytes]) -> Iterator[bytes | mmap.mmap]:
    """The upload's bytes without a copy where Django spilled it to a temporary file (every
    upload over 4 MiB): a memory map of that file; smaller ones are read."""
    path = getattr(upload, "temporary_file_path", None)
    if path is None:
        upload.seek(0)
        yield upload.read()
        return
    with open(path(), "rb") as handle:
        if not handle.seek(0, 2):
            yield b""
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped


def model_upload_start(
    *,
    onnx_file: IO[bytes],
    labels: bytes | str,
    name: str,
    actor: User | None,
    spec: PreprocessSpec,
    output_kind: str = OutputKind.LOGITS,
    embedding_output: str = "",
    notes: str = "",
    activate: bool = False,
    create_classes: bool = False,
) -> Job:
    """Check what is cheap to check, store the file and queue its validation as a job (sent
    once the job commits). Raises ModelRejected naming the problem; nothing is stored then."""
    with _readable(onnx_file) as data:
        model_size_check(len(data))
        if output_kind not in OutputKind.values:
            raise ModelRejected("output kind must be 'logits' or 'probabilities'")
        label_names = label_map_parse(labels)
        try:
            spec.check()
        except ValueError as exc:
            raise ModelRejected(f"preprocessing: {exc}") from None
        nodes = node_count_check(data)
        sha256 = hashlib.sha256(data).hexdigest()
        size = len(data)
    key = uuid.uuid4().hex
    onnx_file.seek(0)
    # The files first, then the job: a file with no job is harmless, a job with no file is not.
    stored = default_storage.save(
        f"{PENDING_PREFIX}/{key}.onnx", File(onnx_file, name=f"{key}.onnx")
    )
    label_file = default_storage.save(
        f"{PENDING_PREFIX}/{key}.labels.json", ContentFile(json.dumps(label_names).encode())
    )
    name = " ".join(name.split())[:200] or "Model"
    with transaction.atomic():
        job = job_create(
            kind=UPLOAD_KIND,
            actor=actor,
            total=2,
            params={
                "onnx": stored,
                "labels": label_file,
                "name": name,
                "sha256": sha256,
                "size": size,
                "nodes": nodes,
                "classes": len(label_names),
                "spec": {**asdict(spec), "mean": list(spec.mean), "std": list(spec.std)},
                "output_kind": output_kind,
                "embedding_output": embedding_output,
                "notes": notes,
                "activate": activate,
                "create_classes": create_classes,
            },
        )
        job_enqueue(job=job)
    return job


def _spec(fields: dict[str, Any]) -> PreprocessSpec:
    return PreprocessSpec(
        **{**fields, "mean": tuple(fields.get("mean", ())), "std": tuple(fields.get("std", ()))}
    )


@contextlib.contextmanager
def _local_path(name: str) -> Iterator[str]:
    """A local path of the stored file: its own on disk storage, a temporary copy otherwise
    (object storage)."""
    try:
        yield default_storage.path(name)
        return
    except NotImplementedError:
        pass
    with tempfile.NamedTemporaryFile(suffix=".onnx") as handle, default_storage.open(name) as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            handle.write(chunk)
        handle.flush()
        yield handle.name


def model_upload_validate(*, job: Job, progress: Progress | None = None) -> dict[str, Any]:
    """The job: validate the stored upload in a bounded child process, then register it.
    Raises ModelRejected (the job fails with that message). The pending files are removed
    either way; a worker killed part way leaves them for the retry."""
    report = progress or (lambda done, total, message: None)
    params = job.params
    try:
        with default_storage.open(params["labels"], "rb") as stream:
            labels = json.loads(stream.read())
        spec = _spec(params["spec"])
        report(0, 2, "validating: the onnx checker and a dry run, in a child process")
        with _local_path(params["onnx"]) as path:
            checked = onnx_check_isolated(
                path=path,
                labels=labels,
                spec=spec,
                embedding_output=params["embedding_output"],
            )
        report(1, 2, "registering the model version")
        with default_storage.open(params["onnx"], "rb") as stream:
            data = stream.read()
        registration = model_version_register(
            onnx_data=data,
            labels=labels,
            name=params["name"],
            actor=job.created_by,
            spec=spec,
            output_kind=params["output_kind"],
            embedding_output=params["embedding_output"],
            notes=params["notes"],
            activate=params["activate"],
            create_classes=params["create_classes"],
            checked=checked,
        )
    finally:
        for stored in (params["onnx"], params["labels"]):
            with contextlib.suppress(OSError):
                default_storage.delete(stored)
    version = registration.version
    report(2, 2, "registered")
    return {
        "model_version": version.number,
        "model_version_id": version.pk,
        "name": version.name,
        "classes": len(version.label_map),
        "unmatched_count": len(registration.unmatched),
        "unmatched_labels": registration.unmatched[:RESULT_UNMATCHED],
        "created_classes": registration.created_classes,
        "activated": version.is_active,
        "message": registration_message(
            version=version,
            unmatched=len(registration.unmatched),
            created=len(registration.created_classes),
        ),
    }


def model_file_register(
    *,
    path: str,
    labels: bytes | str,
    name: str,
    actor: User | None,
    spec: PreprocessSpec,
    output_kind: str = OutputKind.LOGITS,
    embedding_output: str = "",
    notes: str = "",
    activate: bool = False,
    create_classes: bool = False,
) -> Registration:
    """Register the ONNX file at ``path`` (``register_model``): the same checks as an upload,
    the expensive ones in the bounded child process, here and now rather than as a job."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        model_size_check(size)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            node_count_check(mapped)
    label_names = label_map_parse(labels)
    try:
        spec.check()
    except ValueError as exc:
        raise ModelRejected(f"preprocessing: {exc}") from None
    checked = onnx_check_isolated(
        path=path, labels=label_names, spec=spec, embedding_output=embedding_output
    )
    with open(path, "rb") as handle:
        data = handle.read()
    return model_version_register(
        onnx_data=data,
        labels=label_names,
        name=name,
        actor=actor,
        spec=spec,
        output_kind=output_kind,
        embedding_output=embedding_output,
        notes=notes,
        activate=activate,
        create_classes=create_classes,
        checked=checked,
    )


def registration_message(*, version: ModelVersion, unmatched: int, created: int) -> str:
    text = f"Registered model v{version.number} ({len(version.label_map)} classes)."
    if created:
        text += f" Created {created} classes."
    if unmatched:
        text += f" {unmatched} label names match no class."
    if version.is_active:
        text += " It is active; suggestions are being recomputed."
    return text


# --- Reads ----------------------------------------------------------------------------------


def model_uploads_recent(*, limit: int = 10) -> list[Job]:
    """The latest upload jobs, newest first, for the models page."""
    return list(
        Job.objects.filter(kind=UPLOAD_KIND).select_related("created_by").order_by("-id")[:limit]
    )


def model_uploads_waiting(jobs: list[Job]) -> bool:
    return any(job.status in (JobStatus.QUEUED, JobStatus.RUNNING) for job in jobs)
