"""Near-duplicate search and the groups it finds; their review is in
``curation.services.duplicate_review``.

Search runs in two stages (``curation.nearcopy`` explains both):

1. **Candidates**, cheaply: pairs of active images whose pHashes or dHashes differ in at most
   ``max_distance`` bits (default 8), pairs where one image's probe hash (its pHash after a
   small rotation or crop) is that close to the other's pHash, and, with the ``embedding``
   or ``all`` method, pairs whose centred embeddings have a cosine similarity of at least
   ``min_similarity`` (default 0.90). The Hamming searches are exact multi-index searches
   (``curation.hamming``): at 8 bits each of the three parts is probed within 2 bits.
2. **Verification** of every candidate pair: matched local features under one geometric
   transform, or for low-information images (too few keypoints) a tight pHash match and
   correlated thumbnails. Only verified pairs are near-duplicates.

Groups are tight: every member of a group is a verified near-duplicate of the group's
centre, the keeper candidate. The verified pairs make a graph; each connected component is
cut into groups by star clustering (``curation.hamming.star_groups``), and a member that came
into a group through another member is verified against the centre and left out when it is
not a copy of it. Each member records how it was found and verified (``evidence``).
``DuplicateGroup.component`` still ties together the groups cut from one component.

Each scan replaces the open groups of its own method only. An image already in an open group
of another method stays there (one open group per image).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from curation.hamming import (
    components,
    flip_masks,
    pairs_between,
    pairs_within,
    part_widths,
    plan,
    popcount,
    search_threads,
    star_groups,
    to_unsigned,
)
from curation.imaging import ImageRejected, open_for_pixels
from curation.models import (
    DuplicateGroup,
    DuplicateMember,
    DuplicateMethod,
    DuplicateStatus,
    Image,
    ImageFeatures,
    ImageProbe,
    ImageStatus,
)
from curation.nearcopy import VERIFY_SIDE, CopyFeatures, Verdict, copy_features, verify_copy
from curation.services.hashing import PHASH_PARTS, images_missing_probes, probes_make

logger = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE = 8
DEFAULT_MIN_SIMILARITY = 0.90
# The methods a scan offers. Embedding candidates alone measured far below the hash candidates
# (F1 0.70 against 0.95 in bench/duplicate_quality.py: copies and distinct photographs of one
# kind overlap in embedding similarity), so they only add to them, in ``all``; ``embedding``
# remains a method of groups found before.
SCAN_METHODS = (DuplicateMethod.PHASH, DuplicateMethod.ALL)
# SQLite accepts 32,766 parameters a statement; stay well below.
_MAX_PARAMETERS = 20_000
# Copy features kept in memory during one scan (about 20 kB each).
_FEATURE_CACHE = 20_000


def default_max_distance() -> int:
    return int(getattr(settings, "LOUPE_DUPLICATE_MAX_DISTANCE", DEFAULT_MAX_DISTANCE))


def default_min_similarity() -> float:
    return float(getattr(settings, "LOUPE_EMBEDDING_DUPLICATE_SIMILARITY", DEFAULT_MIN_SIMILARITY))


def _distance(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


@dataclass(frozen=True)
class Candidate:
    """Why a pair is a candidate: the smallest pHash distance between them (the pHashes, or
    a probe hash against a pHash; 64 when unknown) and the signal that found it."""

    bits: int
    found_by: str


Pair = tuple[int, int]  # image ids, smaller first


def _pair(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


# --- Verification ----------------------------------------------------------------------------


class CopyFeatureCache:
    """Copy features of images, read from their originals once per scan or check."""

    def __init__(self, limit: int = _FEATURE_CACHE) -> None:
        self.limit = limit
        self.features: dict[int, CopyFeatures | None] = {}

    def load(self, image_ids: Iterable[int], *, pool: Executor | None = None) -> None:
        """Read the features of the images not cached yet; on ``pool``'s threads when given
        (decoding and OpenCV release the GIL). The rows are read here."""
        missing = [i for i in dict.fromkeys(image_ids) if i not in self.features]
        if not missing:
            return
        if len(self.features) + len(missing) > self.limit:
            self.features.clear()
        for begin in range(0, len(missing), _MAX_PARAMETERS):
            images = list(
                Image.objects.filter(pk__in=missing[begin : begin + _MAX_PARAMETERS]).only(
                    "pk", "sha256", "extension"
                )
            )
            read = (
                map(_read_copy_features, images)
                if pool is None
                else pool.map(_read_copy_features, images)
            )
            for image, features in zip(images, read, strict=True):
                self.features[image.pk] = features
        for image_id in missing:
            self.features.setdefault(image_id, None)

    def get(self, image_id: int) -> CopyFeatures | None:
        self.load([image_id])
        return self.features.get(image_id)


def _read_copy_features(image: Image) -> CopyFeatures | None:
    try:
        with default_storage.open(image.storage_name, "rb") as original:
            return copy_features(open_for_pixels(original, max_side=VERIFY_SIDE))
    except (FileNotFoundError, ImageRejected) as exc:
        logger.error("Image %s: cannot verify near-duplicates: %s", image.pk, exc)
        return None


def verify_pair(cache: CopyFeatureCache, pair: Pair, candidate: Candidate) -> Verdict:
    a, b = cache.get(pair[0]), cache.get(pair[1])
    if a is None or b is None:
        return Verdict(False, None, "original unreadable")
    return verify_copy(a, b, hash_bits=candidate.bits)


def verify_candidates(
    candidates: dict[Pair, Candidate],
    *,
    cache: CopyFeatureCache | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[Pair, Verdict]:
    """The verdict on every candidate pair. Pairs are taken in order of their first image, so
    the features of each image are read once as long as they stay in the cache. The originals
    are read and their features found on one thread per CPU (most of the cost); the matching
    runs here."""
    cache = cache or CopyFeatureCache()
    verdicts: dict[Pair, Verdict] = {}
    pairs = sorted(candidates)
    with ThreadPoolExecutor(max_workers=search_threads()) as pool:
        for begin in range(0, len(pairs), 2000):
            chunk = pairs[begin : begin + 2000]
            cache.load((x for pair in chunk for x in pair), pool=pool)
            for pair in chunk:
                verdicts[pair] = verify_pair(cache, pair, candidates[pair])
            if progress and len(pairs) > 2000:
                done = min(begin + 2000, len(pairs))
                progress(f"verified {done} of {len(pairs)} candidate pairs")
    return verdicts


def _evidence(centre: int, candidate: Candidate, verdict: Verdict) -> str:
    return f"{candidate.found_by} from image {centre}; {verdict.evidence}"[:300]


# --- Candidates of one image (on import) -----------------------------------------------------


def _indexed_near(
    queries: list[int],
    *,
    max_distance: int,
    exclude_id: int | None,
    probes_table: bool,
) -> dict[int, int]:
    """Active images whose indexed hash (the pHash, or with ``probes_table`` a probe hash) is
    within ``max_distance`` bits of one of ``queries`` (unsigned), with the smallest distance.

    Multi-index lookup in the database: each of the three indexed parts is probed for every
    value within ``max_distance // 3`` bits of a query's part, so only a few thousand
    candidate rows come back even at a million images (seven million probe rows); the full
    distance is checked here, in numpy, and the images' status last, for the few within it.

    One statement: a UNION ALL of one indexed probe per part, each given its values as one
    parameter (a JSON list that SQLite's ``json_each`` reads, an array for PostgreSQL's
    ``= ANY``), since thousands of separate parameters cost more to bind and plan than the
    index look-ups themselves."""
    if not queries:
        return {}
    radius = max_distance // PHASH_PARTS
    unsigned = np.array(queries, dtype=np.uint64)
    if probes_table:
        model: type[ImageFeatures] | type[ImageProbe] = ImageProbe
        columns, value_column = ["part0", "part1", "part2"], "value"
    else:
        model = ImageFeatures
        columns = ["phash_part0", "phash_part1", "phash_part2"]
        value_column = "phash"
    table = connection.ops.quote_name(model._meta.db_table)
    selects, parameters = [], []
    shift = 64
    for column, width in zip(columns, part_widths(PHASH_PARTS), strict=True):
        shift -= width
        keys = (unsigned >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        masks = np.array(flip_masks(width, radius), dtype=np.uint64)
        values = np.unique(keys[:, None] ^ masks[None, :]).tolist()
        name = connection.ops.quote_name(column)
        if connection.vendor == "postgresql":
            condition, parameter = f"{name} = ANY(%s)", values
        else:
            condition = f"{name} IN (SELECT value FROM json_each(%s))"  # noqa: S608
            parameter = json.dumps(values)
        selects.append(
            f"SELECT image_id, {value_column} FROM {table} WHERE {condition}"  # noqa: S608
        )
        parameters.append(parameter)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A few thousand index descents: parallel workers only add their start-up.
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(" UNION ALL ".join(selects), parameters)
        rows = cursor.fetchall()
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL max_parallel_workers_per_gather TO DEFAULT")
    if not rows:
        return {}
    found_rows = np.array(rows, dtype=np.int64).reshape(-1, 2)
    distances = popcount(to_unsigned(found_rows[:, 1])[:, None] ^ unsigned[None, :]).min(axis=1)
    close = distances <= max_distance
    found: dict[int, int] = {}
    for image_id, distance in zip(
        found_rows[close, 0].tolist(), distances[close].tolist(), strict=True
    ):
        if image_id != exclude_id and distance < found.get(image_id, 65):
            found[image_id] = distance
    if not found:
        return {}
    active = set(
        Image.objects.filter(pk__in=list(found), status=ImageStatus.ACTIVE).values_list(
            "pk", flat=True
        )
    )
    return {image_id: distance for image_id, distance in found.items() if image_id in active}


def near_images(
    *, phash: int, max_distance: int, exclude_id: int | None = None
) -> list[tuple[int, int]]:
    """Active images whose pHash is within ``max_distance`` bits of ``phash`` (signed or
    unsigned), as ``(image id, distance)``, nearest first."""
    found = _indexed_near(
        [phash & 0xFFFFFFFFFFFFFFFF],
        max_distance=max_distance,
        exclude_id=exclude_id,
        probes_table=False,
    )
    return sorted(found.items(), key=lambda item: (item[1], item[0]))


def near_candidates(
    *, phash: int, probes: list[int], max_distance: int, exclude_id: int | None = None
) -> dict[int, Candidate]:
    """The candidates of one image among the active library: images whose pHash is near the
    image's pHash or one of its ``probes``, and images one of whose probe hashes is near the
    image's pHash. Two indexed look-ups."""
    own = phash & 0xFFFFFFFFFFFFFFFF
    direct = _indexed_near(
        [own, *probes], max_distance=max_distance, exclude_id=exclude_id, probes_table=False
    )
    reverse = _indexed_near(
        [own], max_distance=max_distance, exclude_id=exclude_id, probes_table=True
    )
    found: dict[int, Candidate] = {}
    for image_id, bits in direct.items():
        found[image_id] = Candidate(bits, f"pHash {bits} bits")
    for image_id, bits in reverse.items():
        if image_id not in found or bits < found[image_id].bits:
            found[image_id] = Candidate(bits, f"probe hash {bits} bits")
    return found


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
    """Check new images against the whole library: find each one's candidates, verify them,
    and put an image with verified near-duplicates into an open group (see ``_join``).
    Returns how many of the images joined a group. Idempotent."""
    if max_distance is None:
        max_distance = default_max_distance()
    hashes: dict[int, int] = {
        image_id: phash & 0xFFFFFFFFFFFFFFFF
        for image_id, phash in ImageFeatures.objects.filter(
            image_id__in=image_ids, phash__isnull=False, image__status=ImageStatus.ACTIVE
        ).values_list("image_id", "phash")
        if phash is not None
    }
    probes: dict[int, list[int]] = {}
    for image_id, value in ImageProbe.objects.filter(image_id__in=list(hashes)).values_list(
        "image_id", "value"
    ):
        probes.setdefault(image_id, []).append(value & 0xFFFFFFFFFFFFFFFF)
    cache = CopyFeatureCache()
    joined = 0
    for image_id, phash in sorted(hashes.items()):
        candidates = near_candidates(
            phash=phash,
            probes=probes.get(image_id, []),
            max_distance=max_distance,
            exclude_id=image_id,
        )
        dismissed = _dismissed_partners([image_id]).get(image_id, set())
        verified: list[tuple[int, Candidate, Verdict]] = []
        for other, candidate in candidates.items():
            if other in dismissed:
                continue
            verdict = verify_pair(cache, _pair(image_id, other), candidate)
            if verdict.is_copy:
                verified.append((other, candidate, verdict))
        if not verified:
            continue
        verified.sort(key=lambda item: (-(item[2].matches or 0), item[1].bits, item[0]))
        try:
            _join(image_id, verified, max_distance, cache)
        except IntegrityError:  # another worker grouped one of them meanwhile: look again
            _join(image_id, verified, max_distance, cache)
        joined += 1
    return joined


