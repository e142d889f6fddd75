"""Image embeddings: the embedding model's pooled feature vector of every active image, the
similarity index behind "more like this", embedding near-duplicates and out-of-distribution
scores.

Vectors are L2-normalised before they are stored (little-endian float16), so a dot product is
the cosine similarity. The embedding model is the version ``LOUPE_EMBEDDING_MODEL`` names, or
else the lowest-numbered version with an embedding output: the installed backbone, whose
features later models built on it share.

The similarity index is a derivative: a file under ``LOUPE_DATA_DIR/similarity`` that the
worker rebuilds after embedding jobs and that web processes load lazily (and reload when the
file changes). Rows embedded after the index was built are found by an exact scan of the rows
newer than it, so a fresh import is searchable before the next rebuild.

Modules: ``vectors`` (the embedding model, encoding, reading vectors back), ``compute`` (batched
inference, the job, the import step), ``similarity`` (the index file, "more like this"),
``pairs`` (near-duplicate pairs), ``ood`` (out-of-distribution scores, their filters and the
production dashboard panel). Import from the package: the names below are its interface.
"""

from __future__ import annotations

from inference.embeddings.compute import (
    EMBEDDINGS_KIND,
    INDEX_REBUILD_PENDING,
    embeddings_compute,
    embeddings_for_new_images,
    embeddings_job_start,
    embeddings_make,
    embeddings_missing,
    suggestions_and_embeddings_make,
)
from inference.embeddings.ood import (
    OOD_MAX,
    OOD_PANEL_SAMPLE,
    OodDay,
    OodPanel,
    images_with_ood_at_least,
    labelled_index_clear,
    ood_at_least,
    ood_choices,
    ood_dashboard,
    ood_param,
    ood_score_of,
    ood_scores,
    ood_scores_fill,
    ood_threshold,
    with_ood_scores,
)
from inference.embeddings.pairs import (
    CENTRE_PRIOR,
    centred,
    embedding_pairs,
    nearest_similarities,
)
from inference.embeddings.similarity import (
    IndexInfo,
    SimilarImage,
    SimilarPanel,
    faiss_threads,
    index_path,
    similar_images,
    similar_panel,
    similarity_index_build,
    similarity_index_info,
    similarity_index_load,
)
from inference.embeddings.vectors import (
    VECTOR_DTYPE,
    EmbeddingError,
    embedding_counts,
    embedding_matrix,
    embedding_of,
    embedding_version,
    embedding_version_required,
    stack_vectors,
    vector_decode,
    vector_encode,
)

__all__ = [
    "CENTRE_PRIOR",
    "EMBEDDINGS_KIND",
    "INDEX_REBUILD_PENDING",
    "OOD_MAX",
    "OOD_PANEL_SAMPLE",
    "VECTOR_DTYPE",
    "EmbeddingError",
    "IndexInfo",
    "OodDay",
    "OodPanel",
    "SimilarImage",
    "SimilarPanel",
    "centred",
    "embedding_counts",
    "embedding_matrix",
    "embedding_of",
    "embedding_pairs",
    "embedding_version",
    "embedding_version_required",
    "embeddings_compute",
    "embeddings_for_new_images",
    "embeddings_job_start",
    "embeddings_make",
    "embeddings_missing",
    "faiss_threads",
    "images_with_ood_at_least",
    "index_path",
    "labelled_index_clear",
    "nearest_similarities",
    "ood_at_least",
    "ood_choices",
    "ood_dashboard",
    "ood_param",
    "ood_score_of",
    "ood_scores",
    "ood_scores_fill",
    "ood_threshold",
    "similar_images",
    "similar_panel",
    "similarity_index_build",
    "similarity_index_info",
    "similarity_index_load",
    "stack_vectors",
    "suggestions_and_embeddings_make",
    "vector_decode",
    "vector_encode",
    "with_ood_scores",
]
