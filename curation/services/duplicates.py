"""Near-duplicate search over the library's pHashes, the groups it finds, and their review.

Two images are near-duplicates when their 64-bit pHashes differ in at most ``max_distance``
bits; a group is a connected component of that graph. The default threshold is 8 bits:

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

Each scan replaces the open groups of its own method only. An image already in an open group
of the other method stays there (one open group per image): the new group is made of the rest
of its component, and is left out when fewer than two images remain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from curation.hamming import (
    components,
    neighbour_values,
    pairs_within,
    part_values,
    part_widths,
    to_unsigned,
)
from curation.models import (
    DuplicateGroup,
    DuplicateMember,
    DuplicateMethod,
    DuplicateStatus,
    Image,
    ImageFeatures,
    ImageStatus,
    LabelReason,
    Source,
)
from curation.services.hashing import PHASH_PARTS
from curation.services.images import ImageStateError, image_relabel, image_trash

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
    an open group (joining, or merging, the groups its neighbours are in). Returns how many of
    the images joined a group. Idempotent."""
    if max_distance is None:
        max_distance = default_max_distance()
    hashes = dict(
        ImageFeatures.objects.filter(
            image_id__in=image_ids, phash__isnull=False, image__status=ImageStatus.ACTIVE
        ).values_list("image_id", "phash")
    )
    joined = 0
    for image_id, phash in sorted(hashes.items()):
        neighbours = near_images(phash=phash, max_distance=max_distance, exclude_id=image_id)
        if not neighbours:
            continue
        dismissed = _dismissed_partners([image_id]).get(image_id, set())
        others = [other for other, _ in neighbours if other not in dismissed]
        if not others:
            continue
        try:
            _join(image_id, others, max_distance)
        except IntegrityError:  # another worker grouped one of them meanwhile: look again
            _join(image_id, others, max_distance)
        joined += 1
    return joined


