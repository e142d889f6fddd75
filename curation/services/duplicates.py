"""Near-duplicate search over the library's pHashes and the groups it finds; their review is in
``curation.services.duplicate_review``.

Two images are near-duplicates when their 64-bit pHashes differ in at most ``max_distance``
bits. The default threshold is 8 bits:

* pHash (median-thresholded 8x8 DCT) sets half its bits, so distances between two hashes are
  almost always even: 8 admits the same pairs as 9;
* re-encoding, resizing, brightening, blurring, small watermarks, 2 % crops and 1.5° rotations
  of photographs land at 0-8 bits in our tests, while distinct photographs sit at 20 or more;
* the chance pairs of unrelated images grow fast with the threshold: for uniform 64-bit hashes
  P(d <= 8) is 30 times smaller than P(d <= 10), about 140 accidental pairs in a million
  images instead of about 4,000;
* with 3 parts, 8 bits means probing each part within 2 bits (254 buckets); 10 bits would
  need 3 (1,794 buckets), a full scan seven times slower.

imagededup's default of 10 suits small collections; ``LOUPE_DUPLICATE_MAX_DISTANCE`` or
``--max-distance`` changes it.

The second method compares embeddings (see ``inference.embeddings``): two images are
near-duplicates when the cosine similarity of their embeddings, less the library's mean
embedding (``inference.embeddings.centred``), is at least
``LOUPE_EMBEDDING_DUPLICATE_SIMILARITY`` (default 0.95). It finds edits pHash misses, because
a pHash compares the layout of the whole frame while the embedding describes what is in it:
with the installed backbone, an 8 % crop and a 7° rotation of a photograph (pHash 14 bits,
out of reach at 8) stay at 0.97-0.98, re-encodes and colour shifts at 0.99, different
photographs below 0.3. On the demo library 0.95 keeps 62 of its 72 edited photo copies with
their original and groups 26 of its 1,800 digit drawings (in groups of at most 5); 0.92 would
group 150 drawings, 0.90 nearly 270, in chains of up to 48.

Groups and components. Low-information images (small drawings, blank frames, documents)
chain: A is near B, B near C, and so on, so a connected component of the near-duplicate graph
can hold hundreds of images whose ends look nothing alike. A review group is therefore one
star of its component (``curation.hamming.star_groups``): every member is near the group's
centre, except an image whose neighbours all went to other centres, which joins the group of
its nearest neighbour. A component that is already tight is one group. The groups split from
one component share ``DuplicateGroup.component``, and a dataset build keeps a whole component
in one split, so no near-duplicate pair is ever split across train, val and test.

Each scan replaces the open groups of its own method only. An image already in an open group
of the other method stays there (one open group per image): the new groups are made of the
rest of its component (an image left with no near-duplicate outside the other method's groups
is left out), and the two components are merged into one, which keeps the split guarantee for
the pairs that cross them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from curation.hamming import (
    components,
    neighbour_values,
    pairs_within,
    part_values,
    part_widths,
    star_groups,
    to_unsigned,
)
from curation.models import (
    DuplicateGroup,
    DuplicateMember,
    DuplicateMethod,
    DuplicateStatus,
    ImageFeatures,
    ImageStatus,
)
from curation.services.hashing import PHASH_PARTS

DEFAULT_MAX_DISTANCE = 8
DEFAULT_MIN_SIMILARITY = 0.95
# SQLite accepts 32,766 parameters a statement; stay well below.
_MAX_PARAMETERS = 20_000


def default_max_distance() -> int:
    return int(getattr(settings, "LOUPE_DUPLICATE_MAX_DISTANCE", DEFAULT_MAX_DISTANCE))


def default_min_similarity() -> float:
    return float(getattr(settings, "LOUPE_EMBEDDING_DUPLICATE_SIMILARITY", DEFAULT_MIN_SIMILARITY))


def _distance(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


# --- Lookup of one hash (on import) ---------------------------------------------------------


def near_images(
    *, phash: int, max_distance: int, exclude_id: int | None = None
) -> list[tuple[int, int]]:
    """Active images whose pHash is within ``max_distance`` bits of ``phash`` (signed or
    unsigned), as ``(image id, distance)``, nearest first.

    Multi-index lookup in the database: each of the three indexed parts is probed for every
    value within ``max_distance // 3`` bits, so only a few hundred candidate rows come back
    even at a million images, and the full distance is checked here.
    """
    unsigned = phash & 0xFFFFFFFFFFFFFFFF
    radius = max_distance // PHASH_PARTS
    probes = [
        (f"phash_part{i}", neighbour_values(value, width, radius))
        for i, (value, width) in enumerate(
            zip(part_values(unsigned, PHASH_PARTS), part_widths(PHASH_PARTS), strict=True)
        )
    ]
    per_query = max(1, _MAX_PARAMETERS // PHASH_PARTS)
    found: dict[int, int] = {}
    for begin in range(0, max(len(values) for _, values in probes), per_query):
        condition = Q()
        for column, values in probes:
            if values[begin : begin + per_query]:
                condition |= Q(**{f"{column}__in": values[begin : begin + per_query]})
        rows = ImageFeatures.objects.filter(condition, image__status=ImageStatus.ACTIVE)
        for image_id, other in rows.values_list("image_id", "phash"):
            if image_id == exclude_id or other is None:
                continue
            distance = _distance(unsigned, other)
            if distance <= max_distance:
                found[image_id] = distance
    return sorted(found.items(), key=lambda item: (item[1], item[0]))


def _dismissed_partners(image_ids: Iterable[int]) -> dict[int, set[int]]:
    """For each image, the images it was judged "not duplicates" of."""
    memberships = DuplicateMember.objects.filter(
        group__status=DuplicateStatus.DISMISSED,
        group__members__image_id__in=list(image_ids),
    ).values_list("group_id", "image_id")
    by_group: dict[int, set[int]] = {}
    for group_id, image_id in memberships:
        by_group.setdefault(group_id, set()).add(image_id)
    partners: dict[int, set[int]] = {}
    for members in by_group.values():
        for image_id in members:
            partners.setdefault(image_id, set()).update(members - {image_id})
    return partners


def duplicates_check(*, image_ids: list[int], max_distance: int | None = None) -> int:
    """Check new images against the whole library and put each one with near-duplicates into
    an open group (see ``_join``). Returns how many of the images joined a group.
    Idempotent."""
    if max_distance is None:
        max_distance = default_max_distance()
    hashes: dict[int, int] = {
        image_id: phash
        for image_id, phash in ImageFeatures.objects.filter(
            image_id__in=image_ids, phash__isnull=False, image__status=ImageStatus.ACTIVE
        ).values_list("image_id", "phash")
        if phash is not None
    }
    joined = 0
    for image_id, phash in sorted(hashes.items()):
        neighbours = near_images(phash=phash, max_distance=max_distance, exclude_id=image_id)
        if not neighbours:
            continue
        dismissed = _dismissed_partners([image_id]).get(image_id, set())
        others = [(other, d) for other, d in neighbours if other not in dismissed]
        if not others:
            continue
        try:
            _join(image_id, phash, others, max_distance)
        except IntegrityError:  # another worker grouped one of them meanwhile: look again
            _join(image_id, phash, others, max_distance)
        joined += 1
    return joined


@transaction.atomic
def _join(image_id: int, phash: int, others: list[tuple[int, int]], max_distance: int) -> None:
    """Put ``image_id`` (pHash ``phash``) with its near-duplicates ``others`` (image id and
    distance, nearest first) into an open group, keeping groups tight around their centres:

    1. an image already in an open group stays there (its neighbours in no open group are
       checked on their own);
    2. else, when some neighbours are in no open group, it becomes the centre of a new group
       with them;
    3. else it joins the group of the nearest neighbour that is a group's centre;
    4. else it joins the group of its nearest neighbour when that group's centre is within
       twice the threshold; when it is not, that neighbour is itself far from its centre, and
       moves to a new group centred on the image.

    Open groups are never merged (that made chains of hundreds of images); the components of
    every group the image touches are, so a dataset build keeps every pair the image makes in
    one split.
    """
    ids = [other for other, _ in others]
    open_group_of = dict(
        DuplicateMember.objects.filter(image_id__in=[image_id, *ids], is_open=True).values_list(
            "image_id", "group_id"
        )
    )
    touched = {
        group.pk: group
        for group in DuplicateGroup.objects.select_for_update()
        .filter(pk__in=set(open_group_of.values()))
        .order_by("pk")
    }
    centred = {group.centre_id: group for group in touched.values() if group.centre_id}
    joining: list[int] = []
    if image_id in open_group_of:
        group = touched[open_group_of[image_id]]
    elif free := [other for other in ids if other not in open_group_of]:
        group = DuplicateGroup.objects.create(max_distance=max_distance, centre_id=image_id)
        joining = [image_id, *free]
    elif nearest_centre := next((other for other in ids if other in centred), None):
        group = centred[nearest_centre]
        joining = [image_id]
    else:
        nearest = ids[0]
        group = touched[open_group_of[nearest]]
        joining = [image_id]
        centre_hash = (
            ImageFeatures.objects.filter(image_id=group.centre_id)
            .values_list("phash", flat=True)
            .first()
            if group.centre_id
            else None
        )
        if centre_hash is not None and _distance(phash, centre_hash) > 2 * max_distance:
            DuplicateMember.objects.filter(group=group, image_id=nearest).delete()
            _refresh_group(group)
            group = DuplicateGroup.objects.create(
                max_distance=max_distance, centre_id=image_id, component=group.component_key
            )
            joining = [image_id, nearest]
    group.max_distance = max(group.max_distance, max_distance)
    keys = {other.component_key for other in touched.values()} | {group.component_key}
    component = min(keys)
    if group.component != component:
        group.component = component
        group.save(update_fields=["component"])
    if len(keys) > 1:
        # Every group of a component of several groups carries the key (NULL: alone).
        DuplicateGroup.objects.filter(
            Q(component__in=keys - {component}) | Q(component__isnull=True, pk__in=keys)
        ).update(component=component)
    DuplicateMember.objects.bulk_create(
        DuplicateMember(group=group, image_id=member) for member in joining
    )
    _refresh_group(group)


def _refresh_group(group: DuplicateGroup) -> None:
    """Recount the group and each member's distance to its nearest fellow member."""
    rows = list(
        DuplicateMember.objects.filter(group=group).values_list("pk", "image__features__phash")
    )
    hashes = [phash or 0 for _, phash in rows]
    updates = []
    for index, (pk, _) in enumerate(rows):
        nearest = min(
            (_distance(hashes[index], h) for j, h in enumerate(hashes) if j != index), default=0
        )
        updates.append(DuplicateMember(pk=pk, distance=nearest))
    DuplicateMember.objects.bulk_update(updates, ["distance"])
    group.size = len(rows)
    group.save(update_fields=["size", "max_distance"])


