"""Near neighbours in Hamming space for 64-bit perceptual hashes, in numpy.

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast Exact Search in Hamming Space with
Multi-Index Hashing", 2014): cut each 64-bit hash into ``m`` parts. Two hashes within ``k``
bits differ, by the pigeonhole principle, in at most ``floor(k / m)`` bits on at least one
part. So for every part we only compare hashes whose parts are that close, found by bucket
look-ups of every part value within ``floor(k / m)`` bits, and check the full distance of
those candidates alone. The result is exact: the same pairs a brute-force comparison finds.

A BK-tree, the other textbook index for Hamming space, visits most of its nodes at the
thresholds near-duplicate search needs (k around 8 of 64 bits) and ends up slower than a
vectorised brute force; multi-index hashing does not degrade that way.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

# Widest part the dense bucket tables allow (2**22 int32 entries: 16 MiB per table).
MAX_PART_BITS = 22


def popcount(values: U64) -> npt.NDArray[np.uint8]:
    """Set bits of each 64-bit value."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)  # type: ignore[no-any-return]
    as_bytes = values.view(np.uint8).reshape(*values.shape, 8)
    return _BYTE_POPCOUNT[as_bytes].sum(axis=-1, dtype=np.uint8)  # type: ignore[no-any-return]


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def to_unsigned(signed: npt.ArrayLike) -> U64:
    """Hashes as stored (signed 64-bit) to the unsigned bit patterns they stand for."""
    return np.asarray(signed, dtype=np.int64).view(np.uint64)


def signed_of(value: int) -> int:
    """An unsigned 64-bit hash as the signed integer a BigInteger column holds."""
    return value - (1 << 64) if value >= (1 << 63) else value


def part_widths(parts: int) -> list[int]:
    """Bits per part, widest first: 3 parts are 22 + 21 + 21."""
    base, extra = divmod(64, parts)
    return [base + 1 if i < extra else base for i in range(parts)]


def part_values(value: int, parts: int) -> list[int]:
    """The parts of an unsigned 64-bit value, most significant first."""
    out = []
    shift = 64
    for width in part_widths(parts):
        shift -= width
        out.append((value >> shift) & ((1 << width) - 1))
    return out


@functools.cache
def flip_masks(width: int, radius: int) -> tuple[int, ...]:
    """Every ``width``-bit mask with at most ``radius`` bits set, 0 first."""
    masks = [0]
    for r in range(1, radius + 1):
        for bits in combinations(range(width), r):
            mask = 0
            for bit in bits:
                mask |= 1 << bit
            masks.append(mask)
    return tuple(masks)


def neighbour_values(value: int, width: int, radius: int) -> list[int]:
    return [value ^ mask for mask in flip_masks(width, radius)]


@dataclass(frozen=True)
class IndexPlan:
    parts: int
    radius: int
    probes_per_part: int
    expected_candidates: float

    def describe(self) -> str:
        widths = "+".join(str(w) for w in part_widths(self.parts))
        return (
            f"multi-index hashing, {self.parts} parts ({widths} bits), each probed within "
            f"{self.radius} bits ({self.probes_per_part} bucket look-ups per hash and part); "
            f"about {self.expected_candidates:,.0f} candidate pairs expected for uniform hashes"
        )


def plan(n: int, max_distance: int) -> IndexPlan:
    """Pick the number of parts with the least estimated work for ``n`` hashes: look-ups grow
    with the probes per part, candidate checks with the pairs sharing a probed bucket."""
    best: tuple[float, IndexPlan] | None = None
    for parts in range(3, 9):
        widths = part_widths(parts)
        if widths[0] > MAX_PART_BITS:
            continue
        radius = max_distance // parts
        probes = [sum(comb(w, i) for i in range(radius + 1)) for w in widths]
        lookups = n * sum(probes)
        candidates = sum(n * n / 2 * p / (1 << w) for p, w in zip(probes, widths, strict=True))
        cost = lookups + 4 * candidates
        candidate_plan = IndexPlan(parts, radius, max(probes), candidates)
        if best is None or cost < best[0]:
            best = (cost, candidate_plan)
    assert best is not None
    return best[1]