@transaction.atomic
def _join(image_id: int, others: list[int], max_distance: int) -> None:
    members = {image_id, *others}
    open_groups = sorted(
        set(
            DuplicateMember.objects.filter(image_id__in=members, is_open=True).values_list(
                "group_id", flat=True
            )
        )
    )
    if open_groups:
        group = DuplicateGroup.objects.select_for_update().get(pk=open_groups[0])
        # Merging: the members of the other groups move into the first one.
        DuplicateMember.objects.filter(group_id__in=open_groups[1:]).update(group=group)
        DuplicateGroup.objects.filter(pk__in=open_groups[1:]).delete()
        group.max_distance = max(group.max_distance, max_distance)
    else:
        group = DuplicateGroup.objects.create(max_distance=max_distance)
    present = set(DuplicateMember.objects.filter(group=group).values_list("image_id", flat=True))
    DuplicateMember.objects.bulk_create(
        DuplicateMember(group=group, image_id=member) for member in sorted(members - present)
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
    groups: list[list[int]] = field(default_factory=list)
    group_ids: list[int] = field(default_factory=list)
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
        return {
            "method": self.method,
            "images": self.images,
            "pairs": self.pairs,
            "groups": len(self.groups),
            "images_in_groups": in_groups,
            "max_distance": self.max_distance,
            "min_similarity": self.min_similarity,
            "seconds_search": round(self.seconds_search, 3),
            "index": self.index,
            "message": (
                f"{len(self.groups)} {self.method} duplicate group"
                f"{'' if len(self.groups) == 1 else 's'} ({in_groups} images) among "
                f"{self.images} images at {at}"
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
        ids.append(image_id)
        hashes.append(phash)
    return np.array(ids, dtype=np.int64), to_unsigned(np.array(hashes, dtype=np.int64))


def _groups_from_pairs(
    left: np.ndarray, right: np.ndarray
) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """The pairs (image ids) not judged "not duplicates" before, and their connected
    components."""
    pairs = list(zip(left.tolist(), right.tolist(), strict=True))
    dismissed = _dismissed_partners({x for pair in pairs for x in pair})
    pairs = [(a, b) for a, b in pairs if b not in dismissed.get(a, ())]
    groups = components(
        np.array([a for a, _ in pairs], dtype=np.int64),
        np.array([b for _, b in pairs], dtype=np.int64),
    )
    return pairs, groups


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
    left, right, _ = pairs_within(hashes, max_distance)
    seconds = time.perf_counter() - started
    pairs, groups = _groups_from_pairs(ids[left], ids[right])
    result = ScanResult(
        images=len(ids),
        pairs=len(pairs),
        groups=groups,
        max_distance=max_distance,
        seconds_search=seconds,
        index=plan(len(ids), max_distance).describe(),
    )
    if progress:
        progress(f"storing {len(groups)} groups")
    result.group_ids, result.groups = _replace_open_groups(
        groups,
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
    searched, left, right, _ = embedding_pairs(min_similarity=min_similarity)
    seconds = time.perf_counter() - started
    pairs, groups = _groups_from_pairs(left, right)
    result = ScanResult(
        images=len(searched),
        pairs=len(pairs),
        groups=groups,
        max_distance=0,
        seconds_search=seconds,
        index=f"exact inner product, range search above {min_similarity:.2f}",
        method=DuplicateMethod.EMBEDDING,
        min_similarity=min_similarity,
    )
    if progress:
        progress(f"storing {len(groups)} groups")
    in_groups = [image_id for members in groups for image_id in members]
    hashes: dict[int, int] = {
        image_id: phash
        for image_id, phash in ImageFeatures.objects.filter(
            image_id__in=in_groups, phash__isnull=False
        ).values_list("image_id", "phash")
        if phash is not None
    }
    result.group_ids, result.groups = _replace_open_groups(
        groups, hashes, method=DuplicateMethod.EMBEDDING, max_distance=0
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
    groups: list[list[int]], hashes: dict[int, int], *, method: str, max_distance: int
) -> tuple[list[int], list[list[int]]]:
    """Replace the open groups of ``method`` with ``groups``, leaving out the images in open
    groups of another method. Returns the new groups' ids and members. ``hashes`` gives each
    member's distance in bits to its nearest fellow member (0 where hashes are missing)."""
    DuplicateGroup.objects.filter(status=DuplicateStatus.OPEN, method=method).delete()
    taken = set(DuplicateMember.objects.filter(is_open=True).values_list("image_id", flat=True))
    groups = [kept for members in groups if len(kept := [i for i in members if i not in taken]) > 1]
    created = DuplicateGroup.objects.bulk_create(
        DuplicateGroup(method=method, max_distance=max_distance, size=len(members))
        for members in groups
    )
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
    return [group.pk for group in created], groups


# --- Review ----------------------------------------------------------------------------------

_SOURCE_RANK = {Source.REAL: 2, Source.STAGED: 1, Source.SYNTHETIC: 0}


def keeper_rank(image: Image) -> tuple[float, ...]:
    """Higher is a better keeper: highest resolution, then sharpest (within 10 %, which is
    noise), then real over staged over synthetic, then labelled over unlabelled, then oldest.
    ``image`` needs ``features`` and ``subclass`` loaded."""
    features = getattr(image, "features", None)
    sharpness = features.sharpness if features is not None and features.sharpness else 0.0
    source = image.subclass.source if image.subclass is not None else Source.REAL
    return (
        image.width * image.height,
        math.floor(math.log(sharpness + 1.0) / math.log(1.1)),
        _SOURCE_RANK.get(source, 0),
        1 if image.subclass_id else 0,
        -image.pk,
    )


def suggested_keeper(images: list[Image]) -> Image | None:
    active = [image for image in images if image.status == ImageStatus.ACTIVE]
    return max(active, key=keeper_rank) if active else None


class DuplicateReviewError(Exception):
    """The review decision does not apply to the group as it is now."""


def _open_group(group_id: int) -> DuplicateGroup:
    group = DuplicateGroup.objects.select_for_update().get(pk=group_id)
    if group.status != DuplicateStatus.OPEN:
        raise DuplicateReviewError(
            f"Duplicate group {group.pk} was already reviewed ({group.get_status_display()})."
        )
    return group


def _close(group: DuplicateGroup, *, status: str, actor: User | None, keeper: Image | None) -> None:
    group.status = status
    group.keeper = keeper
    group.resolved_at = timezone.now()
    group.resolved_by = actor
    group.save(update_fields=["status", "keeper", "resolved_at", "resolved_by"])
    DuplicateMember.objects.filter(group=group).update(is_open=False)


@transaction.atomic
def duplicate_group_resolve(*, group_id: int, keeper_id: int, actor: User | None) -> DuplicateGroup:
    """Keep one image of the group and trash the others with reason ``duplicate`` and a note
    naming the keeper. The keeper takes the label of the best-ranked labelled member when it
    has none (a label event, reason ``duplicate``)."""
    group = _open_group(group_id)
    images = list(
        Image.objects.select_for_update(of=("self",))
        .filter(duplicate_members__group=group)
        .select_related("subclass", "features")
    )
    keeper = next((image for image in images if image.pk == keeper_id), None)
    if keeper is None:
        raise DuplicateReviewError(f"Image {keeper_id} is not in duplicate group {group.pk}.")
    if keeper.status != ImageStatus.ACTIVE:
        raise DuplicateReviewError(f"Image {keeper_id} is in the trash; pick an active image.")
    others = [i for i in images if i.pk != keeper.pk and i.status == ImageStatus.ACTIVE]
    if keeper.subclass_id is None:
        labelled = sorted((i for i in others if i.subclass_id), key=keeper_rank, reverse=True)
        if labelled:
            donor = labelled[0]
            keeper = image_relabel(
                image_id=keeper.pk,
                subclass=donor.subclass,
                actor=actor,
                reason=LabelReason.DUPLICATE,
                expected_version=None,
                note=f"label of duplicate image {donor.pk}",
            )
    for image in others:
        try:
            image_trash(
                image_id=image.pk,
                actor=actor,
                note=f"duplicate of image {keeper.pk}",
                reason=LabelReason.DUPLICATE,
            )
        except ImageStateError:  # trashed meanwhile by someone else: nothing left to do
            continue
    _close(group, status=DuplicateStatus.RESOLVED, actor=actor, keeper=keeper)
    return group


@transaction.atomic
def duplicate_group_dismiss(*, group_id: int, actor: User | None) -> DuplicateGroup:
    """ "Not duplicates": the group is closed for good, and its images are never grouped with
    one another again."""
    group = _open_group(group_id)
    _close(group, status=DuplicateStatus.DISMISSED, actor=actor, keeper=None)
    return group