def _member(
    group: DuplicateGroup, image_id: int, centre: int, candidate: Candidate, verdict: Verdict
) -> DuplicateMember:
    return DuplicateMember(
        group=group,
        image_id=image_id,
        distance=min(candidate.bits, 64),
        matches=verdict.matches,
        evidence=_evidence(centre, candidate, verdict),
    )


@transaction.atomic
def _join(
    image_id: int,
    verified: list[tuple[int, Candidate, Verdict]],
    max_distance: int,
    cache: CopyFeatureCache,
) -> None:
    """Put ``image_id`` with its ``verified`` near-duplicates (best first) into an open group,
    keeping every group's members verified near-duplicates of its centre:

    1. an image already in an open group stays there;
    2. else, when one of them is a group's centre, it joins that group;
    3. else, when some are in no open group, it becomes the centre of a new group with them;
    4. else it joins the group of its best near-duplicate if it is verified against that
       group's centre too; when it is not, that near-duplicate leaves its group for a new
       one centred on the image.

    Open groups are never merged; the components of every group the image touches are.
    """
    by_id = {other: (candidate, verdict) for other, candidate, verdict in verified}
    ids = list(by_id)
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
    members: list[DuplicateMember] = []
    if image_id in open_group_of:
        group = touched[open_group_of[image_id]]
    elif nearest_centre := next((other for other in ids if other in centred), None):
        group = centred[nearest_centre]
        members.append(_member(group, image_id, nearest_centre, *by_id[nearest_centre]))
    elif free := [other for other in ids if other not in open_group_of]:
        group = DuplicateGroup.objects.create(max_distance=max_distance, centre_id=image_id)
        members.append(DuplicateMember(group=group, image_id=image_id, evidence="group centre"))
        members.extend(_member(group, other, image_id, *by_id[other]) for other in free)
    else:
        nearest = ids[0]
        group = touched[open_group_of[nearest]]
        centre = group.centre_id
        centre_hash = (
            ImageFeatures.objects.filter(image_id=centre).values_list("phash", flat=True).first()
            if centre
            else None
        )
        own_hash = (
            ImageFeatures.objects.filter(image_id=image_id).values_list("phash", flat=True).first()
        )
        bits = (
            _distance(centre_hash, own_hash)
            if centre_hash is not None and own_hash is not None
            else 64
        )
        candidate = Candidate(bits, f"pHash {bits} bits")
        verdict = (
            verify_pair(cache, _pair(image_id, centre), candidate)
            if centre
            else Verdict(False, None, "")
        )
        if centre and verdict.is_copy:
            members.append(_member(group, image_id, centre, candidate, verdict))
        else:
            DuplicateMember.objects.filter(group=group, image_id=nearest).delete()
            _refresh_group(group)
            group = DuplicateGroup.objects.create(
                max_distance=max_distance, centre_id=image_id, component=group.component_key
            )
            members.append(DuplicateMember(group=group, image_id=image_id, evidence="group centre"))
            members.append(_member(group, nearest, image_id, *by_id[nearest]))
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
    DuplicateMember.objects.bulk_create(members)
    _refresh_group(group)


