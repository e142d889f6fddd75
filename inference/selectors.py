"""Reads of inference's rows that other code needs."""

from __future__ import annotations

from collections.abc import Iterator

from inference.models import ModelVersion


def model_files() -> Iterator[tuple[str, str]]:
    """(storage name, SHA-256) of every registered model's ONNX file, in primary-key order:
    what a backup carries beside the originals."""
    rows = ModelVersion.objects.order_by("pk").values_list("onnx_file", "sha256")
    yield from rows.iterator(chunk_size=2000)
