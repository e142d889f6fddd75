"""The bulk inference path: decode and model per core, results in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np

from inference.pipeline import scored_batches


def load(item: int) -> np.ndarray | None:
    return None if item % 5 == 0 else np.full((2,), item, np.float32)


def test_batches_come_back_in_order_without_the_items_that_failed_to_load() -> None:
    items = list(range(1, 48))

    batches = list(scored_batches(items, load, lambda x: x[:, 0].copy(), batch_size=4, workers=3))

    kept = [item for batch, _ in batches for item in batch]
    assert kept == [i for i in items if i % 5 != 0]
    for batch, scores in batches:
        assert scores.tolist() == batch


def test_a_batch_with_nothing_decoded_is_skipped() -> None:
    batches = list(scored_batches([5, 10, 1], load, lambda x: len(x), batch_size=2, workers=2))

    assert batches == [([1], 1)]


def test_the_model_runs_on_several_threads_at_once() -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def score(samples: np.ndarray) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return len(samples)

    total = sum(
        n for _, n in scored_batches(list(range(1, 13)), load, score, batch_size=2, workers=2)
    )

    assert total == 10
    assert peak == 2


def test_items_are_read_only_as_the_cores_need_them() -> None:
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for item in range(1, 101):
            pulled += 1
            yield item

    batches = scored_batches(items(), load, lambda x: len(x), batch_size=2, workers=2)
    next(batches)

    # Two batches queued per thread, and the one that replaced the batch handed back.
    assert pulled <= (2 * 2 + 1) * 2
    assert sum(n for _, n in batches) + 2 == 80