def pairs_within(
    hashes: U64, max_distance: int, *, parts: int | None = None
) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
    """All pairs ``(i, j)``, ``i < j``, of positions in ``hashes`` within ``max_distance`` bits,
    with their distances; sorted by ``(i, j)``."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if parts is None:
        parts = plan(n, max_distance).parts
    radius = max_distance // parts

    def searched(buckets: _Buckets, begin: int, end: int) -> tuple[I64, I64]:
        return _probe_within(buckets, begin, end, radius, max_distance)

    found_left, found_right = _each_part(hashes, hashes, parts, searched, within=True)
    if not len(found_left):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.uint8)
    low, high = np.minimum(found_left, found_right), np.maximum(found_left, found_right)
    # The same pair is usually found through more than one part.
    unique = np.unique(low * n + high)
    low, high = unique // n, unique % n
    return low, high, popcount(hashes[low] ^ hashes[high])


def pairs_between(
    queries: U64, base: U64, max_distance: int, *, parts: int = 3
) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
    """All pairs ``(q, b)`` of a position in ``queries`` and one in ``base`` within
    ``max_distance`` bits, with their distances; sorted by ``(q, b)``.

    The same multi-index search as ``pairs_within``, with the buckets built on the larger
    side and probed from the smaller one: the probe hashes of a whole library (seven per
    image) against the library cost a seventh of the bucket look-ups the other way round,
    and the candidate pairs (those sharing a probed bucket) are the same in number.
    """
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    base = np.ascontiguousarray(base, dtype=np.uint64)
    if not len(queries) or not len(base):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.uint8)
    radius = max_distance // parts
    swap = len(queries) > len(base)
    table, probing = (queries, base) if swap else (base, queries)

    def searched(buckets: _Buckets, begin: int, end: int) -> tuple[I64, I64]:
        return _probe_between(buckets, begin, end, radius, max_distance)

    found_table, found_probing = _each_part(table, probing, parts, searched, within=False)
    found_query, found_base = (found_table, found_probing) if swap else (found_probing, found_table)
    if not len(found_query):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.uint8)
    unique = np.unique(found_query * len(base) + found_base)
    query_positions, base_positions = unique // len(base), unique % len(base)
    return (
        query_positions,
        base_positions,
        popcount(queries[query_positions] ^ base[base_positions]),
    )


# --- The search itself -------------------------------------------------------------------------
#
# Everything runs on hashes sorted by one part's key. The probing side is cut into blocks of
# ``_BLOCK`` hashes; for each block and each flip mask, the probed keys ``key ^ mask`` of
# sorted keys rise in long runs, so the bucket table and the sorted hashes are read almost in
# order and the block stays in cache. Blocks are searched on a pool of threads (numpy
# releases the GIL in the array operations that make up the search), and positions are
# mapped back only for the pairs kept.

_BLOCK = 1 << 15
# Candidate pairs expanded at once: bounds the memory a block takes where buckets are large
# (many images sharing one part of their hash).
_MAX_EXPANDED = 1 << 22


def search_threads() -> int:
    """Threads a search uses: the CPUs this process may run on (at most 8)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


@dataclass(frozen=True)
class _Buckets:
    """One part of a search: the table side sorted by that part's key (bucket ``k`` holds
    sorted positions ``starts[k]`` to ``starts[k + 1]``), and the probing side sorted the
    same way. ``*_order`` maps a sorted position back to the input's."""

    width: int
    starts: npt.NDArray[np.int32]
    table_values: U64
    table_order: npt.NDArray[np.int32]
    keys: npt.NDArray[np.int32]
    values: U64
    order: npt.NDArray[np.int32]
    sparse: bool


