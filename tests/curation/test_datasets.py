from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import (
    BadReason,
    BadVerdict,
    BenchmarkKind,
    ClassKind,
    DatasetAssignment,
    DatasetStatus,
    DatasetVersion,
    DuplicateGroup,
    DuplicateMember,
    DuplicateStatus,
    Image,
    ImageStatus,
    Job,
    LabelClass,
    Source,
    SubClass,
)
from curation.services.datasets import (
    DatasetError,
    DatasetParams,
    benchmark_set_create,
    dataset_build,
    dataset_leakage,
    dataset_version_create,
)
from tests.factories import LabelClassFactory, SubClassFactory

pytestmark = pytest.mark.django_db

_serial = itertools.count()


def add_images(subclass: SubClass, count: int, **fields: Any) -> list[Image]:
    """Image rows without files: a build reads rows only."""
    rows = []
    for _ in range(count):
        n = next(_serial)
        rows.append(
            Image(
                sha256=hashlib.sha256(f"image {n}".encode()).hexdigest(),
                extension="jpg",
                content_type="image/jpeg",
                format="JPEG",
                width=64,
                height=48,
                file_size=1000,
                subclass=subclass,
                **fields,
            )
        )
    return Image.objects.bulk_create(rows)


def default_subclass(label_class: LabelClass) -> SubClass:
    return label_class.subclasses.get(is_default=True)


def build(name: str = "v1", **params: Any) -> DatasetVersion:
    version = dataset_version_create(name=name, params=DatasetParams(**params), actor=None)
    return dataset_build(version=version)


def splits_of(version: DatasetVersion) -> dict[int, str]:
    return dict(version.assignments.values_list("image_id", "split"))


def class_row(version: DatasetVersion, name: str) -> dict[str, Any]:
    return next(row for row in version.summary["classes"] if row["name"] == name)


def test_a_class_below_the_minimum_is_excluded_with_how_many_more_it_needs() -> None:
    small = LabelClassFactory(name="Robin")
    big = LabelClassFactory(name="Wren")
    add_images(default_subclass(small), 30)
    add_images(default_subclass(big), 45)

    version = build()

    robin = class_row(version, "Robin")
    assert robin["status"] == "below_min"
    assert robin["needs"] == 10
    assert robin["total"] == 0
    assert class_row(version, "Wren")["total"] == 45
    assert version.summary["label_map"] == {"Wren": 0}
    assert version.status == DatasetStatus.READY


def test_an_exploratory_build_takes_classes_a_production_build_leaves_out() -> None:
    robin = LabelClassFactory(name="Robin")
    add_images(default_subclass(robin), 36)

    assert class_row(build("prod"), "Robin")["status"] == "below_min"
    exploratory = build("explore", min_per_class=35, exploratory=True)
    assert exploratory.exploratory
    assert class_row(exploratory, "Robin")["total"] == 36


def test_images_over_the_maximum_overflow_to_test_and_the_rest_split_by_the_ratios() -> None:
    wren = LabelClassFactory(name="Wren")
    add_images(default_subclass(wren), 200)

    row = class_row(build(), "Wren")

    assert (row["train"], row["val"], row["test"]) == (113, 12, 75)


def test_configurable_ratios_give_a_test_split_inside_the_maximum() -> None:
    wren = LabelClassFactory(name="Wren")
    add_images(default_subclass(wren), 100)

    row = class_row(build(ratios=(80, 10, 10)), "Wren")

    assert (row["train"], row["val"], row["test"]) == (80, 10, 10)


def test_staged_images_are_capped_and_real_images_preferred() -> None:
    wren = LabelClassFactory(name="Wren")
    staged = SubClassFactory(label_class=wren, name="studio", source=Source.STAGED)
    real = add_images(default_subclass(wren), 90)
    add_images(staged, 80)

    version = build()

    row = class_row(version, "Wren")
    # 90 real first, then 35 staged fill the maximum of 125; the cap (60) is not reached,
    # but staged images beyond the maximum never overflow to test.
    assert row["real"] == 90
    assert row["staged"] == 35
    assert row["test"] == 0
    assert row["excluded"]["staged_cap"] == 45
    assert set(splits_of(version)) >= {image.pk for image in real}


def test_the_staged_cap_holds_when_real_images_are_few() -> None:
    wren = LabelClassFactory(name="Wren")
    synthetic = SubClassFactory(label_class=wren, name="render", source=Source.SYNTHETIC)
    add_images(default_subclass(wren), 20)
    add_images(synthetic, 100)

    row = class_row(build(), "Wren")

    assert row["real"] == 20
    assert row["synthetic"] == 60
    assert row["excluded"]["staged_cap"] == 40


