"""Decoding and inference on every core.

``scored_batches`` is the bulk path: each of ``workers`` threads decodes a whole batch and then
runs the model on it with a single-threaded onnxruntime session, so every core alternates
decode and model on its own batch and no core waits for another (Pillow's decoders and
onnxruntime both release the GIL). Splitting one model run over the cores instead costs a
synchronisation per layer and leaves cores idle while decoding threads hold them.

Batches are small (``BATCH_SIZE``): the first layers' activations for 8 images at 224 px
(about 13 MB) fit in a shared 32 MB L3 cache, for 32 images (about 51 MB) they do not, so two
cores running the model at once compete for memory. Measured with ``bench/inference.py``, two
one-thread sessions side by side gave 1.84x one session's rate at batch 8 and 1.25x at batch 32
on a quiet machine; on a busy one the figures overlap (1.5-1.9x against 1.2-1.9x).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from django.db.models import QuerySet

T = TypeVar("T")
R = TypeVar("R")

BATCH_SIZE = 8


def decode_threads() -> int:
    return int(getattr(settings, "LOUPE_DECODE_THREADS", 0)) or os.cpu_count() or 1


def scored_batches(
    items: Iterable[T],
    load: Callable[[T], np.ndarray | None],
    score: Callable[[np.ndarray], R],
    *,
    batch_size: int,
    workers: int | None = None,
) -> Iterator[tuple[list[T], R]]:
    """(items, ``score`` of their stacked samples) per batch, in order; items whose ``load``
    returns None are left out, and batches with no sample left are skipped. ``score`` runs in
    the worker threads, so it must be thread-safe and single-threaded (see
    ``runtime.session_for(..., threads=1)``).

    ``items`` is read lazily, in the calling thread, a batch at a time as the cores need one:
    a generator paging through the database keeps every core busy from the first page to the
    last, with no pause between pages."""
    workers = workers or decode_threads()
    remaining = iter(items)
    upcoming = iter(lambda: list(islice(remaining, batch_size)), [])

    def work(chunk: Sequence[T]) -> tuple[list[T], R] | None:
        kept, samples = [], []
        for item in chunk:
            sample = load(item)
            if sample is not None:
                kept.append(item)
                samples.append(sample)
        return (kept, score(np.stack(samples))) if samples else None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[tuple[list[T], R] | None]] = deque()
        # One batch queued behind each busy thread keeps every core fed without holding more
        # than 2 x workers decoded batches in memory.
        for chunk in upcoming:
            pending.append(pool.submit(work, chunk))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            following = next(upcoming, None)
            if following is not None:
                pending.append(pool.submit(work, following))
            if result is not None:
                yield result


class LibraryWalk:
    """The rows of a queryset in primary-key pages, read lazily as a bulk run needs them (an
    index range scan per page, never the whole table in memory), with what the run has got
    through for its progress reports.

    A run hands the rows it wants scored to ``scored_batches`` through ``handed`` and reports
    each batch that comes back to ``settle``; rows a page holds but the run does not need are
    counted with ``passed``. ``settle`` returns True about once a page, after calling
    ``progress(done, total)``; ``finish`` makes the last call. ``total`` counts the queryset
    when the walk begins."""

    def __init__(
        self,
        rows: QuerySet[Any],
        *,
        fields: Sequence[str],
        chunk_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.rows = rows.order_by("pk")
        self.fields = fields
        self.chunk_size = chunk_size or settings.LOUPE_PROCESS_CHUNK
        self.progress = progress
        self.total = rows.count()
        self.seen = 0  # rows read
        self.done = 0  # rows scored, left out as unreadable, or passed
        self._reported = 0
        self._in_flight: deque[int] = deque()  # ids handed out, in order, not yet settled

    def pages(self) -> Iterator[list[Any]]:
        last_id = 0
        while page := list(self.rows.filter(pk__gt=last_id).only(*self.fields)[: self.chunk_size]):
            last_id = page[-1].pk
            self.seen += len(page)
            yield page

    def handed(self, rows: Iterable[Any]) -> Iterator[Any]:
        for row in rows:
            self._in_flight.append(row.pk)
            yield row

    def passed(self, count: int) -> None:
        self.done += count

    def settle(self, batch: Sequence[Any]) -> bool:
        """Count ``batch`` (and the unreadable rows handed out before its last) as done."""
        while self._in_flight and self._in_flight[0] <= batch[-1].pk:
            self._in_flight.popleft()
            self.done += 1
        if self.done - self._reported < self.chunk_size:
            return False
        self._reported = self.done
        if self.progress:
            self.progress(self.done, max(self.total, self.seen))
        return True

    def finish(self) -> None:
        if self.progress:
            self.progress(self.seen, max(self.total, self.seen))
