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

import heapq
from collections.abc import Iterator
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


def flip_masks(width: int, radius: int) -> list[int]:
    """Every ``width``-bit mask with at most ``radius`` bits set, 0 first."""
    masks = [0]
    for r in range(1, radius + 1):
        for bits in combinations(range(width), r):
            mask = 0
            for bit in bits:
                mask |= 1 << bit
            masks.append(mask)
    return masks


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
    found_left: list[I64] = []
    found_right: list[I64] = []
    shift = 64
    for width in part_widths(parts):
        shift -= width
        keys = ((hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int32)
        for left, right in _part_pairs(hashes, keys, width, radius, max_distance):
            found_left.append(left)
            found_right.append(right)
    if not found_left:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.uint8)
    left = np.concatenate(found_left)
    right = np.concatenate(found_right)
    low, high = np.minimum(left, right), np.maximum(left, right)
    # The same pair is usually found through more than one part.
    unique = np.unique(low * n + high)
    low, high = unique // n, unique % n
    return low, high, popcount(hashes[low] ^ hashes[high])


def _part_pairs(
    hashes: U64, keys: npt.NDArray[np.int32], width: int, radius: int, max_distance: int
) -> Iterator[tuple[I64, I64]]:
    """Pairs within ``max_distance`` whose keys (one part) differ in at most ``radius`` bits.

    Everything runs on the hashes sorted by key: the probed keys then rise in long runs, so
    the bucket tables and the hashes are read almost in order instead of at random, which is
    what makes a million hashes fast. Positions are mapped back only for the pairs kept.
    """
    order = np.argsort(keys, kind="stable").astype(np.int32)
    sorted_keys = keys[order]
    sorted_hashes = hashes[order]
    counts = np.bincount(keys, minlength=1 << width).astype(np.int32)
    starts = (np.cumsum(counts, dtype=np.int64) - counts).astype(np.int32)
    # A byte per bucket (4 times smaller than the counts) for the first, most frequent test.
    occupied = (counts > 0).astype(np.uint8)

    def keep(left: npt.NDArray[np.int32], right: npt.NDArray[np.int32]) -> tuple[I64, I64]:
        close = popcount(sorted_hashes[left] ^ sorted_hashes[right]) <= max_distance
        return order[left[close]].astype(np.int64), order[right[close]].astype(np.int64)

    # Same bucket: every pair inside a bucket of two or more.
    shared = np.flatnonzero(counts >= 2)
    for size in np.unique(counts[shared]):
        buckets = shared[counts[shared] == size]
        members = starts[buckets][:, None] + np.arange(size, dtype=np.int32)
        a, b = np.triu_indices(int(size), k=1)
        yield keep(members[:, a].ravel(), members[:, b].ravel())

    masks_by_top: dict[int, list[int]] = {}
    for mask in flip_masks(width, radius)[1:]:
        masks_by_top.setdefault(mask.bit_length() - 1, []).append(mask)
    for top, masks in masks_by_top.items():
        # Probe only from the side whose top flipped bit is 0, so each pair comes up once.
        side = np.flatnonzero((sorted_keys & (1 << top)) == 0).astype(np.int32)
        side_keys = sorted_keys[side]
        for mask in masks:
            probe = side_keys ^ np.int32(mask)
            hit = np.flatnonzero(np.take(occupied, probe))
            if len(hit) == 0:
                continue
            hit_keys = probe[hit]
            yield keep(*_bucket_members(side[hit], starts[hit_keys], counts[hit_keys]))


def _bucket_members(
    left: npt.NDArray[np.int32], first: npt.NDArray[np.int32], sizes: npt.NDArray[np.int32]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Each ``left[i]`` paired with every entry of its bucket: the ``sizes[i]`` sorted
    positions from ``first[i]`` on."""
    if bool((sizes == 1).all()):
        return left, first
    run_starts = np.cumsum(sizes) - sizes
    within = np.arange(int(sizes.sum()), dtype=np.int32) - np.repeat(run_starts, sizes)
    return np.repeat(left, sizes), np.repeat(first, sizes) + within


def pairs_between(
    queries: U64, base: U64, max_distance: int, *, parts: int = 3
) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
    """All pairs ``(q, b)`` of a position in ``queries`` and one in ``base`` within
    ``max_distance`` bits, with their distances; sorted by ``(q, b)``.

    The same multi-index search as ``pairs_within``, with the buckets built on ``base`` only:
    a few queries against a large base cost a few bucket look-ups each, and many queries
    (the probe hashes of a whole library) against the library cost what a self-join costs per
    query.
    """
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    base = np.ascontiguousarray(base, dtype=np.uint64)
    radius = max_distance // parts
    found_query: list[I64] = []
    found_base: list[I64] = []
    shift = 64
    for width in part_widths(parts):
        shift -= width
        mask_bits = np.uint64((1 << width) - 1)
        base_keys = ((base >> np.uint64(shift)) & mask_bits).astype(np.int32)
        query_keys = ((queries >> np.uint64(shift)) & mask_bits).astype(np.int32)
        order = np.argsort(base_keys, kind="stable").astype(np.int32)
        sorted_base = base[order]
        counts = np.bincount(base_keys, minlength=1 << width).astype(np.int32)
        starts = (np.cumsum(counts, dtype=np.int64) - counts).astype(np.int32)
        occupied = (counts > 0).astype(np.uint8)
        for mask in flip_masks(width, radius):
            probe = query_keys ^ np.int32(mask)
            hit = np.flatnonzero(np.take(occupied, probe)).astype(np.int32)
            if len(hit) == 0:
                continue
            left, right = _bucket_members(hit, starts[probe[hit]], counts[probe[hit]])
            close = popcount(queries[left] ^ sorted_base[right]) <= max_distance
            found_query.append(left[close].astype(np.int64))
            found_base.append(order[right[close]].astype(np.int64))
    if not found_query:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.uint8)
    unique = np.unique(np.concatenate(found_query) * len(base) + np.concatenate(found_base))
    query_positions, base_positions = unique // len(base), unique % len(base)
    return (
        query_positions,
        base_positions,
        popcount(queries[query_positions] ^ base[base_positions]),
    )


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
