"""Dataset versions: a frozen, reproducible train/val/test assignment of the library.

How a build decides, per class (sub-classes merged into their class):

1. Eligible images are active, labelled in a normal (not holding) class, without a bad-image
   verdict and outside every benchmark set (the latest version of each). What is left out is
   counted per class and reason.
2. The members of one near-duplicate group form one *unit*, placed whole in one split (groups
   sharing an image join). Open and resolved groups bind (a resolved group's only active
   member is its keeper); a group dismissed as "not duplicates" binds nothing. Groups are
   tight, so a chain of groups (``DuplicateGroup.component``) is not a unit: the pHash pairs
   between its groups are counted in the leakage report instead.
3. Real images are always preferred: staged and synthetic images fill in after them, at most
   ``staged_cap`` per class.
4. A class with fewer than ``min_per_class`` usable images is excluded, with how many more it
   needs. The ratios apply to ``max_per_class`` of its images; the real images beyond that
   overflow to test.
5. The units are placed so that each class keeps its ratios (``dataset_split.place``); where
   the groups do not allow it, the summary names the groups and the build warns.

Everything is ordered by SHA-256 and shuffled by a ``random.Random`` seeded from the seed and
the class name, never by database order or Python's ``hash``, so the same parameters on the
same library give the identical assignment.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from django.db import transaction

from accounts.models import User
from curation.models import (
    BadVerdict,
    BenchmarkKind,
    BenchmarkMember,
    BenchmarkSet,
    ClassKind,
    DatasetAssignment,
    DatasetStatus,
    DatasetVersion,
    DuplicateMember,
    DuplicateStatus,
    Image,
    ImageStatus,
    LabelClass,
    Source,
    Split,
    SubClass,
)
from curation.services.dataset_split import ClassShare, place, straddling_pairs
from curation.services.duplicates import default_max_distance, library_hashes

DEFAULT_MIN_PER_CLASS = 40
EXPLORATORY_MIN_PER_CLASS = 35
DEFAULT_MAX_PER_CLASS = 125
DEFAULT_STAGED_CAP = 60
DEFAULT_RATIOS = (90, 10, 0)
READ_CHUNK = 5000
WRITE_CHUNK = 2000
SPLITS = (Split.TRAIN, Split.VAL, Split.TEST)

# Exclusion reasons, in the order the version page lists them.
EXCLUDED_TRASHED = "trashed"
EXCLUDED_BAD = "bad_image"
EXCLUDED_BENCHMARK = "benchmark"
EXCLUDED_STAGED = "staged_cap"
EXCLUDED_BELOW_MIN = "below_min"
EXCLUDED_HOLDING = "holding"
EXCLUSION_LABELS = {
    EXCLUDED_TRASHED: "trashed",
    EXCLUDED_BAD: "bad-image verdict",
    EXCLUDED_BENCHMARK: "in a benchmark set",
    EXCLUDED_STAGED: "staged/synthetic beyond the cap or the maximum (real preferred)",
    EXCLUDED_BELOW_MIN: "class below the minimum",
    EXCLUDED_HOLDING: "holding class",
}


class DatasetError(Exception):
    pass


@dataclass(frozen=True)
class DatasetParams:
    min_per_class: int = DEFAULT_MIN_PER_CLASS
    max_per_class: int = DEFAULT_MAX_PER_CLASS
    staged_cap: int = DEFAULT_STAGED_CAP
    ratios: tuple[int, int, int] = DEFAULT_RATIOS
    seed: int = 0
    exploratory: bool = False

    def check(self) -> None:
        if self.min_per_class < 1:
            raise DatasetError("The minimum per class must be at least 1.")
        if self.max_per_class < self.min_per_class:
            raise DatasetError("The maximum per class must not be below the minimum.")
        if self.staged_cap < 0:
            raise DatasetError("The staged cap must not be negative.")
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or sum(self.ratios) <= 0:
            raise DatasetError("Split ratios are three non-negative numbers (train, val, test).")
        if self.ratios[0] <= 0:
            raise DatasetError("The train ratio must be above zero.")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratios"] = list(self.ratios)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetParams:
        return cls(
            min_per_class=int(data.get("min_per_class", DEFAULT_MIN_PER_CLASS)),
            max_per_class=int(data.get("max_per_class", DEFAULT_MAX_PER_CLASS)),
            staged_cap=int(data.get("staged_cap", DEFAULT_STAGED_CAP)),
            ratios=tuple(int(r) for r in data.get("ratios", DEFAULT_RATIOS)),  # type: ignore[arg-type]
            seed=int(data.get("seed", 0)),
            exploratory=bool(data.get("exploratory", False)),
        )


def parse_ratios(text: str) -> tuple[int, int, int]:
    """``"90,10,0"`` → ``(90, 10, 0)``."""
    parts = [p.strip() for p in text.replace("/", ",").split(",") if p.strip()]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise DatasetError("Ratios are three whole numbers: train,val,test (e.g. 90,10,0).")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


@dataclass
class _Candidate:
    sha256: str
    image_id: int
    subclass_id: int
    source: str

    @property
    def is_real(self) -> bool:
        return self.source == Source.REAL


@dataclass
class _ClassPlan:
    name: str
    class_id: int
    kind: str
    candidates: list[_Candidate] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)


class UnionFind:
    """Disjoint sets of ids; each set is named by its smallest id."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        parent = self.parent.setdefault(item, item)
        if parent != item:
            parent = self.parent[item] = self.find(parent)
        return parent

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            # The smaller id wins, so the roots do not depend on the order of the rows.
            low, high = sorted((root_a, root_b))
            self.parent[high] = low