def _sorted_by_key(
    hashes: U64, shift: int, width: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    keys = ((hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int32)
    order = np.argsort(keys, kind="stable").astype(np.int32)
    return keys, order


def _buckets(table: U64, probing: U64, shift: int, width: int, *, within: bool) -> _Buckets:
    keys, order = _sorted_by_key(table, shift, width)
    starts = np.zeros((1 << width) + 1, dtype=np.int32)
    np.cumsum(np.bincount(keys, minlength=1 << width), out=starts[1:], dtype=np.int32)
    table_values = table[order]
    if within:
        probe_keys, probe_order, probe_values = keys[order], order, table_values
    else:
        probe_keys, probe_order = _sorted_by_key(probing, shift, width)
        probe_keys = probe_keys[probe_order]
        probe_values = probing[probe_order]
    return _Buckets(
        width=width,
        starts=starts,
        table_values=table_values,
        table_order=order,
        keys=probe_keys,
        values=probe_values,
        order=probe_order,
        # Fewer hashes than buckets: most probes find an empty bucket, dropped first.
        sparse=len(table) < (1 << width),
    )


def _each_part(
    table: U64,
    probing: U64,
    parts: int,
    searched: Callable[[_Buckets, int, int], tuple[I64, I64]],
    *,
    within: bool,
) -> tuple[I64, I64]:
    """Run ``searched(buckets, begin, end)`` over blocks of the probing side, part by part,
    on a thread pool; returns the pairs found as input positions ``(table, probing)``. The
    next part's buckets are built while the blocks of one part are searched."""
    shifts = []
    shift = 64
    for width in part_widths(parts):
        shift -= width
        shifts.append((shift, width))
    found_table: list[I64] = []
    found_probing: list[I64] = []
    with ThreadPoolExecutor(max_workers=search_threads()) as pool:

        def build(part: int) -> Future[_Buckets]:
            shift, width = shifts[part]
            return pool.submit(_buckets, table, probing, shift, width, within=within)

        upcoming = build(0)
        for part in range(parts):
            buckets = upcoming.result()
            if part + 1 < parts:
                upcoming = build(part + 1)
            size = len(buckets.keys)
            blocks = [
                pool.submit(searched, buckets, begin, min(begin + _BLOCK, size))
                for begin in range(0, size, _BLOCK)
            ]
            for block in blocks:
                table_positions, probing_positions = block.result()
                found_table.append(table_positions)
                found_probing.append(probing_positions)
            del buckets, blocks
    if not found_table:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(found_table), np.concatenate(found_probing)


def _in_buckets(
    buckets: _Buckets, probe: npt.NDArray[np.int32]
) -> tuple[npt.NDArray[np.intp] | None, npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """The buckets ``probe`` names, as (rows of ``probe`` kept, or None for all; first
    sorted table position; size). Sparse tables drop the empty buckets here."""
    start = buckets.starts[probe]
    count = buckets.starts[probe + 1] - start
    if not buckets.sparse:
        return None, start, count
    rows = np.flatnonzero(count)
    return rows, start[rows], count[rows]


def _close_pairs(
    table_values: U64,
    values: U64,
    start: npt.NDArray[np.int32],
    count: npt.NDArray[np.int32],
    max_distance: int,
) -> tuple[npt.NDArray[np.intp], I64]:
    """Compare each of ``values`` with the ``count`` sorted table hashes from ``start`` on;
    the pairs within ``max_distance`` as (index into ``values``, sorted table position)."""
    ends = np.cumsum(count, dtype=np.int64)
    total = int(ends[-1]) if len(ends) else 0
    if total == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64)
    found_rows: list[npt.NDArray[np.intp]] = []
    found_positions: list[I64] = []
    # Pieces of about _MAX_EXPANDED candidates (a single large bucket stays whole).
    cuts = np.searchsorted(ends, np.arange(_MAX_EXPANDED, total, _MAX_EXPANDED), side="right")
    edges = [0, *sorted(set(cuts.tolist()) - {0, len(ends)}), len(ends)]
    for first, last in itertools.pairwise(edges):
        piece_count = count[first:last]
        piece_ends = ends[first:last] - (ends[first - 1] if first else 0)
        # Candidate k of row r is the table hash at start[r] + k - (first candidate of r).
        first_of_row = start[first:last] - (piece_ends - piece_count)
        positions: I64 = np.repeat(first_of_row.astype(np.int64), piece_count)
        positions += np.arange(int(piece_ends[-1]), dtype=np.int64)
        differing = np.repeat(values[first:last], piece_count)
        differing ^= table_values[positions]
        close = np.flatnonzero(popcount(differing) <= max_distance)
        if len(close):
            found_rows.append(np.searchsorted(piece_ends, close, side="right") + first)
            found_positions.append(positions[close])
    if not found_rows:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64)
    return np.concatenate(found_rows), np.concatenate(found_positions)


def _probe_between(
    buckets: _Buckets, begin: int, end: int, radius: int, max_distance: int
) -> tuple[I64, I64]:
    keys = buckets.keys[begin:end]
    values = buckets.values[begin:end]
    found_table: list[I64] = []
    found_probing: list[I64] = []
    for mask in flip_masks(buckets.width, radius):
        rows, start, count = _in_buckets(buckets, keys ^ np.int32(mask))
        row, position = _close_pairs(
            buckets.table_values,
            values if rows is None else values[rows],
            start,
            count,
            max_distance,
        )
        if len(row):
            row = row if rows is None else rows[row]
            found_table.append(buckets.table_order[position].astype(np.int64))
            found_probing.append(buckets.order[row + begin].astype(np.int64))
    return _joined(found_table), _joined(found_probing)


def _probe_within(
    buckets: _Buckets, begin: int, end: int, radius: int, max_distance: int
) -> tuple[I64, I64]:
    """Pairs of the self-join found from ``[begin, end)`` of the sorted hashes."""
    keys = buckets.keys[begin:end]
    values = buckets.values[begin:end]
    found_left: list[I64] = []
    found_right: list[I64] = []
    # Same bucket: each hash against the later hashes of its bucket.
    position_of = np.arange(begin, end, dtype=np.int32)
    later = buckets.starts[keys + 1] - 1 - position_of
    rows = np.flatnonzero(later)
    if len(rows):
        row, position = _close_pairs(
            buckets.table_values, values[rows], position_of[rows] + 1, later[rows], max_distance
        )
        if len(row):
            found_left.append(buckets.order[rows[row] + begin].astype(np.int64))
            found_right.append(buckets.table_order[position].astype(np.int64))
    masks_by_top: dict[int, list[int]] = {}
    for mask in flip_masks(buckets.width, radius)[1:]:
        masks_by_top.setdefault(mask.bit_length() - 1, []).append(mask)
    for top, masks in masks_by_top.items():
        # Probe only from the side whose top flipped bit is 0, so each pair comes up once.
        side = np.flatnonzero((keys & (1 << top)) == 0)
        side_keys, side_values = keys[side], values[side]
        for mask in masks:
            kept, start, count = _in_buckets(buckets, side_keys ^ np.int32(mask))
            row, position = _close_pairs(
                buckets.table_values,
                side_values if kept is None else side_values[kept],
                start,
                count,
                max_distance,
            )
            if len(row):
                row = side[row if kept is None else kept[row]]
                found_left.append(buckets.order[row + begin].astype(np.int64))
                found_right.append(buckets.table_order[position].astype(np.int64))
    return _joined(found_left), _joined(found_right)


def _joined(arrays: list[I64]) -> I64:
    return np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)