def _refresh_group(group: DuplicateGroup) -> None:
    group.size = DuplicateMember.objects.filter(group=group).count()
    group.save(update_fields=["size", "max_distance"])


# --- Full scan -------------------------------------------------------------------------------


@dataclass
class ScanResult:
    images: int = 0
    # Candidate pairs, and those verified as near-duplicates.
    candidates: int = 0
    pairs: int = 0
    low_information_pairs: int = 0
    # Review groups, and how many connected components they were split from.
    groups: list[list[int]] = field(default_factory=list)
    group_ids: list[int] = field(default_factory=list)
    components: int = 0
    largest_component: int = 0
    left_out: int = 0  # images verified against a member but not against its group's centre
    max_distance: int = DEFAULT_MAX_DISTANCE
    seconds_search: float = 0.0
    seconds_verify: float = 0.0
    index: str = ""
    method: str = DuplicateMethod.PHASH
    min_similarity: float | None = None
    probes_computed: int = 0

    def as_dict(self) -> dict[str, object]:
        in_groups = sum(len(g) for g in self.groups)
        signals = []
        if self.method != DuplicateMethod.EMBEDDING:
            signals.append(f"hashes within {self.max_distance} bits")
        if self.min_similarity is not None:
            signals.append(f"embeddings {self.min_similarity:.2f} similar")
        largest = max((len(g) for g in self.groups), default=0)
        return {
            "method": self.method,
            "images": self.images,
            "candidates": self.candidates,
            "pairs": self.pairs,
            "low_information_pairs": self.low_information_pairs,
            "groups": len(self.groups),
            "images_in_groups": in_groups,
            "largest_group": largest,
            "components": self.components,
            "largest_component": self.largest_component,
            "left_out": self.left_out,
            "max_distance": self.max_distance,
            "min_similarity": self.min_similarity,
            "seconds_search": round(self.seconds_search, 3),
            "seconds_verify": round(self.seconds_verify, 3),
            "index": self.index,
            "probes_computed": self.probes_computed,
            "message": (
                f"{len(self.groups)} duplicate group{'' if len(self.groups) == 1 else 's'} "
                f"({in_groups} images) among {self.images} images: {self.pairs} of "
                f"{self.candidates} candidate pairs ({' or '.join(signals)}) verified"
            ),
        }


