"""Chains of near-duplicates (A near B, B near C, …) are reviewed in tight groups. (How a
dataset build places the groups: tests/curation/test_dataset_split.py.)

These tests are about grouping, so the images have hashes but no files, and verification is
replaced by a judge that calls two images copies when their pHashes are within 8 bits: a
chain of verified copies (frames of a video) is what the grouping must cut. Verification of
real photographs is tested in test_duplicates.py."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from curation.hamming import part_values, signed_of, star_groups
from curation.models import (
    DuplicateGroup,
    DuplicateStatus,
    Image,
    ImageFeatures,
    SubClass,
)
from curation.nearcopy import Verdict
from curation.services import duplicates
from curation.services.duplicate_review import (
    duplicate_group_resolve,
)
from curation.services.duplicates import (
    Candidate,
    duplicates_check,
    duplicates_scan,
)
from tests.curation.test_datasets import add_images

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def copies_within_8_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    def judge(cache: object, pair: tuple[int, int], candidate: Candidate) -> Verdict:
        hashes = dict(
            ImageFeatures.objects.filter(image_id__in=pair).values_list("image_id", "phash")
        )
        bits = distance(hashes[pair[0]], hashes[pair[1]])
        return Verdict(bits <= 8, None, f"judged by pHash alone ({bits} bits)")

    monkeypatch.setattr(duplicates, "verify_pair", judge)


STEP_BITS = 3  # each image of a chain is 3 bits from the one before: 6 to the next but one


def chain_hashes(length: int, *, seed: int = 1) -> list[int]:
    """Unsigned pHashes that step ``STEP_BITS`` fresh bits at a time, so images ``i`` and
    ``j`` are exactly ``STEP_BITS * |i - j|`` bits apart: within 8 bits of the next two
    only, and the ends of a chain of 20 are 57 bits apart."""
    rng = random.Random(seed)
    bits = rng.sample(range(64), 64)
    value = rng.getrandbits(64)
    hashes = [value]
    for step in range(length - 1):
        for bit in bits[step * STEP_BITS : (step + 1) * STEP_BITS]:
            value ^= 1 << bit
        hashes.append(value)
    return hashes


def distance(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


def add_hashed(hashes: list[int], subclass: SubClass | None = None) -> list[Image]:
    """Image rows (no files) with the given pHashes, as the worker would have hashed them."""
    images = add_images(cast(SubClass, subclass), len(hashes))
    ImageFeatures.objects.bulk_create(
        ImageFeatures(
            image=image,
            phash=signed_of(value),
            phash_part0=part_values(value, 3)[0],
            phash_part1=part_values(value, 3)[1],
            phash_part2=part_values(value, 3)[2],
        )
        for image, value in zip(images, hashes, strict=True)
    )
    return images


def open_groups() -> list[DuplicateGroup]:
    return list(
        DuplicateGroup.objects.filter(status=DuplicateStatus.OPEN).prefetch_related("members")
    )


def members(group: DuplicateGroup) -> set[int]:
    return {member.image_id for member in group.members.all()}


# --- Star clustering -------------------------------------------------------------------------


def path(length: int) -> dict[int, dict[int, float]]:
    """A path graph 0 - 1 - 2 - …: each node near the next only."""
    graph: dict[int, dict[int, float]] = {node: {} for node in range(length)}
    for node in range(length - 1):
        graph[node][node + 1] = graph[node + 1][node] = 1.0
    return graph


def test_a_path_is_cut_into_stars_of_three_whose_members_neighbour_their_centre() -> None:
    groups = star_groups(path(9))

    assert groups == [(1, [0, 1, 2]), (4, [3, 4, 5]), (7, [6, 7, 8])]


def test_a_tight_component_stays_one_group() -> None:
    clique = {a: {b: 2.0 for b in range(5) if b != a} for a in range(5)}
    # A square: no image is near all the others, but the one left out has no free
    # neighbour and joins the group of its nearest neighbour.
    square: dict[int, dict[int, float]] = {
        10: {11: 2, 13: 4},
        11: {10: 2, 12: 2},
        12: {11: 2, 13: 2},
        13: {12: 2, 10: 4},
    }

    assert star_groups(clique) == [(0, [0, 1, 2, 3, 4])]
    assert star_groups(square) == [(10, [10, 11, 12, 13])]


def test_an_image_left_alone_joins_the_group_of_its_nearest_neighbour() -> None:
    # Two stars (centres 0 and 5) take every neighbour of 9: 9 goes with its nearest, 4.
    graph: dict[int, dict[int, float]] = {n: {} for n in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)}

    def edge(a: int, b: int, d: float) -> None:
        graph[a][b] = graph[b][a] = d

    for leaf in (1, 2, 3, 4):
        edge(0, leaf, 2)
    for leaf in (6, 7, 8, 3):
        edge(5, leaf, 2)
    edge(9, 4, 3)
    edge(9, 6, 5)

    groups = star_groups(graph)

    assert groups == [(0, [0, 1, 2, 3, 4, 9]), (5, [5, 6, 7, 8])]


def test_the_groups_do_not_depend_on_the_order_of_the_graph() -> None:
    graph = path(30)
    for a, b in ((3, 7), (7, 12), (12, 20), (20, 3)):
        graph[a][b] = graph[b][a] = 1.0
    shuffled_nodes = list(graph)
    random.Random(5).shuffle(shuffled_nodes)
    shuffled = {
        node: dict(random.Random(node).sample(list(graph[node].items()), len(graph[node])))
        for node in shuffled_nodes
    }

    assert star_groups(shuffled) == star_groups(graph)


# --- Scans -----------------------------------------------------------------------------------


def test_a_chain_is_reviewed_in_several_tight_groups_of_one_component() -> None:
    hashes = chain_hashes(20)
    chain = add_hashed(hashes)
    hash_of = {image.pk: value for image, value in zip(chain, hashes, strict=True)}
    assert distance(hashes[0], hashes[-1]) == 57

    result = duplicates_scan(max_distance=8)

    groups = open_groups()
    assert len(groups) == 4 and result.as_dict()["largest_group"] == 5
    assert {group.component for group in groups} == {groups[0].pk}
    grouped = set().union(*(members(group) for group in groups))
    # An image whose neighbours all went to other centres, and which is not a copy of the
    # centre of its nearest neighbour's group, is left out rather than chained in.
    assert len(grouped) + result.left_out == 20 and grouped <= set(hash_of)
    for group in groups:
        assert group.centre_id is not None and group.centre_id in members(group)
        assert all(distance(hash_of[group.centre_id], hash_of[m]) <= 8 for m in members(group))
        for member in group.members.all():
            if member.image_id != group.centre_id:
                assert f"from image {group.centre_id}; judged by pHash alone" in member.evidence
                assert member.distance == distance(
                    hash_of[group.centre_id], hash_of[member.image_id]
                )
    assert result.components == 1 and result.largest_component == 20


def test_small_tight_components_come_out_as_one_group_each() -> None:
    first = add_hashed([0b1, 0b11, 0b111])
    second = add_hashed([0xFFFF_FFFF_0000_0000, 0xFFFF_FFFF_0000_0003])

    duplicates_scan(max_distance=8)

    groups = sorted(open_groups(), key=lambda group: group.pk)
    assert [members(group) for group in groups] == [
        {image.pk for image in first},
        {image.pk for image in second},
    ]
    assert groups[0].component != groups[1].component


def test_resolving_one_part_of_a_chain_leaves_the_others_open(reviewer: User) -> None:
    add_hashed(chain_hashes(20))
    duplicates_scan(max_distance=8)
    groups = sorted(open_groups(), key=lambda group: group.pk)
    keeper = groups[1].centre_id
    assert keeper is not None

    duplicate_group_resolve(group_id=groups[1].pk, keeper_id=keeper, actor=reviewer)

    assert {group.pk for group in open_groups()} == {groups[0].pk, groups[2].pk, groups[3].pk}
    trashed = Image.objects.filter(status="trashed").values_list("pk", flat=True)
    assert set(trashed) == members(groups[1]) - {keeper}


# --- On import -------------------------------------------------------------------------------


def test_images_arriving_one_by_one_along_a_chain_form_tight_groups_of_one_component() -> None:
    hashes = chain_hashes(20)
    chain = add_hashed(hashes)
    hash_of = {image.pk: value for image, value in zip(chain, hashes, strict=True)}

    for image in chain:  # the worker checks each image as it arrives
        duplicates_check(image_ids=[image.pk], max_distance=8)

    groups = open_groups()
    assert len(groups) >= 3
    assert len({group.component for group in groups}) == 1
    assert set().union(*(members(group) for group in groups)) == set(hash_of)
    for group in groups:
        # Every member is a verified copy of the centre: never the whole chain.
        assert group.centre_id is not None
        assert all(distance(hash_of[group.centre_id], hash_of[m]) <= 8 for m in members(group))
    assert max(group.size for group in groups) < 10
    assert duplicates_check(image_ids=[image.pk for image in chain], max_distance=8) == 20
    assert [members(group) for group in open_groups()] == [members(group) for group in groups]


def test_a_new_image_between_two_groups_joins_one_and_merges_their_components() -> None:
    # Two tight pairs 12 bits apart; the newcomer sits 6 bits from each side.
    left = add_hashed([0, 0b11])
    right = add_hashed([0xFFF, 0xFFF ^ 0b11])
    duplicates_check(image_ids=[left[1].pk, right[1].pk], max_distance=8)
    before = sorted(open_groups(), key=lambda group: group.pk)
    assert [members(g) for g in before] == [{i.pk for i in left}, {i.pk for i in right}]
    assert before[0].component != before[1].component

    (newcomer,) = add_hashed([0b111111])  # 6 bits from 0, 6 from 0xFFF
    duplicates_check(image_ids=[newcomer.pk], max_distance=8)

    after = sorted(open_groups(), key=lambda group: group.pk)
    assert [g.pk for g in after] == [g.pk for g in before]  # no merge of the groups
    assert newcomer.pk in members(after[0]) | members(after[1])
    assert len(after[0].members.all()) + len(after[1].members.all()) == 5
    assert after[0].component == after[1].component == before[0].component


# --- Review ----------------------------------------------------------------------------------


def test_the_review_page_and_api_show_which_part_of_a_chain_a_group_is(
    reviewer: User, client: Any, reviewer_api: APIClient
) -> None:
    add_hashed(chain_hashes(20))
    duplicates_scan(max_distance=8)
    groups = sorted(open_groups(), key=lambda group: group.pk)
    client.force_login(reviewer)

    page = client.get(f"/duplicates/?group={groups[1].pk}").content.decode()
    assert "Part 2 of 4 of a chain of 20 near-duplicate images" in page
    assert f'?group={groups[0].pk}">previous part' in page
    assert f'?group={groups[2].pk}">next part' in page

    listed = reviewer_api.get("/api/v1/duplicates/").json()["results"]
    assert [row["component"] for row in listed] == [
        {"key": groups[0].pk, "part": part, "parts": 4, "images": 20} for part in (1, 2, 3, 4)
    ]

    keeper = min(members(groups[1]))
    done = reviewer_api.post(f"/api/v1/duplicates/{groups[1].pk}/resolve/", {"keeper": keeper})
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    assert done.json()["component"]["part"] == 2
    dismissed = reviewer_api.post(f"/api/v1/duplicates/{groups[2].pk}/dismiss/")
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"


def test_a_group_that_is_its_whole_component_shows_no_part(
    reviewer: User, client: Any, reviewer_api: APIClient
) -> None:
    add_hashed([0b1, 0b11])
    duplicates_scan(max_distance=8)
    client.force_login(reviewer)

    assert 'id="group-component"' not in client.get("/duplicates/").content.decode()
    (row,) = reviewer_api.get("/api/v1/duplicates/").json()["results"]
    assert row["component"] is None