def brute_force_pairs(
    hashes: U64, max_distance: int, *, rows: npt.NDArray[np.int64] | None = None, block: int = 512
) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
    """The reference: compare blocks of rows against every later hash (``i < j``). With
    ``rows``, only pairs whose smaller position is in ``rows``."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    out_left: list[I64] = []
    out_right: list[I64] = []
    for begin in range(0, len(rows), block):
        chunk = rows[begin : begin + block]
        # Only later hashes can pair with the block's rows (i < j): the upper triangle.
        first = int(chunk.min())
        distance = popcount(hashes[chunk][:, None] ^ hashes[None, first:])
        row_index, col = np.nonzero(distance <= max_distance)
        left = chunk[row_index]
        right = col.astype(np.int64) + first
        keep = right > left
        out_left.append(left[keep])
        out_right.append(right[keep])
    left = np.concatenate(out_left) if out_left else np.empty(0, dtype=np.int64)
    right = np.concatenate(out_right) if out_right else np.empty(0, dtype=np.int64)
    order = np.lexsort((right, left))
    left, right = left[order], right[order]
    return left, right, popcount(hashes[left] ^ hashes[right])


def components(left: I64, right: I64) -> list[list[int]]:
    """Connected components (union-find) of the graph with edges ``left[i] - right[i]``; only
    components of two or more, each sorted, largest first."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for node in set(parent) | set(parent.values()):
        groups.setdefault(find(node), []).append(node)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def star_groups(neighbours: dict[int, dict[int, float]]) -> list[tuple[int, list[int]]]:
    """Split one connected graph into review groups by star clustering.

    ``neighbours`` maps each node to its neighbours and their distance (smaller is nearer).
    Repeatedly the unassigned node with the most unassigned neighbours (ties: the smaller id)
    becomes a centre and takes those neighbours into its group, so every member of a group
    is a neighbour of its centre. A node whose neighbours were all taken by other centres
    joins the group of its nearest neighbour (ties: the smaller id). Nodes without neighbours
    are left out. Returns ``(centre, sorted members)`` in the order the centres were picked.
    """
    unassigned = {node for node, near in neighbours.items() if near}
    degree = {node: len(neighbours[node]) for node in unassigned}
    # Lazy max-heap on (-degree, id): an entry is stale once its degree has dropped.
    heap = [(-count, node) for node, count in degree.items()]
    heapq.heapify(heap)
    group_of: dict[int, int] = {}
    groups: list[list[int]] = []
    alone: list[int] = []
    while heap:
        negative, centre = heapq.heappop(heap)
        if centre not in unassigned or -negative != degree[centre]:
            continue
        unassigned.discard(centre)
        if degree[centre] == 0:
            alone.append(centre)
            continue
        members = [centre, *(n for n in neighbours[centre] if n in unassigned)]
        for member in members[1:]:
            unassigned.discard(member)
        for member in members:
            group_of[member] = len(groups)
            for other in neighbours[member]:
                if other in unassigned:
                    degree[other] -= 1
                    heapq.heappush(heap, (-degree[other], other))
        groups.append(members)
    for node in alone:
        nearest = min(
            (n for n in neighbours[node] if n in group_of),
            key=lambda n: (neighbours[node][n], n),
        )
        groups[group_of[nearest]].append(node)
    return [(group[0], sorted(group)) for group in groups]