def library_hashes() -> tuple[np.ndarray, np.ndarray]:
    """Ids and unsigned pHashes of every active image that has one, read in id order."""
    ids, phashes, _ = library_hash_pairs()
    return ids, phashes


def library_hash_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids, unsigned pHashes and unsigned dHashes of every active image with a pHash."""
    ids: list[int] = []
    phashes: list[int] = []
    dhashes: list[int] = []
    rows = (
        ImageFeatures.objects.filter(image__status=ImageStatus.ACTIVE, phash__isnull=False)
        .order_by("image_id")
        .values_list("image_id", "phash", "dhash")
    )
    for image_id, phash, dhash in rows.iterator(chunk_size=20_000):
        if phash is not None:  # excluded by the filter; narrows the type
            ids.append(image_id)
            phashes.append(phash)
            dhashes.append(dhash if dhash is not None else phash)
    return (
        np.array(ids, dtype=np.int64),
        to_unsigned(np.array(phashes, dtype=np.int64)),
        to_unsigned(np.array(dhashes, dtype=np.int64)),
    )


def library_probes() -> tuple[np.ndarray, np.ndarray]:
    """Image ids and unsigned probe hashes of every active image, one row per probe."""
    owners: list[int] = []
    values: list[int] = []
    rows = (
        ImageProbe.objects.filter(image__status=ImageStatus.ACTIVE)
        .order_by("image_id")
        .values_list("image_id", "value")
    )
    for image_id, value in rows.iterator(chunk_size=50_000):
        owners.append(image_id)
        values.append(value)
    return np.array(owners, dtype=np.int64), to_unsigned(np.array(values, dtype=np.int64))


def hash_candidates(
    ids: np.ndarray,
    phashes: np.ndarray,
    dhashes: np.ndarray,
    probe_owners: np.ndarray,
    probe_values: np.ndarray,
    max_distance: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs from the hashes, as positions in ``ids`` (``left < right``), the
    pair's smallest pHash distance (pHashes, or a probe hash against a pHash) and the signal
    that found it (0 pHash, 1 probe hash, 2 dHash). Exact multi-index searches; this is what
    a full scan spends its search time on."""
    n = len(ids)
    left, right, bits = pairs_within(phashes, max_distance)
    lefts, rights, bitss, kinds = [left], [right], [bits.astype(np.int16)], [np.zeros_like(left)]
    if len(probe_values):
        owner = np.searchsorted(ids, probe_owners)
        valid = (owner < n) & (ids[np.minimum(owner, n - 1)] == probe_owners)
        query, base, distance = pairs_between(probe_values[valid], phashes, max_distance)
        a = owner[valid][query]
        keep = a != base
        a, base, distance = a[keep], base[keep], distance[keep]
        lefts.append(np.minimum(a, base))
        rights.append(np.maximum(a, base))
        bitss.append(distance.astype(np.int16))
        kinds.append(np.ones_like(a))
    d_left, d_right, _ = pairs_within(dhashes, max_distance)
    lefts.append(d_left)
    rights.append(d_right)
    bitss.append(popcount(phashes[d_left] ^ phashes[d_right]).astype(np.int16))
    kinds.append(np.full_like(d_left, 2))
    left = np.concatenate(lefts)
    right = np.concatenate(rights)
    bits = np.concatenate(bitss)
    kind = np.concatenate(kinds)
    # One row per pair: the smallest distance, then the first signal.
    order = np.lexsort((kind, bits, right, left))
    left, right, bits, kind = left[order], right[order], bits[order], kind[order]
    first = np.ones(len(left), dtype=bool)
    first[1:] = (left[1:] != left[:-1]) | (right[1:] != right[:-1])
    return left[first], right[first], bits[first], kind[first]


