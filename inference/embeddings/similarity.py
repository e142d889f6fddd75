"""The similarity index (a file the worker writes, web processes load) and "more like this"."""

from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Max, QuerySet

from curation.models import Image, ImageStatus
from inference.embeddings.vectors import (
    EmbeddingError,
    embedding_of,
    embedding_version,
    stack_vectors,
)
from inference.models import ImageEmbedding, ModelVersion

_MAGIC = b"LOUPESIM1"


@dataclass(frozen=True)
class IndexInfo:
    path: Path
    count: int
    max_embedding_id: int
    dimensions: int
    built_at: float
    seconds: float = 0.0
    # The mean of the indexed vectors, for near-duplicate similarities (see ``centred``).
    mean: tuple[float, ...] = ()


def index_path(version: ModelVersion) -> Path:
    folder = Path(settings.DATA_DIR) / "similarity"
    return folder / f"v{version.number}-{version.sha256[:12]}.faiss"


def similarity_index_build(*, version: ModelVersion) -> IndexInfo:
    """Write the similarity index of every embedding of ``version`` (trashed images included:
    they are filtered at query time, so a restored image is found again without a rebuild).

    The index is exact: inner product over float16-quantised vectors (faiss
    ``IndexScalarQuantizer`` QT_fp16), the stored precision, so it ranks exactly as a scan of
    the stored vectors would. The file is written under a temporary name and renamed into
    place, so readers see the old index or the new one, never half of one.
    """
    import faiss

    started = time.perf_counter()
    rows = ImageEmbedding.objects.filter(model_version=version)
    max_id = rows.aggregate(m=Max("pk"))["m"] or 0
    ids: list[int] = []
    blobs: list[bytes | memoryview] = []
    for image_id, blob in (
        rows.filter(pk__lte=max_id)
        .order_by("pk")
        .values_list("image_id", "vector")
        .iterator(chunk_size=5000)
    ):
        ids.append(image_id)
        blobs.append(blob)
    matrix = stack_vectors(blobs)
    dimensions = matrix.shape[1] if len(ids) else 0
    quantizer = faiss.IndexScalarQuantizer(
        max(dimensions, 1), faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    index = faiss.IndexIDMap2(quantizer)
    if len(ids):
        index.add_with_ids(matrix, np.array(ids, dtype=np.int64))
    info = IndexInfo(
        path=index_path(version),
        count=len(ids),
        max_embedding_id=max_id,
        dimensions=dimensions,
        built_at=time.time(),
        mean=tuple(float(x) for x in matrix.mean(axis=0)) if len(ids) else (),
    )
    _write_index(info, index)
    return IndexInfo(**{**info.__dict__, "seconds": time.perf_counter() - started})


def _write_index(info: IndexInfo, index: Any) -> None:
    import faiss

    info.path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(
        {
            "count": info.count,
            "max_embedding_id": info.max_embedding_id,
            "dimensions": info.dimensions,
            "built_at": info.built_at,
            "mean": [round(x, 6) for x in info.mean],
        }
    ).encode()
    data = faiss.serialize_index(index)
    handle, temporary = tempfile.mkstemp(dir=info.path.parent, prefix=".building-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(_MAGIC + struct.pack("<I", len(meta)) + meta)
            data.tofile(out)
        os.replace(temporary, info.path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass
class _Loaded:
    stamp: tuple[int, int]
    index: Any
    info: IndexInfo


_loaded: dict[Path, _Loaded] = {}
_load_lock = threading.Lock()


def similarity_index_load(*, version: ModelVersion) -> tuple[Any, IndexInfo] | None:
    """The process's copy of the version's index, read on first use and again whenever the
    file changes (its modification time or size); None when no index was built yet."""
    import faiss

    path = index_path(version)
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    stamp = (status.st_mtime_ns, status.st_size)
    loaded = _loaded.get(path)
    if loaded is not None and loaded.stamp == stamp:
        return loaded.index, loaded.info
    with _load_lock:
        loaded = _loaded.get(path)
        if loaded is None or loaded.stamp != stamp:
            data = path.read_bytes()
            info, body_offset = _parse_header(path, data)
            index = faiss.deserialize_index(np.frombuffer(data, np.uint8, offset=body_offset))
            loaded = _Loaded(stamp=stamp, index=index, info=info)
            _loaded[path] = loaded
    return loaded.index, loaded.info


def _parse_header(path: Path, head: bytes) -> tuple[IndexInfo, int]:
    """The index's description and where the faiss data starts."""
    if not head.startswith(_MAGIC):
        raise EmbeddingError(f"{path} is not a similarity index; delete it and rebuild.")
    offset = len(_MAGIC)
    (size,) = struct.unpack("<I", head[offset : offset + 4])
    meta = json.loads(head[offset + 4 : offset + 4 + size])
    info = IndexInfo(
        path=path,
        count=meta["count"],
        max_embedding_id=meta["max_embedding_id"],
        dimensions=meta["dimensions"],
        built_at=meta["built_at"],
        mean=tuple(meta.get("mean", ())),
    )
    return info, offset + 4 + size


def similarity_index_info(*, version: ModelVersion) -> IndexInfo | None:
    """The description of the version's index file, read from its header alone."""
    path = index_path(version)
    try:
        with path.open("rb") as stream:
            head = stream.read(len(_MAGIC) + 4)
            if len(head) == len(_MAGIC) + 4:
                head += stream.read(struct.unpack("<I", head[-4:])[0])
    except FileNotFoundError:
        return None
    return _parse_header(path, head)[0]


def rows_outside_index(version: ModelVersion) -> int:
    info = similarity_index_info(version=version)
    after = info.max_embedding_id if info else 0
    return ImageEmbedding.objects.filter(model_version=version, pk__gt=after).count()


# --- "More like this" -----------------------------------------------------------------------


@dataclass(frozen=True)
class SimilarImage:
    image: Image
    similarity: float


def faiss_threads(count: int) -> None:
    """OpenMP threads for faiss calls made from this thread."""
    import faiss

    faiss.omp_set_num_threads(count)


def _exact_scan(
    query: np.ndarray, version: ModelVersion, after_embedding_id: int
) -> dict[int, float]:
    """Similarities of the query to the rows newer than the index (all rows without one)."""
    rows = ImageEmbedding.objects.filter(model_version=version, pk__gt=after_embedding_id)
    found: dict[int, float] = {}
    ids: list[int] = []
    blobs: list[bytes | memoryview] = []
    for image_id, blob in rows.values_list("image_id", "vector").iterator(chunk_size=5000):
        ids.append(image_id)
        blobs.append(blob)
        if len(ids) == 5000:
            found.update(zip(ids, (stack_vectors(blobs) @ query).tolist(), strict=True))
            ids, blobs = [], []
    if ids:
        found.update(zip(ids, (stack_vectors(blobs) @ query).tolist(), strict=True))
    return found


def similar_images(
    *,
    image_id: int,
    k: int = 20,
    version: ModelVersion | None = None,
    images: QuerySet[Image] | None = None,
) -> list[SimilarImage] | None:
    """The ``k`` active images most like ``image_id`` by cosine similarity of embeddings, most
    similar first; None when the image has no embedding yet.

    The index gives the candidates, the rows embedded since it was built are scanned exactly,
    and trashed images are dropped (asking the index for more when too many were). Three to
    five queries, none proportional to the library. ``images`` is the queryset the results are
    read from (default: images with their label), so a caller can select what it shows.
    """
    images = Image.objects.select_related("subclass__label_class") if images is None else images
    version = version or embedding_version()
    if version is None:
        return None
    query = embedding_of(image_id=image_id, version=version)
    if query is None:
        return None
    loaded = similarity_index_load(version=version)
    newer = _exact_scan(query, version, loaded[1].max_embedding_id if loaded else 0)
    # One query gains nothing from OpenMP threads and, on a busy machine, loses much to their
    # hand-offs (1.5 ms on one thread against 11-36 ms on two, measured at 5,000 rows). The
    # setting is per calling thread, so the worker's batched searches keep theirs.
    faiss_threads(1)
    ask = k + 11
    while True:
        candidates: dict[int, float] = {}
        exhausted = True
        if loaded is not None and loaded[1].count:
            index, info = loaded
            ask = min(ask, info.count)
            similarities, ids = index.search(query[None, :], ask)
            candidates.update(
                (int(i), float(s)) for i, s in zip(ids[0], similarities[0], strict=True) if i >= 0
            )
            exhausted = ask >= info.count
        candidates.update(newer)
        candidates.pop(image_id, None)
        ranked = sorted(candidates.items(), key=lambda item: (-item[1], item[0]))
        found = images.filter(pk__in=[i for i, _ in ranked[: k + ask]], status=ImageStatus.ACTIVE)
        by_id = {image.pk: image for image in found}
        result = [SimilarImage(by_id[i], round(s, 4)) for i, s in ranked if i in by_id][:k]
        if len(result) >= k or exhausted:
            return result
        ask *= 4


@dataclass(frozen=True)
class SimilarPanel:
    """What the image page shows under "More like this"."""

    results: list[SimilarImage]
    ood_score: float | None
    model_version: int | None
    missing: str = ""  # why there are no results, when there are none


def similar_panel(*, image_id: int, k: int = 20) -> SimilarPanel:
    try:
        version = embedding_version()
    except EmbeddingError as exc:
        return SimilarPanel([], None, None, missing=str(exc))
    if version is None:
        return SimilarPanel(
            [], None, None, missing="No model has an embedding output; install the backbone."
        )
    found = similar_images(image_id=image_id, k=k, version=version)
    if found is None:
        return SimilarPanel(
            [],
            None,
            version.number,
            missing="This image has no embedding yet: the worker computes it after import.",
        )
    ood = (
        ImageEmbedding.objects.filter(model_version=version, image_id=image_id)
        .values_list("ood_score", flat=True)
        .first()
    )
    return SimilarPanel(found, ood, version.number)