def test_a_near_duplicate_group_of_real_and_staged_images_keeps_its_real_images_past_the_cap() -> (
    None
):
    wren = LabelClassFactory(name="Wren")
    studio = SubClassFactory(label_class=wren, name="studio", source=Source.STAGED)
    real = add_images(default_subclass(wren), 50)
    staged = add_images(studio, 10)
    group = DuplicateGroup.objects.create(max_distance=8, size=20)
    for image in real[:10] + staged:
        DuplicateMember.objects.create(group=group, image=image)

    version = build(staged_cap=0)

    row = class_row(version, "Wren")
    assigned = splits_of(version)
    assert set(assigned) == {image.pk for image in real}
    assert row["real"] == 50 and row["staged"] == 0
    assert row["excluded"]["staged_cap"] == 10
    assert len({assigned[image.pk] for image in real[:10]}) == 1


def test_sub_classes_merge_into_their_class() -> None:
    wren = LabelClassFactory(name="Wren")
    juvenile = SubClassFactory(label_class=wren, name="juvenile")
    add_images(default_subclass(wren), 25)
    add_images(juvenile, 25)

    version = build()

    assert class_row(version, "Wren")["total"] == 50
    assert set(version.assignments.values_list("label_class__name", flat=True)) == {"Wren"}
    assert version.assignments.filter(subclass=juvenile).count() == 25


def test_holding_classes_trashed_bad_and_benchmark_images_are_left_out_and_counted(
    reviewer: User,
) -> None:
    wren = LabelClassFactory(name="Wren")
    unknown = LabelClassFactory(name="Unknown bird", kind=ClassKind.HOLDING)
    images = add_images(default_subclass(wren), 60)
    add_images(default_subclass(unknown), 50)
    trashed = add_images(default_subclass(wren), 3, status=ImageStatus.TRASHED)
    BadVerdict.objects.create(image=images[0], reason=BadReason.BLURRY)
    benchmark_set_create(
        name="hard wrens",
        kind=BenchmarkKind.DIFFICULT,
        image_ids=[images[1].pk, images[2].pk],
        actor=reviewer,
    )

    version = build()

    assigned = splits_of(version)
    assert images[0].pk not in assigned
    assert images[1].pk not in assigned and images[2].pk not in assigned
    assert not {image.pk for image in trashed} & set(assigned)
    row = class_row(version, "Wren")
    assert row["total"] == 57
    assert row["excluded"] == {"trashed": 3, "bad_image": 1, "benchmark": 2}
    holding = class_row(version, "Unknown bird")
    assert holding["status"] == "holding"
    assert holding["excluded"] == {"holding": 50}
    assert "Unknown bird" not in version.summary["label_map"]


def test_out_of_scope_benchmark_members_carry_no_class(reviewer: User) -> None:
    wren = LabelClassFactory(name="Wren")
    images = add_images(default_subclass(wren), 2)

    benchmark = benchmark_set_create(
        name="not birds",
        kind=BenchmarkKind.OUT_OF_SCOPE,
        image_ids=[i.pk for i in images],
        actor=reviewer,
    )
    again = benchmark_set_create(
        name="not birds", kind=BenchmarkKind.OUT_OF_SCOPE, image_ids=[images[0].pk], actor=None
    )

    assert list(benchmark.members.values_list("label_class", flat=True)) == [None, None]
    assert (benchmark.version, again.version) == (1, 2)


def test_near_duplicate_groups_are_never_split_across_splits() -> None:
    wren = LabelClassFactory(name="Wren")
    images = add_images(default_subclass(wren), 120)
    groups = []
    for start in range(0, 60, 4):  # fifteen groups of four
        group = DuplicateGroup.objects.create(max_distance=8, size=4)
        for image in images[start : start + 4]:
            DuplicateMember.objects.create(group=group, image=image)
        groups.append(group)
    dismissed = DuplicateGroup.objects.create(max_distance=8, size=2, status="dismissed")
    for image in images[60:62]:
        DuplicateMember.objects.create(group=dismissed, image=image, is_open=False)

    for seed in range(5):
        version = build(f"seed {seed}", seed=seed)
        assigned = splits_of(version)
        for group in groups:
            assert len({assigned[m.image_id] for m in group.members.all()}) == 1
        assert dataset_leakage(version=version) == []


