"""Decoding overlapped with inference: a pool of threads decodes the next batches while the
model runs on the current one (Pillow's decoders and onnxruntime both release the GIL)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")
AHEAD = 2  # batches decoded ahead of the model


def decode_threads() -> int:
    value = os.environ.get("LOUPE_DECODE_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else (os.cpu_count() or 1)


def decoded_batches(
    items: Sequence[T],
    load: Callable[[T], np.ndarray | None],
    *,
    batch_size: int,
    workers: int | None = None,
) -> Iterator[list[tuple[T, np.ndarray]]]:
    """Batches of (item, sample) in order; items whose ``load`` returns None are left out."""
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=workers or decode_threads()) as pool:
        pending: deque[tuple[Sequence[T], list[Future[np.ndarray | None]]]] = deque()
        upcoming = iter(chunks)

        def submit_next() -> None:
            chunk = next(upcoming, None)
            if chunk is not None:
                pending.append((chunk, [pool.submit(load, item) for item in chunk]))

        for _ in range(AHEAD):
            submit_next()
        while pending:
            chunk, futures = pending.popleft()
            submit_next()
            batch = []
            for item, future in zip(chunk, futures, strict=True):
                sample = future.result()
                if sample is not None:
                    batch.append((item, sample))
            if batch:
                yield batch