# --- Full scan -------------------------------------------------------------------------------


@dataclass
class ScanResult:
    images: int = 0
    pairs: int = 0
    # Review groups, and how many connected components they were split from.
    groups: list[list[int]] = field(default_factory=list)
    group_ids: list[int] = field(default_factory=list)
    components: int = 0
    largest_component: int = 0
    max_distance: int = DEFAULT_MAX_DISTANCE
    seconds_search: float = 0.0
    index: str = ""
    method: str = DuplicateMethod.PHASH
    min_similarity: float | None = None

    def as_dict(self) -> dict[str, object]:
        in_groups = sum(len(g) for g in self.groups)
        at = (
            f"cosine similarity {self.min_similarity:.2f} or more"
            if self.method == DuplicateMethod.EMBEDDING
            else f"{self.max_distance} bits"
        )
        largest = max((len(g) for g in self.groups), default=0)
        split = len(self.groups) - self.components
        chains = (
            f"; {self.components} component{'' if self.components == 1 else 's'}, the largest "
            f"of {self.largest_component} images, split into groups of at most {largest}"
            if split
            else ""
        )
        return {
            "method": self.method,
            "images": self.images,
            "pairs": self.pairs,
            "groups": len(self.groups),
            "images_in_groups": in_groups,
            "largest_group": largest,
            "components": self.components,
            "largest_component": self.largest_component,
            "max_distance": self.max_distance,
            "min_similarity": self.min_similarity,
            "seconds_search": round(self.seconds_search, 3),
            "index": self.index,
            "message": (
                f"{len(self.groups)} {self.method} duplicate group"
                f"{'' if len(self.groups) == 1 else 's'} ({in_groups} images) among "
                f"{self.images} images at {at}{chains}"
            ),
        }


