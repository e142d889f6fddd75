"""Worker pools for file work (hashing, decoding, writing shards) that never touches the
database."""

from __future__ import annotations

import contextlib
import multiprocessing
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


@contextlib.contextmanager
def file_worker_pool(workers: int) -> Iterator[Any]:
    """A pool with ``imap`` and ``imap_unordered`` for ``workers`` workers.

    Forked processes normally. Inside a Celery prefork worker (a daemonic process, which may
    not start children) threads instead: Pillow's codecs, hashing and file copies release the
    GIL. The forked children inherit this process's database connections but never use them,
    and fork workers leave through os._exit, so nothing closes them under the parent (closing
    them here would break a caller's open transaction).
    """
    if workers <= 1:
        yield _InProcess()
        return
    if multiprocessing.current_process().daemon:
        with ThreadPool(workers) as threads:
            yield threads
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield pool