def test_the_leakage_report_catches_a_group_found_after_the_build() -> None:
    wren = LabelClassFactory(name="Wren")
    add_images(default_subclass(wren), 50)
    version = build()
    train = version.assignments.filter(split="train").first()
    val = version.assignments.filter(split="val").first()
    assert train and val

    group = DuplicateGroup.objects.create(max_distance=8, size=2, status=DuplicateStatus.OPEN)
    DuplicateMember.objects.create(group=group, image_id=train.image_id)
    DuplicateMember.objects.create(group=group, image_id=val.image_id)

    leaks = dataset_leakage(version=version)
    assert [leak["group_id"] for leak in leaks] == [group.pk]
    assert leaks[0]["splits"] == ["train", "val"]


def test_the_same_parameters_on_the_same_library_give_the_identical_assignment() -> None:
    for name in ("Robin", "Wren", "Tit"):
        label_class = LabelClassFactory(name=name)
        add_images(default_subclass(label_class), 150)

    first = build("a", seed=7)
    second = build("b", seed=7)
    other_seed = build("c", seed=8)

    def assignment(version: DatasetVersion) -> list[tuple[str, str, str]]:
        return sorted(
            version.assignments.values_list("image__sha256", "split", "label_class__name")
        )

    assert assignment(first) == assignment(second)
    assert first.summary["classes"] == second.summary["classes"]
    assert assignment(first) != assignment(other_seed)


def test_a_name_is_used_once_and_bad_parameters_are_refused() -> None:
    build("v1")
    with pytest.raises(DatasetError):
        build("v1")
    with pytest.raises(DatasetError):
        build("v2", min_per_class=50, max_per_class=40)
    with pytest.raises(DatasetError):
        build("v3", ratios=(0, 10, 0))


def test_reviewers_start_a_build_over_the_api_and_read_its_summary(
    reviewer_api: APIClient, api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    wren = LabelClassFactory(name="Wren")
    add_images(default_subclass(wren), 45)

    assert api.post("/api/v1/datasets/", {"name": "v1"}, format="json").status_code == 403
    with django_capture_on_commit_callbacks(execute=False):
        response = reviewer_api.post(
            "/api/v1/datasets/",
            {"name": "v1", "min_per_class": 40, "ratios": [90, 10, 0], "seed": 3},
            format="json",
        )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"]["id"])
    assert job.kind == "curation.build_dataset"

    from curation.tasks import build_dataset

    build_dataset(job_id=job.pk)

    detail = reviewer_api.get(f"/api/v1/datasets/{response.json()['id']}/").json()
    assert detail["status"] == "ready"
    assert detail["params"]["seed"] == 3
    assert detail["summary"]["classes"][0]["total"] == 45
    assert detail["leakage"]["verified"] == []
    assert detail["leakage"]["candidates"]["straddling"] == 0
    assert detail["warnings"] == []
    listing = reviewer_api.get("/api/v1/datasets/").json()
    assert [row["name"] for row in listing["results"]] == ["v1"]
    assert reviewer_api.post("/api/v1/datasets/", {"name": "v1"}, format="json").status_code == 400


def test_the_build_command_prints_a_summary(capsys: Any) -> None:
    import json

    from django.core.management import call_command

    wren = LabelClassFactory(name="Wren")
    add_images(default_subclass(wren), 45)

    call_command("build_dataset", "--name", "cli", "--seed", "1", "--json")

    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "cli"
    assert summary["totals"]["total"] == 45
    assert DatasetAssignment.objects.filter(version__name="cli").count() == 45


def test_the_pages_show_a_version_its_chart_and_the_benchmark_sets(
    client: Any, reviewer: User, django_capture_on_commit_callbacks: Any
) -> None:
    wren = LabelClassFactory(name="Wren")
    LabelClassFactory(name="Robin")
    images = add_images(default_subclass(wren), 45)
    client.force_login(reviewer)

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/datasets/build", {"name": "v1", "ratios": "90,10,0"})
    version = DatasetVersion.objects.get(name="v1")
    assert response.status_code == 302
    from curation.tasks import build_dataset

    assert version.job_id is not None
    build_dataset(job_id=version.job_id)

    page = client.get(f"/datasets/{version.pk}/").content.decode()
    assert "<svg" in page and "min 40" in page and "max 125" in page
    assert "needs 40 more" in page  # Robin has no images
    assert "No open near-duplicate group has members in two splits" in page
    assert "Every class is within the larger of 1 image and 2% of the ratios 90/10/0" in page
    assert "v1" in client.get("/datasets/").content.decode()

    response = client.post(
        "/datasets/benchmarks/new",
        {"name": "hard", "kind": "difficult", "image_ids": f"{images[0].pk}, {images[1].pk}"},
    )
    assert response.status_code == 302
    listing = client.get("/datasets/benchmarks/").content.decode()
    assert "hard" in listing
