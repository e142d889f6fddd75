"""Stored embedding vectors: the embedding model, their encoding, and reading them back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings

from curation.models import Image, ImageStatus
from inference.models import ImageEmbedding, ModelVersion

VECTOR_DTYPE = np.dtype("<f2")
# Rows read per query when ids are given (SQLite accepts 32,766 parameters a statement).
ID_CHUNK = 10_000


class EmbeddingError(Exception):
    """Embeddings cannot be computed or searched as asked; the message says why."""


# --- The embedding model --------------------------------------------------------------------


def embedding_version() -> ModelVersion | None:
    """The model version whose embedding output Loupe uses; None when no version has one.
    Raises EmbeddingError when ``LOUPE_EMBEDDING_MODEL`` names a version that cannot serve."""
    number = int(getattr(settings, "LOUPE_EMBEDDING_MODEL", 0) or 0)
    if number:
        version = ModelVersion.objects.filter(number=number).first()
        if version is None:
            raise EmbeddingError(f"LOUPE_EMBEDDING_MODEL names model v{number}, which is missing.")
        if not version.embedding_output:
            raise EmbeddingError(
                f"LOUPE_EMBEDDING_MODEL names model v{number}, which has no embedding output."
            )
        return version
    return ModelVersion.objects.exclude(embedding_output="").order_by("number").first()


def embedding_version_required() -> ModelVersion:
    """The embedding model; raises EmbeddingError saying how to get one when there is none."""
    version = embedding_version()
    if version is None:
        raise EmbeddingError(
            "No model version has an embedding output; run `manage.py install_backbone`."
        )
    return version


def vector_encode(vector: np.ndarray) -> bytes:
    """A vector as stored: L2-normalised, little-endian float16."""
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if norm > 0:
        vector = vector / norm
    return vector.astype(VECTOR_DTYPE).tobytes()


def vector_decode(data: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=VECTOR_DTYPE).astype(np.float32)


def stack_vectors(blobs: Sequence[bytes | memoryview]) -> np.ndarray:
    """Stored vectors as one float32 matrix (n x d)."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    joined = b"".join(bytes(blob) for blob in blobs)
    return np.frombuffer(joined, dtype=VECTOR_DTYPE).reshape(len(blobs), -1).astype(np.float32)


# --- Reads ----------------------------------------------------------------------------------


def embedding_matrix(
    *, image_ids: Sequence[int] | None = None, model_version: ModelVersion | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(image ids as int64, float32 matrix n x d) of the images that have an embedding from
    ``model_version`` (default: the embedding model), in image-id order.

    With ``image_ids`` only those images (whatever their status); without, every active image.
    Rows are L2-normalised, so ``matrix @ matrix.T`` holds cosine similarities. Images with no
    embedding yet are left out: compare the returned ids with the ones asked for.
    """
    version = model_version or embedding_version()
    if version is None:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    rows = ImageEmbedding.objects.filter(model_version=version)
    ids: list[int] = []
    blobs: list[bytes | memoryview] = []
    if image_ids is None:
        active = rows.filter(image__status=ImageStatus.ACTIVE).order_by("image_id")
        for image_id, blob in active.values_list("image_id", "vector").iterator(chunk_size=5000):
            ids.append(image_id)
            blobs.append(blob)
    else:
        wanted = sorted({int(i) for i in image_ids})
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = rows.filter(image_id__in=wanted[start : start + ID_CHUNK]).order_by("image_id")
            for image_id, blob in chunk.values_list("image_id", "vector"):
                ids.append(image_id)
                blobs.append(blob)
    return np.array(ids, dtype=np.int64), stack_vectors(blobs)


def embedding_of(*, image_id: int, version: ModelVersion) -> np.ndarray | None:
    blob = (
        ImageEmbedding.objects.filter(model_version=version, image_id=image_id)
        .values_list("vector", flat=True)
        .first()
    )
    return None if blob is None else vector_decode(blob)


def embedding_counts(*, version: ModelVersion | None = None) -> dict[str, int]:
    """Active images, and how many of them have an embedding (two counts)."""
    version = version or embedding_version()
    active = Image.objects.filter(status=ImageStatus.ACTIVE).count()
    if version is None:
        return {"active": active, "embedded": 0}
    embedded = ImageEmbedding.objects.filter(
        model_version=version, image__status=ImageStatus.ACTIVE
    ).count()
    return {"active": active, "embedded": embedded}