_SIGNALS = ("pHash", "probe hash", "dHash")


def probes_backfill(*, progress: Callable[[str], None] | None = None) -> int:
    """Compute the probe hashes images hashed before probes existed lack, in chunks."""
    done = 0
    while ids := images_missing_probes(limit=1000):
        made = probes_make(image_ids=ids)
        done += len(ids)
        if progress:
            progress(f"computed the probe hashes of {done} images")
        if made == 0:
            break  # none readable: leave them for the next scan
    return done


def duplicates_scan(
    *,
    method: str = DuplicateMethod.PHASH,
    max_distance: int | None = None,
    min_similarity: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScanResult:
    """Find every near-duplicate group among the active images and replace the open groups
    of ``method`` with them. Groups already reviewed stay as they are: trashed duplicates are
    no longer active, and images judged "not duplicates" are not grouped together again.
    ``all`` needs the embeddings computed (``inference.embeddings``)."""
    if method not in SCAN_METHODS:
        raise ValueError(f"method must be phash or all, not {method!r}")
    if max_distance is None:
        max_distance = default_max_distance()
    uses_embeddings = method != DuplicateMethod.PHASH
    if uses_embeddings and min_similarity is None:
        min_similarity = default_min_similarity()
    result = ScanResult(
        max_distance=max_distance,
        method=method,
        min_similarity=min_similarity if uses_embeddings else None,
    )
    candidates: dict[Pair, Candidate] = {}
    ids, phashes, dhashes = library_hash_pairs()
    hash_of = dict(zip(ids.tolist(), phashes.tolist(), strict=True))
    started = time.perf_counter()
    if method != DuplicateMethod.EMBEDDING:
        result.probes_computed = probes_backfill(progress=progress)
        owners, values = library_probes()
        if progress:
            progress(f"searching {len(ids)} hashes and {len(values)} probe hashes")
        started = time.perf_counter()
        left, right, bits, kind = hash_candidates(
            ids, phashes, dhashes, owners, values, max_distance
        )
        for a, b, d, k in zip(
            ids[left].tolist(), ids[right].tolist(), bits.tolist(), kind.tolist(), strict=True
        ):
            signal = _SIGNALS[k]
            label = f"{signal} {d} bits" if k < 2 else f"dHash within {max_distance} bits"
            candidates[(a, b)] = Candidate(d, label)
        result.images = len(ids)
        result.index = plan(len(ids), max_distance).describe()
    if uses_embeddings:
        from inference.embeddings import embedding_pairs

        assert min_similarity is not None
        if progress:
            progress("searching embeddings")
        searched, e_left, e_right, similarities = embedding_pairs(min_similarity=min_similarity)
        result.images = max(result.images, len(searched))
        for a, b, similarity in zip(
            e_left.tolist(), e_right.tolist(), similarities.tolist(), strict=True
        ):
            pair = _pair(a, b)
            if pair not in candidates:
                bits_ab = _distance(hash_of[a], hash_of[b]) if a in hash_of and b in hash_of else 64
                candidates[pair] = Candidate(bits_ab, f"embedding similarity {similarity:.2f}")
        if not result.index:
            result.index = f"exact inner product, range search above {min_similarity:.2f}"
    result.seconds_search = time.perf_counter() - started
    dismissed = _dismissed_partners({x for pair in candidates for x in pair})
    candidates = {
        pair: candidate
        for pair, candidate in candidates.items()
        if pair[1] not in dismissed.get(pair[0], ())
    }
    result.candidates = len(candidates)
    if progress:
        progress(f"verifying {len(candidates)} candidate pairs")
    started = time.perf_counter()
    cache = CopyFeatureCache()
    verdicts = verify_candidates(candidates, cache=cache, progress=progress)
    result.seconds_verify = time.perf_counter() - started
    verified = {pair: verdict for pair, verdict in verdicts.items() if verdict.is_copy}
    result.pairs = len(verified)
    result.low_information_pairs = sum(1 for v in verified.values() if v.matches is None)
    neighbours: dict[int, dict[int, float]] = {}
    for a, b in verified:
        nearness = float(candidates[(a, b)].bits)
        neighbours.setdefault(a, {})[b] = nearness
        neighbours.setdefault(b, {})[a] = nearness
    pairs = list(verified)
    found = components(
        np.array([a for a, _ in pairs], dtype=np.int64),
        np.array([b for _, b in pairs], dtype=np.int64),
    )
    if progress:
        progress(f"storing the groups of {len(found)} components")

    def judge(a: int, b: int) -> tuple[Candidate, Verdict]:
        pair = _pair(a, b)
        if pair in verified:
            return candidates[pair], verified[pair]
        bits_ab = _distance(hash_of[a], hash_of[b]) if a in hash_of and b in hash_of else 64
        candidate = Candidate(bits_ab, f"pHash {bits_ab} bits")
        return candidate, verify_pair(cache, pair, candidate)

    _replace_open_groups(result, found, neighbours, judge, method=method, max_distance=max_distance)
    return result


def duplicates_scan_method(
    *,
    method: str,
    max_distance: int | None = None,
    min_similarity: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ScanResult]:
    """The scan ``method`` names (``phash``, ``embedding`` or ``all``: both signals per
    pair), as a list of one result."""
    return [
        duplicates_scan(
            method=method,
            max_distance=max_distance,
            min_similarity=min_similarity,
            progress=progress,
        )
    ]


def _tight_groups(
    nodes: dict[int, dict[int, float]],
    judge: Callable[[int, int], tuple[Candidate, Verdict]],
) -> tuple[list[tuple[int, list[tuple[int, Candidate, Verdict]]]], int]:
    """Star groups of one component whose members are each verified against the centre:
    ``(centre, [(member, candidate, verdict)])``, and how many images were left out."""
    groups = []
    left_out = 0
    for centre, members in star_groups(nodes):
        kept = []
        for member in members:
            if member == centre:
                continue
            candidate, verdict = judge(member, centre)
            if verdict.is_copy:
                kept.append((member, candidate, verdict))
            else:
                left_out += 1
        if kept:
            groups.append((centre, kept))
    return groups, left_out


@transaction.atomic
def _replace_open_groups(
    result: ScanResult,
    found: list[list[int]],
    neighbours: dict[int, dict[int, float]],
    judge: Callable[[int, int], tuple[Candidate, Verdict]],
    *,
    method: str,
    max_distance: int,
) -> None:
    """Replace the open groups of ``method`` with tight groups cut from the components
    ``found`` of the verified pairs (``neighbours``), leaving out the images in open groups
    of another method, and record them in ``result``. ``judge(member, centre)`` gives the
    candidate and verdict of a member against its centre (verifying it when needed).

    A component that holds images of another method's open groups is merged with those
    groups' components."""
    DuplicateGroup.objects.filter(status=DuplicateStatus.OPEN, method=method).delete()
    taken: dict[int, int] = {}
    for image_id, group_id, component in DuplicateMember.objects.filter(is_open=True).values_list(
        "image_id", "group_id", "group__component"
    ):
        taken[image_id] = group_id if component is None else component
    groups: list[tuple[int, list[tuple[int, Candidate, Verdict]]]] = []
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
        tight, left_out = _tight_groups(rest, judge)
        result.left_out += left_out
        for tight_group in tight:
            groups.append(tight_group)
            component_of.append(position)
        for key in sorted({taken[image_id] for image_id in nodes if image_id in taken}):
            link_left.append(-1 - position)
            link_right.append(key)
    created = DuplicateGroup.objects.bulk_create(
        (
            DuplicateGroup(
                method=method, max_distance=max_distance, size=1 + len(members), centre_id=centre
            )
            for centre, members in groups
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
    for group, (centre, others) in zip(created, groups, strict=True):
        members.append(DuplicateMember(group=group, image_id=centre, evidence="group centre"))
        members.extend(
            _member(group, image_id, centre, candidate, verdict)
            for image_id, candidate, verdict in others
        )
    DuplicateMember.objects.bulk_create(members, batch_size=2000)
    result.groups = [sorted([centre, *(m for m, _, _ in others)]) for centre, others in groups]
    result.group_ids = [group.pk for group in created]
    result.components = len(set(component_of))
    result.largest_component = max((len(found[p]) for p in component_of), default=0)
