"""Worker pools for file work (hashing, decoding, writing shards) that never touches the
database."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import ThreadPool
from typing import Any


class _InProcess:
    """The pool interface, run in this process: one worker."""

    @staticmethod
    def imap(
        function: Callable[[Any], Any], items: Iterable[Any], chunksize: int = 1
    ) -> Iterator[Any]:
        return map(function, items)

    imap_unordered = imap


def _native_threads_running() -> bool:
    """Whether this process runs threads Python did not start (onnxruntime's, faiss's or BLAS's
    pools, once a model or an index was used here). Forking then can copy a lock such a thread
    holds into a child that waits on it forever, so the pool uses threads instead."""
    try:
        return len(os.listdir("/proc/self/task")) > threading.active_count()
    except OSError:  # no /proc: assume the worst only where it is known to happen
        return False


@contextlib.contextmanager
def file_worker_pool(workers: int) -> Iterator[Any]:
    """A pool with ``imap`` and ``imap_unordered`` for ``workers`` workers.

    Forked processes normally. Inside a Celery prefork worker (a daemonic process, which may
    not start children), or once native thread pools run in this process, threads instead:
    Pillow's codecs, hashing and file copies release the GIL. The forked children inherit this
    process's database connections but never use them, and fork workers leave through os._exit,
    so nothing closes them under the parent (closing them here would break a caller's open
    transaction).
    """
    if workers <= 1:
        yield _InProcess()
        return
    if multiprocessing.current_process().daemon or _native_threads_running():
        threads = ThreadPool(workers)
        try:
            yield threads
        finally:
            # Unlike processes, threads cannot be killed: wait for the tasks already running,
            # so a caller cleaning up after an error never races a writer.
            threads.terminate()
            threads.join()
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield pool