def library_hashes() -> tuple[np.ndarray, np.ndarray]:
    """Ids and unsigned pHashes of every active image that has one, read in id order."""
    ids: list[int] = []
    hashes: list[int] = []
    rows = (
        ImageFeatures.objects.filter(image__status=ImageStatus.ACTIVE, phash__isnull=False)
        .order_by("image_id")
        .values_list("image_id", "phash")
    )
    for image_id, phash in rows.iterator(chunk_size=20_000):
        if phash is not None:  # excluded by the filter; narrows the type
            ids.append(image_id)
            hashes.append(phash)
    return np.array(ids, dtype=np.int64), to_unsigned(np.array(hashes, dtype=np.int64))


Neighbours = dict[int, dict[int, float]]


def _graph_from_pairs(
    left: np.ndarray, right: np.ndarray, nearness: np.ndarray
) -> tuple[int, Neighbours, list[list[int]]]:
    """The pairs (image ids; ``nearness``: smaller is nearer) not judged "not duplicates"
    before: how many, each image's neighbours, and the connected components."""
    pairs = list(zip(left.tolist(), right.tolist(), nearness.tolist(), strict=True))
    dismissed = _dismissed_partners({x for a, b, _ in pairs for x in (a, b)})
    pairs = [(a, b, near) for a, b, near in pairs if b not in dismissed.get(a, ())]
    neighbours: Neighbours = {}
    for a, b, near in pairs:
        neighbours.setdefault(a, {})[b] = near
        neighbours.setdefault(b, {})[a] = near
    found = components(
        np.array([a for a, _, _ in pairs], dtype=np.int64),
        np.array([b for _, b, _ in pairs], dtype=np.int64),
    )
    return len(pairs), neighbours, found


