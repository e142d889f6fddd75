"""Computing embeddings: batched inference, the embeddings job, the import step."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Exists, OuterRef

from accounts.models import User
from curation.models import Image, ImageStatus, Job
from curation.services.jobs import job_create, job_enqueue
from inference.embeddings.ood import ood_scores_fill
from inference.embeddings.similarity import rows_outside_index, similarity_index_build
from inference.embeddings.vectors import (
    EmbeddingError,
    embedding_version,
    embedding_version_required,
    vector_encode,
)
from inference.models import ImageEmbedding, ModelVersion
from inference.pipeline import BATCH_SIZE, LibraryWalk, scored_batches
from inference.preprocessing import PreprocessSpec, stored_input
from inference.runtime import session_for

logger = logging.getLogger(__name__)

EMBEDDINGS_KIND = "inference.embeddings_compute"
# Rows embedded since the last index build beyond which the import path rebuilds the index:
# the exact scan of newer rows (about 60 ms per 1,000 on SQLite, mostly reading them) stays
# well inside the page's budget.
INDEX_REBUILD_PENDING = 2_000


def _run_outputs(
    version: ModelVersion, samples: list[np.ndarray] | np.ndarray, outputs: list[str]
) -> list[np.ndarray]:
    """The named outputs for preprocessed samples, one array (n x width) each, from one run
    per batch (a model exported with a fixed batch size is run at that size, padded). Runs the
    single-threaded session: callers run it from one thread per core (``scored_batches``)."""
    session = session_for(version, threads=1)
    fixed = session.get_inputs()[0].shape[0]
    size = fixed if isinstance(fixed, int) and fixed > 0 else len(samples)
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    for start in range(0, len(samples), size):
        chunk = samples[start : start + size]
        batch = np.stack(list(chunk))  # rows of an array or arrays of a list alike
        if len(chunk) < size:
            pad = np.zeros((size - len(chunk), *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, pad])
        results = session.run(outputs, {version.input_name: batch})
        for part, result in zip(parts, results, strict=True):
            part.append(np.asarray(result).reshape(len(batch), -1)[: len(chunk)])
    return [np.concatenate(part) for part in parts]


def _embed_batch(version: ModelVersion, samples: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """The embedding output for preprocessed samples."""
    vectors = _run_outputs(version, samples, [version.embedding_output])[0]
    return np.asarray(vectors, dtype=np.float32)


def embeddings_make(*, image_ids: Iterable[int], version: ModelVersion | None = None) -> list[int]:
    """Store the embedding of ``version`` (default: the embedding model) for the active images
    among ``image_ids`` that have none yet. Idempotent (the unique constraint settles races);
    images that cannot be decoded are skipped and logged. Returns the ids of the images that
    got one."""
    version = version or embedding_version()
    if version is None:
        return []
    ids = list(image_ids)
    done = set(
        ImageEmbedding.objects.filter(model_version=version, image_id__in=ids).values_list(
            "image_id", flat=True
        )
    )
    images = (
        Image.objects.filter(pk__in=[i for i in ids if i not in done], status=ImageStatus.ACTIVE)
        .only("pk", "sha256", "extension")
        .order_by("pk")
    )
    made: list[int] = []
    for batch in embeddings_stream(images, version=version):
        made.extend(image.pk for image in batch)
    return made


def embeddings_stream(images: Iterable[Image], *, version: ModelVersion) -> Iterator[list[Image]]:
    """Embed ``images`` with ``version`` on every core and store the vectors, a batch at a
    time: yields each batch's images that could be decoded. ``images`` is read lazily, as the
    cores need more (see ``scored_batches``)."""
    spec = PreprocessSpec.of(version)
    for batch, vectors in scored_batches(
        images,
        lambda image: stored_input(image, spec),
        lambda samples: _embed_batch(version, samples),
        batch_size=BATCH_SIZE,
    ):
        rows = [
            ImageEmbedding(model_version=version, image_id=image.pk, vector=vector_encode(vector))
            for image, vector in zip(batch, vectors, strict=True)
        ]
        ImageEmbedding.objects.bulk_create(rows, ignore_conflicts=True)
        yield batch


def _after_new_embeddings(version: ModelVersion, made: list[int]) -> None:
    """OOD scores of newly embedded images, and an index rebuild when many rows wait outside
    the index."""
    if made:
        ood_scores_fill(version=version, image_ids=made, fresh=False)
        if rows_outside_index(version) >= INDEX_REBUILD_PENDING:
            similarity_index_build(version=version)


def embeddings_for_new_images(*, image_ids: list[int]) -> int:
    """The worker's embedding step after import: embeddings and OOD scores of new images, and
    an index rebuild when many rows wait outside it. A failure here never fails the rest of
    image processing (embeddings can be computed again)."""
    try:
        version = embedding_version()
        if version is None:
            return 0
        made = embeddings_make(image_ids=image_ids, version=version)
        _after_new_embeddings(version, made)
        return len(made)
    except Exception:
        logger.exception("Embeddings failed for %d images", len(image_ids))
        return 0


def suggestions_and_embeddings_make(*, image_ids: list[int]) -> dict[str, int]:
    """The worker's model step after import: suggestions from the active model, embeddings
    and OOD scores from the embedding model. When both are one version (the installed
    backbone, by default) each image is decoded and run once for both outputs instead of
    twice. A failure never fails the rest of image processing: both can be computed again."""
    from inference.services import active_version, suggestions_make

    try:
        version = embedding_version()
    except EmbeddingError:
        version = None
    active = active_version()
    if version is None or active is None or active.pk != version.pk:
        return {
            "suggestions": suggestions_make(image_ids=image_ids),
            "embeddings": embeddings_for_new_images(image_ids=image_ids),
        }
    try:
        suggested, made = _predictions_and_embeddings_make(image_ids=image_ids, version=version)
        _after_new_embeddings(version, made)
    except Exception:
        logger.exception("Suggestions and embeddings failed for %d images", len(image_ids))
        return {"suggestions": 0, "embeddings": 0}
    return {"suggestions": suggested, "embeddings": len(made)}


def _predictions_and_embeddings_make(
    *, image_ids: list[int], version: ModelVersion
) -> tuple[int, list[int]]:
    """Top-k predictions and embeddings of ``version`` for the active images among
    ``image_ids`` missing either, from one run of the model; the same rows as
    ``predictions_make`` and ``embeddings_make`` would write. Returns how many predictions
    were written and the ids of the images embedded."""
    from inference.models import OutputKind, Prediction
    from inference.runtime import softmax, top_k
    from inference.services import STORED_TOP_K, prediction_row, suggestion_scores_sync

    predicted = set(
        Prediction.objects.filter(model_version=version, image_id__in=image_ids).values_list(
            "image_id", flat=True
        )
    )
    embedded = set(
        ImageEmbedding.objects.filter(model_version=version, image_id__in=image_ids).values_list(
            "image_id", flat=True
        )
    )
    wanted = [i for i in image_ids if i not in predicted or i not in embedded]
    images = list(
        Image.objects.filter(pk__in=wanted, status=ImageStatus.ACTIVE)
        .only("pk", "sha256", "extension")
        .order_by("pk")
    )
    spec = PreprocessSpec.of(version)
    written = 0
    made: list[int] = []
    both = [version.output_name, version.embedding_output]
    for batch, (outputs, vectors) in scored_batches(
        images,
        lambda image: stored_input(image, spec),
        lambda samples: _run_outputs(version, samples, both),
        batch_size=BATCH_SIZE,
    ):
        scores = np.asarray(outputs, dtype=np.float64)
        if version.output_kind == OutputKind.LOGITS:
            scores = softmax(scores)
        results = top_k(version, scores, k=STORED_TOP_K)
        predictions = [
            prediction_row(image, version, result)
            for image, result in zip(batch, results, strict=True)
            if image.pk not in predicted
        ]
        written += len(Prediction.objects.bulk_create(predictions, ignore_conflicts=True))
        rows = [
            ImageEmbedding(model_version=version, image_id=image.pk, vector=vector_encode(vector))
            for image, vector in zip(batch, vectors, strict=True)
            if image.pk not in embedded
        ]
        ImageEmbedding.objects.bulk_create(rows, ignore_conflicts=True)
        made.extend(row.image_id for row in rows)
    suggestion_scores_sync(image_ids=image_ids, version=version)
    return written, made


def embeddings_missing(*, version: ModelVersion) -> Any:
    """Active images with no embedding from ``version``."""
    has = ImageEmbedding.objects.filter(model_version=version, image=OuterRef("pk"))
    return Image.objects.filter(status=ImageStatus.ACTIVE).filter(~Exists(has))


def embeddings_compute(
    *,
    version: ModelVersion | None = None,
    progress: Callable[[int, int], None] | None = None,
    stage: Callable[[str], None] | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Embeddings for every active image that has none, then the OOD scores still missing and
    a fresh similarity index (``stage`` hears which of the three is running).

    One stream over every core through the images still missing one, in primary-key pages
    read while the cores embed the previous page (``LibraryWalk``); running it again computes
    nothing new, and a run cut short resumes where it stopped. ``progress(done, total)`` counts
    the images that needed an embedding when the run began.
    Raises EmbeddingError when no model version has an embedding output.
    """
    version = version or embedding_version_required()
    walk = LibraryWalk(
        embeddings_missing(version=version),
        fields=("pk", "sha256", "extension"),
        chunk_size=chunk_size,
        progress=progress,
    )
    pages = (image for page in walk.pages() for image in walk.handed(page))
    written = 0
    for batch in embeddings_stream(pages, version=version):
        written += len(batch)
        walk.settle(batch)
    walk.finish()
    seen = walk.seen
    if stage:
        stage("scoring out-of-distribution")
    scored = ood_scores_fill(version=version)
    if stage:
        stage("building the similarity index")
    index = similarity_index_build(version=version)
    return {
        "images": seen,
        "written": written,
        "skipped": seen - written,
        "ood_scored": scored,
        "indexed": index.count,
        "model_version": version.number,
        "message": f"{written} new embeddings from v{version.number}; {scored} OOD scores; "
        f"index of {index.count} images",
    }


def embeddings_job_start(*, actor: User | None) -> Job:
    """Queue ``embeddings_compute`` as a job. Raises EmbeddingError when no model version has
    an embedding output."""
    version = embedding_version_required()
    with transaction.atomic():
        job = job_create(kind=EMBEDDINGS_KIND, actor=actor, params={"model_version_id": version.pk})
        job_enqueue(job=job)
    return job