def _chunked_rows(queryset: Any, fields: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    """Rows of ``queryset`` by ascending id in chunks: bounded memory on any database."""
    last = 0
    while True:
        rows = list(
            queryset.filter(pk__gt=last).order_by("pk").values_list("pk", *fields)[:READ_CHUNK]
        )
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def benchmark_image_ids() -> set[int]:
    """Members of the latest version of every benchmark set."""
    latest: dict[str, tuple[int, int]] = {}
    for set_id, name, version in BenchmarkSet.objects.values_list("pk", "name", "version"):
        if name not in latest or version > latest[name][0]:
            latest[name] = (version, set_id)
    set_ids = [set_id for _, set_id in latest.values()]
    return set(
        BenchmarkMember.objects.filter(benchmark_set_id__in=set_ids).values_list(
            "image_id", flat=True
        )
    )


def _bad_image_ids() -> set[int]:
    return set(BadVerdict.objects.values_list("image_id", flat=True))


def component_members() -> Iterator[tuple[int, int, int]]:
    """``(component key, group id, image id)`` of every image a near-duplicate component
    holds together (the label-error folds use it; dataset splits bind groups, see
    ``group_members``). Every group of a component counts, whatever its status, unless all of
    them were dismissed: "not duplicates" on one group of a chain says its members are not
    duplicates of one another, not that they are none of the pairs they make with the other
    groups' members."""
    dismissed: dict[int, list[tuple[int, int]]] = defaultdict(list)
    counted: set[int] = set()
    rows = _chunked_rows(
        DuplicateMember.objects.all(),
        ("group_id", "group__component", "group__status", "image_id"),
    )
    for _, group_id, component, status, image_id in rows:
        key = group_id if component is None else component
        if status == DuplicateStatus.DISMISSED:
            dismissed[key].append((group_id, image_id))
        else:
            counted.add(key)
            yield key, group_id, image_id
    for key, members in dismissed.items():
        if key in counted:
            for group_id, image_id in members:
                yield key, group_id, image_id


def group_members() -> Iterator[tuple[int, int]]:
    """``(group id, image id)`` of every group that binds its members to one split: open and
    resolved groups; a group dismissed as "not duplicates" binds nothing."""
    rows = _chunked_rows(
        DuplicateMember.objects.exclude(group__status=DuplicateStatus.DISMISSED),
        ("group_id", "image_id"),
    )
    for _, group_id, image_id in rows:
        yield group_id, image_id


def _group_units() -> tuple[dict[int, int], dict[int, list[int]]]:
    """Each image in a binding group → its unit's key, and each key → its group ids."""
    units = UnionFind()
    first_of_group: dict[int, int] = {}
    for group_id, image_id in group_members():
        if group_id in first_of_group:
            units.union(first_of_group[group_id], image_id)
        else:
            first_of_group[group_id] = image_id
            units.find(image_id)
    unit_of = {image_id: units.find(image_id) for image_id in units.parent}
    groups_of: dict[int, list[int]] = defaultdict(list)
    for group_id, image_id in sorted(first_of_group.items()):
        groups_of[unit_of[image_id]].append(group_id)
    return unit_of, dict(groups_of)


def _select_class(
    plan: _ClassPlan, params: DatasetParams, unit_of: dict[int, int]
) -> ClassShare | None:
    """The images one class uses, in the class's seeded order, and how many of them the
    ratios apply to; None for a class below the minimum. Updates ``plan.excluded``.

    Real images are all used. Staged and synthetic ones fill in only while the class has
    fewer than ``max_per_class`` real images, at most ``staged_cap``: the overflow beyond the
    maximum, which goes to test, is thus always real (test shows the real world)."""
    by_unit: dict[int, list[_Candidate]] = defaultdict(list)
    for candidate in plan.candidates:
        by_unit[unit_of.get(candidate.image_id, candidate.image_id)].append(candidate)
    unit_list = [sorted(members, key=lambda c: c.sha256) for members in by_unit.values()]
    unit_list.sort(key=lambda members: members[0].sha256)

    rng = random.Random(f"loupe-dataset:{params.seed}:{plan.name}")
    # A near-duplicate group with any real image counts as real; a group of staged or
    # synthetic images only comes after every real one.
    real_units = [u for u in unit_list if any(c.is_real for c in u)]
    staged_units = [u for u in unit_list if not any(c.is_real for c in u)]
    rng.shuffle(real_units)
    rng.shuffle(staged_units)

    # Past the room a mixed group keeps its real images and leaves out the rest: an image
    # left out splits no group across splits.
    real_count = sum(1 for c in plan.candidates if c.is_real)
    staged_room = min(params.staged_cap, max(0, params.max_per_class - real_count))
    used: list[_Candidate] = []
    staged_used = 0
    for unit in real_units + staged_units:
        staged = sum(1 for c in unit if not c.is_real)
        if staged_used + staged <= staged_room:
            used.extend(unit)
            staged_used += staged
            continue
        plan.excluded[EXCLUDED_STAGED] += staged
        used.extend(c for c in unit if c.is_real)
    if len(used) < params.min_per_class:
        plan.excluded[EXCLUDED_BELOW_MIN] += len(used)
        return None
    # Shuffle again so that no split is made of whatever was chosen last (staged).
    rng.shuffle(used)
    return ClassShare(
        name=plan.name,
        images=[c.image_id for c in used],
        budget=min(len(used), params.max_per_class),
        ratios=params.ratios,
    )


def dataset_version_create(
    *, name: str, params: DatasetParams, actor: User | None
) -> DatasetVersion:
    """The version row, ``building``, before its job fills it."""
    name = name.strip()
    if not name:
        raise DatasetError("A dataset version needs a name.")
    params.check()
    if DatasetVersion.objects.filter(name=name).exists():
        raise DatasetError(f"A dataset version named {name!r} exists already.")
    return DatasetVersion.objects.create(
        name=name,
        params=params.as_dict(),
        seed=params.seed,
        exploratory=params.exploratory,
        created_by=actor,
    )


def dataset_build(
    *, version: DatasetVersion, progress: Callable[[int, int], None] | None = None
) -> DatasetVersion:
    """Assign the library's images to the version's splits and write its summary.

    Runs in one transaction: a failed build leaves no assignments behind. Building a version
    again replaces its assignments with the identical ones (unless the library changed).
    """
    params = DatasetParams.from_dict(version.params)
    params.check()
    report = progress or (lambda done, total: None)

    classes = {
        pk: (name, kind) for pk, name, kind in LabelClass.objects.values_list("pk", "name", "kind")
    }
    subclasses = {
        pk: (class_id, name, source)
        for pk, class_id, name, source in SubClass.objects.values_list(
            "pk", "label_class_id", "name", "source"
        )
    }
    plans = {
        class_id: _ClassPlan(name=name, class_id=class_id, kind=kind)
        for class_id, (name, kind) in classes.items()
    }
    benchmark = benchmark_image_ids()
    bad = _bad_image_ids()
    unit_of, groups_of = _group_units()

    labelled = Image.objects.filter(subclass__isnull=False)
    total = labelled.count()
    report(0, total)
    rows = _chunked_rows(labelled, ("sha256", "subclass_id", "status"))
    for seen, (image_id, sha256, subclass_id, status) in enumerate(rows, start=1):
        if seen % READ_CHUNK == 0:
            report(seen, total)
        class_id, _, source = subclasses[subclass_id]
        plan = plans[class_id]
        if status == ImageStatus.TRASHED:
            plan.excluded[EXCLUDED_TRASHED] += 1
        elif plan.kind == ClassKind.HOLDING:
            plan.excluded[EXCLUDED_HOLDING] += 1
        elif image_id in bad:
            plan.excluded[EXCLUDED_BAD] += 1
        elif image_id in benchmark:
            plan.excluded[EXCLUDED_BENCHMARK] += 1
        else:
            plan.candidates.append(_Candidate(sha256, image_id, subclass_id, source))

    shares: dict[int, ClassShare] = {}
    class_of: dict[int, _ClassPlan] = {}
    candidate_of: dict[int, _Candidate] = {}
    for plan in sorted(plans.values(), key=lambda p: p.name):
        if plan.kind == ClassKind.HOLDING:
            continue
        share = _select_class(plan, params, unit_of)
        if share is None:
            continue
        shares[plan.class_id] = share
        for candidate in plan.candidates:
            candidate_of[candidate.image_id] = candidate
        for image_id in share.images:
            class_of[image_id] = plan
    placement = place(
        shares=shares,
        unit_of=unit_of,
        groups_of=groups_of,
        order_of={image_id: candidate_of[image_id].sha256 for image_id in class_of},
        seed=params.seed,
    )
    assignment = placement.split_of

    summary = _summary(plans, assignment, class_of, candidate_of, params, total)
    for row in summary["classes"]:
        ratios = placement.ratios.get(row["class_id"])
        row["ratios"] = ratios
        row["overflow"] = ratios["overflow"] if ratios else 0
    summary["ratios_kept"] = all(r["within"] for r in placement.ratios.values())
    summary["leakage_candidates"] = _candidate_leakage(assignment)
    summary["warnings"] = ratio_warnings(summary["classes"])
    with transaction.atomic():
        DatasetAssignment.objects.filter(version=version).delete()
        assignments = (
            DatasetAssignment(
                version=version,
                image_id=image_id,
                split=split,
                label_class_id=class_of[image_id].class_id,
                subclass_id=candidate_of[image_id].subclass_id,
                source=candidate_of[image_id].source,
            )
            for image_id, split in sorted(assignment.items())
        )
        batch: list[DatasetAssignment] = []
        for row in assignments:
            batch.append(row)
            if len(batch) >= WRITE_CHUNK:
                DatasetAssignment.objects.bulk_create(batch)
                batch.clear()
        DatasetAssignment.objects.bulk_create(batch)
        version.summary = summary
        version.status = DatasetStatus.READY
        version.save(update_fields=["summary", "status"])
    report(total, total)
    return version


def _summary(
    plans: dict[int, _ClassPlan],
    assignment: dict[int, str],
    class_of: dict[int, _ClassPlan],
    candidate_of: dict[int, _Candidate],
    params: DatasetParams,
    total: int,
) -> dict[str, Any]:
    per_class: dict[int, dict[str, Any]] = {}
    for image_id, split in assignment.items():
        plan = class_of[image_id]
        row = per_class.setdefault(
            plan.class_id,
            {"train": 0, "val": 0, "test": 0, "real": 0, "staged": 0, "synthetic": 0},
        )
        row[split] += 1
        row[candidate_of[image_id].source] += 1
    classes: list[dict[str, Any]] = []
    for plan in sorted(plans.values(), key=lambda p: p.name):
        counts = per_class.get(
            plan.class_id,
            {"train": 0, "val": 0, "test": 0, "real": 0, "staged": 0, "synthetic": 0},
        )
        included = plan.class_id in per_class
        usable = len(plan.candidates) - plan.excluded[EXCLUDED_STAGED]
        if plan.kind == ClassKind.HOLDING:
            status = "holding"
        elif included:
            status = "included"
        else:
            status = "below_min"
        classes.append(
            {
                "class_id": plan.class_id,
                "name": plan.name,
                "status": status,
                "eligible": len(plan.candidates),
                "needs": max(0, params.min_per_class - usable) if status == "below_min" else 0,
                **counts,
                "total": counts["train"] + counts["val"] + counts["test"],
                "excluded": {k: plan.excluded[k] for k in EXCLUSION_LABELS if plan.excluded[k]},
            }
        )
    included_names = [c["name"] for c in classes if c["status"] == "included"]
    totals = Counter[str]()
    excluded_totals = Counter[str]()
    for row in classes:
        for key in ("train", "val", "test", "real", "staged", "synthetic", "total"):
            totals[key] += row[key]
        excluded_totals.update(row["excluded"])
    return {
        "classes": classes,
        "label_map": {name: index for index, name in enumerate(included_names)},
        "totals": dict(totals),
        "excluded": dict(excluded_totals),
        "included_classes": len(included_names),
        "excluded_classes": sum(1 for c in classes if c["status"] != "included"),
        "labelled_images": total,
    }


def ratio_warnings(classes: list[dict[str, Any]]) -> list[str]:
    """One line per class whose achieved counts are off its requested ratios by more than
    the tolerance, naming the near-duplicate groups that forced it."""
    lines = []
    for row in classes:
        ratios = row.get("ratios")
        if not ratios or ratios["within"]:
            continue
        achieved = " / ".join(str(ratios["achieved"][s]) for s in ("train", "val", "test"))
        requested = " / ".join(str(ratios["requested"][s]) for s in ("train", "val", "test"))
        groups = [g for unit in ratios["forced_by"] for g in unit["groups"]]
        named = ", ".join(str(g) for g in groups[:10])
        more = " …" if len(groups) > 10 or ratios["forced_more"] else ""
        cause = (
            f"near-duplicate group{'s' if len(groups) > 1 else ''} {named}{more} "
            f"could not be placed closer"
            if groups
            else "its near-duplicate groups could not be placed closer"
        )
        overflow = f", plus {ratios['overflow']} over it in test" if ratios["overflow"] else ""
        lines.append(
            f"{row['name']}: train / val / test {achieved}, where {requested} was asked "
            f"(the ratios of its {ratios['budget']} images under the maximum{overflow}; "
            f"±{ratios['tolerance']:g}); {cause}."
        )
    return lines


def _candidate_leakage(assignment: dict[int, str]) -> dict[str, Any]:
    """pHash pairs within the library's near-duplicate threshold that straddle two splits of
    the build (see ``dataset_split.straddling_pairs``). Verified groups are kept whole; these
    are the weaker candidates that no group holds together."""
    ids, hashes = library_hashes()
    if len(ids):
        keep = np.isin(ids, np.fromiter(assignment, dtype=np.int64, count=len(assignment)))
        ids, hashes = ids[keep], hashes[keep]
    return straddling_pairs(
        image_ids=ids, hashes=hashes, split_of=assignment, max_distance=default_max_distance()
    )


def dataset_leakage(*, version: DatasetVersion) -> list[dict[str, Any]]:
    """Open near-duplicate groups whose members sit in different splits of the version, each
    with its members' splits and the number of member pairs that straddle two splits. None
    by construction; a group found after the build can show up here. One query."""
    rows = DatasetAssignment.objects.filter(
        version=version, image__duplicate_members__is_open=True
    ).values_list("image__duplicate_members__group_id", "image_id", "split")
    splits: dict[int, dict[int, str]] = defaultdict(dict)
    for group_id, image_id, split in rows:
        splits[group_id][image_id] = split
    leaks = []
    for group_id, members in sorted(splits.items()):
        per_split = Counter(members.values())
        if len(per_split) < 2:
            continue
        together = sum(n * (n - 1) // 2 for n in per_split.values())
        size = len(members)
        leaks.append(
            {
                "group_id": group_id,
                "images": [{"image_id": i, "split": s} for i, s in sorted(members.items())],
                "splits": sorted(per_split),
                "pairs": size * (size - 1) // 2 - together,
            }
        )
    return leaks


def dataset_leakage_report(*, version: DatasetVersion) -> dict[str, Any]:
    """The version's leakage report: ``verified``, the open groups with members in two
    splits (checked now, so a group found after the build shows); ``candidates``, the pHash
    pairs within the threshold that straddle splits (counted by the build; None for versions
    built before it counted them)."""
    return {
        "verified": dataset_leakage(version=version) if version.status == "ready" else [],
        "candidates": (version.summary or {}).get("leakage_candidates"),
    }


def dataset_version_fail(*, version_id: int) -> None:
    DatasetVersion.objects.filter(pk=version_id).update(status=DatasetStatus.FAILED)


# --- Benchmark sets --------------------------------------------------------------------------


def benchmark_set_create(
    *,
    name: str,
    kind: str,
    image_ids: list[int],
    actor: User | None,
    description: str = "",
) -> BenchmarkSet:
    """A new benchmark set, or the next version of the set with that name. Out-of-scope
    members carry no class; the others keep the class they had when they joined."""
    name = name.strip()
    if not name:
        raise DatasetError("A benchmark set needs a name.")
    if kind not in BenchmarkKind.values:
        raise DatasetError(f"Unknown benchmark kind {kind!r}.")
    wanted = sorted(set(image_ids))
    rows = _rows_for_many(wanted)
    found = {pk for pk, _ in rows}
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        shown = ", ".join(str(pk) for pk in missing[:10])
        raise DatasetError(f"No image with id {shown}{' …' if len(missing) > 10 else ''}.")
    if not rows:
        raise DatasetError("A benchmark set needs at least one image.")
    with transaction.atomic():
        latest = (
            BenchmarkSet.objects.select_for_update().filter(name=name).order_by("-version").first()
        )
        benchmark = BenchmarkSet.objects.create(
            name=name,
            version=(latest.version + 1) if latest else 1,
            kind=kind,
            description=description,
            member_count=len(rows),
            created_by=actor,
        )
        out_of_scope = kind == BenchmarkKind.OUT_OF_SCOPE
        BenchmarkMember.objects.bulk_create(
            (
                BenchmarkMember(
                    benchmark_set=benchmark,
                    image_id=pk,
                    label_class_id=None if out_of_scope else class_id,
                )
                for pk, class_id in sorted(rows)
            ),
            batch_size=WRITE_CHUNK,
        )
    return benchmark


def benchmark_set_add(
    *, name: str, kind: str, image_ids: list[int], actor: User | None
) -> BenchmarkSet:
    """The next version of the benchmark set ``name``: its current members (with the class
    each had when it joined) plus ``image_ids`` (with the class each has now). Without a set
    of that name, its first version, of ``kind``. Earlier versions stay as they were."""
    name = name.strip()
    if not name:
        raise DatasetError("A benchmark set needs a name.")
    with transaction.atomic():
        latest = (
            BenchmarkSet.objects.select_for_update().filter(name=name).order_by("-version").first()
        )
        if latest is None:
            return benchmark_set_create(name=name, kind=kind, image_ids=image_ids, actor=actor)
        kept = dict(latest.members.values_list("image_id", "label_class_id"))
        out_of_scope = latest.kind == BenchmarkKind.OUT_OF_SCOPE
        added = {
            pk: None if out_of_scope else class_id
            for pk, class_id in _rows_for_many(sorted(set(image_ids) - set(kept)))
        }
        if not added:
            raise DatasetError(f"Every image given is already in {latest}.")
        benchmark = BenchmarkSet.objects.create(
            name=name,
            version=latest.version + 1,
            kind=latest.kind,
            description=latest.description,
            member_count=len(kept) + len(added),
            created_by=actor,
        )
        BenchmarkMember.objects.bulk_create(
            (
                BenchmarkMember(benchmark_set=benchmark, image_id=pk, label_class_id=class_id)
                for pk, class_id in sorted({**kept, **added}.items())
            ),
            batch_size=WRITE_CHUNK,
        )
    return benchmark


def _rows_for_many(ids: list[int]) -> list[tuple[int, int | None]]:
    rows: list[tuple[int, int | None]] = []
    for start in range(0, len(ids), READ_CHUNK):
        rows.extend(
            Image.objects.filter(pk__in=ids[start : start + READ_CHUNK]).values_list(
                "pk", "subclass__label_class_id"
            )
        )
    return rows