def duplicates_scan(
    *, max_distance: int | None = None, progress: Callable[[str], None] | None = None
) -> ScanResult:
    """Find every near-duplicate group among the active images and replace the open groups
    with them. Groups already reviewed stay as they are: trashed duplicates are no longer
    active, and images judged "not duplicates" are not grouped together again."""
    import time

    from curation.hamming import plan

    if max_distance is None:
        max_distance = default_max_distance()
    ids, hashes = library_hashes()
    if progress:
        progress(f"searching {len(ids)} hashes")
    started = time.perf_counter()
    left, right, distances = pairs_within(hashes, max_distance)
    seconds = time.perf_counter() - started
    pairs, neighbours, found = _graph_from_pairs(ids[left], ids[right], distances)
    result = ScanResult(
        images=len(ids),
        pairs=pairs,
        max_distance=max_distance,
        seconds_search=seconds,
        index=plan(len(ids), max_distance).describe(),
    )
    if progress:
        progress(f"storing the groups of {len(found)} components")
    _replace_open_groups(
        result,
        found,
        neighbours,
        dict(zip(ids.tolist(), hashes.tolist(), strict=True)),
        method=DuplicateMethod.PHASH,
        max_distance=max_distance,
    )
    return result


def duplicates_scan_embedding(
    *, min_similarity: float | None = None, progress: Callable[[str], None] | None = None
) -> ScanResult:
    """Find every group of active images whose embeddings are near-duplicates (cosine
    similarity at least ``min_similarity``) and replace the open embedding groups with them.
    Images with no embedding yet are not searched: compute embeddings first."""
    import time

    from inference.embeddings import embedding_pairs

    if min_similarity is None:
        min_similarity = default_min_similarity()
    if progress:
        progress("searching embeddings")
    started = time.perf_counter()
    searched, left, right, similarities = embedding_pairs(min_similarity=min_similarity)
    seconds = time.perf_counter() - started
    pairs, neighbours, found = _graph_from_pairs(left, right, -similarities)
    result = ScanResult(
        images=len(searched),
        pairs=pairs,
        max_distance=0,
        seconds_search=seconds,
        index=f"exact inner product, range search above {min_similarity:.2f}",
        method=DuplicateMethod.EMBEDDING,
        min_similarity=min_similarity,
    )
    if progress:
        progress(f"storing the groups of {len(found)} components")
    in_groups = [image_id for members in found for image_id in members]
    hashes: dict[int, int] = {}
    for begin in range(0, len(in_groups), _MAX_PARAMETERS):
        hashes.update(
            (image_id, phash)
            for image_id, phash in ImageFeatures.objects.filter(
                image_id__in=in_groups[begin : begin + _MAX_PARAMETERS], phash__isnull=False
            ).values_list("image_id", "phash")
            if phash is not None
        )
    _replace_open_groups(
        result, found, neighbours, hashes, method=DuplicateMethod.EMBEDDING, max_distance=0
    )
    return result


