"""Embedding near-duplicates: pairs above a cosine similarity, centred on the library."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inference.embeddings.similarity import similarity_index_info
from inference.embeddings.vectors import (
    embedding_matrix,
    embedding_version,
)
from inference.models import ModelVersion

# How many images the library's mean embedding is weighed against before it is subtracted:
# with a few images (a few of them copies of one photo) the mean is mostly those copies and is
# hardly subtracted; with thousands it is, nearly in full.
CENTRE_PRIOR = 200


def centred(matrix: np.ndarray, mean: np.ndarray, count: int) -> np.ndarray:
    """Rows less the library's mean embedding (shrunk by ``count / (count + CENTRE_PRIOR)``),
    L2-normalised again: the similarity near-duplicates are judged by.

    A library of one kind of subject sits in a narrow cone of the backbone's feature space
    (in the demo's digit drawings, raw cosines of different drawings run above 0.95), and
    that shared direction, not the picture, dominates the raw cosine. Subtracting it leaves
    what tells one image from another; copies of one photograph stay above 0.95 and different
    photographs fall well below.
    """
    if len(matrix) == 0 or len(mean) != matrix.shape[1]:
        return matrix
    shifted = matrix - np.asarray(mean, np.float32) * np.float32(count / (count + CENTRE_PRIOR))
    norms = np.linalg.norm(shifted, axis=1, keepdims=True)
    return np.ascontiguousarray(shifted / np.maximum(norms, 1e-12), dtype=np.float32)


def embedding_pairs(
    *, min_similarity: float, version: ModelVersion | None = None, batch: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of active images whose embeddings, ``centred`` on the library's mean, have
    a cosine similarity above ``min_similarity``: (ids searched, left ids, right ids,
    similarities), left < right.

    A range search of each batch of rows against an exact float32 inner-product index of all
    rows: batched, it runs as matrix products on BLAS, where the float16 index answers one
    query at a time.
    """
    import faiss

    ids, matrix = embedding_matrix(model_version=version)
    empty = np.zeros(0, dtype=np.int64)
    if len(ids) < 2:
        return ids, empty, empty, np.zeros(0, dtype=np.float32)
    matrix = centred(matrix, matrix.mean(axis=0), len(ids))
    index = faiss.IndexFlatIP(matrix.shape[1])
    index.add(matrix)
    lefts, rights, similarities = [], [], []
    for start in range(0, len(ids), batch):
        limits, found, positions = index.range_search(
            matrix[start : start + batch], float(min_similarity)
        )
        rows = np.repeat(np.arange(len(limits) - 1) + start, np.diff(limits.astype(np.int64)))
        keep = positions > rows  # each pair once, and never an image with itself
        lefts.append(ids[rows[keep]])
        rights.append(ids[positions[keep]])
        similarities.append(found[keep])
    return ids, np.concatenate(lefts), np.concatenate(rights), np.concatenate(similarities)


def nearest_similarities(*, groups: Sequence[Sequence[int]]) -> dict[int, float]:
    """For each image of a few groups (duplicate groups), the ``centred`` cosine similarity
    to the nearest other member of its group (centred on the mean the similarity index
    recorded); images with no embedding are left out. One query."""
    version = embedding_version()
    ids, matrix = embedding_matrix(
        image_ids=[i for members in groups for i in members], model_version=version
    )
    info = similarity_index_info(version=version) if version is not None else None
    if info is not None:
        matrix = centred(matrix, np.asarray(info.mean, np.float32), info.count)
    row = {int(image_id): position for position, image_id in enumerate(ids)}
    nearest: dict[int, float] = {}
    for members in groups:
        present = [i for i in members if i in row]
        if len(present) < 2:
            continue
        vectors = matrix[[row[i] for i in present]]
        similarities = vectors @ vectors.T
        np.fill_diagonal(similarities, -np.inf)
        for image_id, best in zip(present, similarities.max(axis=1), strict=True):
            nearest[image_id] = round(float(best), 4)
    return nearest
