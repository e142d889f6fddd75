from __future__ import annotations

import billiard

from curation.parallel import file_worker_pool


def _square(value: int) -> int:
    return value * value


def _squares_in_a_pool(values: list[int]) -> list[int]:
    with file_worker_pool(2) as pool:
        return sorted(pool.imap_unordered(_square, values))


def test_a_file_worker_pool_runs_inside_a_celery_prefork_worker() -> None:
    # Celery's prefork workers are daemonic and may not fork children of their own: the
    # export and import pools must still work there (threads instead of processes).
    pool = billiard.Pool(1)
    try:
        assert pool.apply(_squares_in_a_pool, ([1, 2, 3],)) == [1, 4, 9]
    finally:
        pool.close()
        pool.join()


def test_a_file_worker_pool_keeps_the_order_with_imap() -> None:
    for workers in (1, 2):
        with file_worker_pool(workers) as pool:
            assert list(pool.imap(_square, range(20), chunksize=4)) == [i * i for i in range(20)]