def duplicates_scan_method(
    *,
    method: str,
    max_distance: int | None = None,
    min_similarity: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ScanResult]:
    """The scans ``method`` names (``phash``, ``embedding`` or ``all``: pHash first), in
    order."""
    if method not in (*DuplicateMethod.values, "all"):
        raise ValueError(f"method must be phash, embedding or all, not {method!r}")
    results = []
    if method in (DuplicateMethod.PHASH, "all"):
        results.append(duplicates_scan(max_distance=max_distance, progress=progress))
    if method in (DuplicateMethod.EMBEDDING, "all"):
        results.append(duplicates_scan_embedding(min_similarity=min_similarity, progress=progress))
    return results


@transaction.atomic
def _replace_open_groups(
    result: ScanResult,
    found: list[list[int]],
    neighbours: Neighbours,
    hashes: dict[int, int],
    *,
    method: str,
    max_distance: int,
) -> None:
    """Replace the open groups of ``method`` with the review groups of the components
    ``found``, leaving out the images in open groups of another method, and record them in
    ``result``. ``hashes`` gives each member's distance in bits to its nearest fellow member
    (0 where hashes are missing).

    A component that holds images of another method's open groups is merged with those
    groups' components: the pairs between them are near-duplicates too."""
    DuplicateGroup.objects.filter(status=DuplicateStatus.OPEN, method=method).delete()
    taken: dict[int, int] = {}
    for image_id, group_id, component in DuplicateMember.objects.filter(is_open=True).values_list(
        "image_id", "group_id", "group__component"
    ):
        taken[image_id] = group_id if component is None else component
    groups: list[list[int]] = []
    centres: list[int] = []
    component_of: list[int] = []  # per new group, its position in ``found``
    # Edges between a component of this scan (-1 - position) and the keys of the other
    # method's components it touches.
    link_left: list[int] = []
    link_right: list[int] = []
    for position, nodes in enumerate(found):
        rest = {
            image_id: {
                other: near for other, near in neighbours[image_id].items() if other not in taken
            }
            for image_id in nodes
            if image_id not in taken
        }
        for centre, review_group in star_groups(rest):
            groups.append(review_group)
            centres.append(centre)
            component_of.append(position)
        for key in sorted({taken[image_id] for image_id in nodes if image_id in taken}):
            link_left.append(-1 - position)
            link_right.append(key)
    created = DuplicateGroup.objects.bulk_create(
        (
            DuplicateGroup(
                method=method, max_distance=max_distance, size=len(members), centre_id=centre
            )
            for members, centre in zip(groups, centres, strict=True)
        ),
        batch_size=2000,
    )
    # Each component's key is the id of its first group, or the smallest key it merges with.
    key_of: dict[int, int] = {}
    for group, position in zip(created, component_of, strict=True):
        key_of.setdefault(-1 - position, group.pk)
    merged_into: dict[int, int] = {}
    for joined in components(
        np.array(link_left, dtype=np.int64), np.array(link_right, dtype=np.int64)
    ):
        key = min(key_of.get(node, node) for node in joined if node >= 0 or node in key_of)
        for node in joined:
            if node >= 0 and node != key:
                merged_into[node] = key
            elif node < 0:
                key_of[node] = key
    for group, position in zip(created, component_of, strict=True):
        group.component = key_of[-1 - position]
    DuplicateGroup.objects.bulk_update(created, ["component"], batch_size=2000)
    by_key: dict[int, list[int]] = {}
    for old, key in merged_into.items():
        by_key.setdefault(key, []).append(old)
    for key, olds in by_key.items():
        DuplicateGroup.objects.filter(
            Q(component__in=olds) | Q(component__isnull=True, pk__in=[key, *olds])
        ).update(component=key)

    members = []
    for group, image_ids in zip(created, groups, strict=True):
        for image_id in image_ids:
            nearest = min(
                (
                    _distance(hashes[image_id], hashes[other])
                    for other in image_ids
                    if other != image_id and image_id in hashes and other in hashes
                ),
                default=0,
            )
            members.append(DuplicateMember(group=group, image_id=image_id, distance=nearest))
    DuplicateMember.objects.bulk_create(members, batch_size=2000)
    result.groups = groups
    result.group_ids = [group.pk for group in created]
    result.components = len(set(component_of))
    result.largest_component = max((len(found[p]) for p in component_of), default=0)
