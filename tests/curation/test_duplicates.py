from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from accounts.models import User
from curation.hamming import brute_force_pairs, pairs_between, pairs_within, popcount, signed_of
from curation.models import (
    DuplicateGroup,
    DuplicateStatus,
    Image,
    ImageFeatures,
    ImageStatus,
    ImportKind,
    LabelEvent,
    LabelReason,
    SubClass,
)
from curation.nearcopy import Verdict
from curation.services import duplicates
from curation.services.duplicate_review import (
    duplicate_group_dismiss,
    duplicate_group_resolve,
    suggested_keeper,
)
from curation.services.duplicates import (
    DEFAULT_MAX_DISTANCE,
    duplicates_scan,
    near_images,
)
from curation.services.hashing import features_make
from curation.services.images import file_inspect, image_import, import_batch_create
from curation.tasks_duplicates import features_and_duplicates_make
from tests.curation.duplicate_photos import (
    DISTINCT,
    EDITS,
    HARD_EDITS,
    PHOTOS,
    jpeg,
    photo,
    tiles,
)
from tests.factories import SubClassFactory

Add = Callable[..., Image]


@pytest.fixture
def add(db: None) -> Add:
    """Import image bytes into the library and hash them, as the worker would."""

    def add_image(data: bytes, subclass: SubClass | None = None, *, hashed: bool = True) -> Image:
        batch = import_batch_create(kind=ImportKind.UPLOAD, name="test", actor=None)
        result = image_import(
            inspection=file_inspect(data=data, name="photo.jpg"),
            content=io.BytesIO(data),
            subclass=subclass,
            actor=None,
            batch=batch,
        )
        assert result.image is not None, result.reason
        if hashed:
            features_and_duplicates_make(image_ids=[result.image.pk])
        return result.image

    return add_image


def _open_groups() -> list[set[int]]:
    return [
        {m.image_id for m in group.members.all()}
        for group in DuplicateGroup.objects.filter(status=DuplicateStatus.OPEN).prefetch_related(
            "members"
        )
    ]


def test_planted_near_duplicates_of_real_photos_are_grouped_at_the_default_threshold(
    add: Add,
) -> None:
    expected = []
    for name in PHOTOS:
        original = photo(name)
        ids = {add(jpeg(original), hashed=False).pk}
        ids |= {add(edit(original), hashed=False).pk for edit in EDITS.values()}
        expected.append(ids)
    distinct = {add(jpeg(photo(name)), hashed=False).pk for name in DISTINCT}

    call_command("find_duplicates", "--json", stdout=io.StringIO())

    groups = _open_groups()
    assert sorted(map(sorted, groups)) == sorted(map(sorted, expected))
    assert not distinct & set().union(*groups)
    assert DuplicateGroup.objects.first().max_distance == DEFAULT_MAX_DISTANCE


def test_crops_rotations_and_heavy_edits_of_real_photos_are_grouped_with_their_original(
    add: Add,
) -> None:
    expected = []
    for name in ("astronaut", "coffee", "camera"):
        original = photo(name)
        ids = {add(jpeg(original), hashed=False).pk}
        ids |= {add(edit(original), hashed=False).pk for edit in HARD_EDITS.values()}
        expected.append(ids)

    result = _hash_and_scan()

    assert sorted(map(sorted, _open_groups())) == sorted(map(sorted, expected))
    # Every copy with its original, and most copies with one another.
    assert result.pairs >= sum(len(ids) - 1 for ids in expected)
    for group in DuplicateGroup.objects.prefetch_related("members"):
        for member in group.members.all():
            if member.image_id != group.centre_id:
                assert member.evidence.endswith(")") and "local features agree" in member.evidence


def test_distinct_photographs_of_one_subject_are_not_grouped(add: Add) -> None:
    # Tiles of one texture look alike to a hash; none is a copy of another.
    for name in ("brick", "gravel", "grass"):
        for tile in tiles(name):
            add(jpeg(tile), hashed=False)
    original = tiles("brick")[5]
    copy = add(jpeg(original.rotate(3, resample=PILImage.Resampling.BICUBIC)), hashed=False)

    result = _hash_and_scan()

    (group,) = _open_groups()
    assert copy.pk in group and len(group) == 2
    assert result.candidates >= result.pairs


def test_a_chain_of_low_information_drawings_does_not_become_a_group(add: Add) -> None:
    from sklearn.datasets import load_digits

    from curation.demo import handwriting

    # Small grey drawings of one digit by different hands, drawn as the demo library draws
    # them: their hashes chain, and none is a copy of another.
    digits = load_digits()
    drawn = [
        add(_png(handwriting(ink)), hashed=False).pk
        for ink in digits.images[digits.target == 1][:40]
    ]
    # The same drawing twice (once re-encoded) is a copy all the same.
    twin = handwriting(digits.images[0])
    twins = {add(_png(twin), hashed=False).pk, add(jpeg(twin.convert("RGB")), hashed=False).pk}

    result = _hash_and_scan()

    groups = _open_groups()
    assert twins in groups
    grouped = set().union(*groups) & set(drawn)
    assert len(grouped) <= 4, f"{len(grouped)} distinct drawings grouped"
    assert all(len(group) <= 3 for group in groups)
    assert result.candidates > result.pairs


def _hash_and_scan() -> duplicates.ScanResult:
    features_make(image_ids=list(Image.objects.values_list("pk", flat=True)))
    return duplicates_scan()


def _png(image: PILImage.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("max_distance", [0, 5, 8])
def test_the_probe_search_returns_exactly_what_brute_force_returns(max_distance: int) -> None:
    base = _random_hashes(3000, seed=4)
    queries = _random_hashes(2000, seed=5)
    queries[:500] = base[1000:1500] ^ np.uint64(0b1011)

    left, right, distances = pairs_between(queries, base, max_distance)

    all_distances = popcount(queries[:, None] ^ base[None, :])
    want_left, want_right = np.nonzero(all_distances <= max_distance)
    assert np.array_equal(left, want_left) and np.array_equal(right, want_right)
    assert np.array_equal(distances, all_distances[want_left, want_right])


@pytest.mark.parametrize("original_first", [True, False])
def test_a_cropped_or_rotated_copy_is_grouped_on_import_whichever_arrives_first(
    add: Add, original_first: bool
) -> None:
    original = photo("coffee")
    edits = [HARD_EDITS["cropped by 8%"], HARD_EDITS["rotated by 5 degrees"]]
    if original_first:
        ids = [add(jpeg(original)).pk] + [add(edit(original)).pk for edit in edits]
    else:
        ids = [add(edit(original)).pk for edit in edits] + [add(jpeg(original)).pk]
    add(jpeg(photo("rocket")))

    assert _open_groups() == [set(ids)]
    group = DuplicateGroup.objects.get()
    assert all(member.evidence for member in group.members.all())


def test_each_new_image_is_checked_against_the_library_on_import(add: Add) -> None:
    original = photo("astronaut")
    first = add(jpeg(original))
    add(jpeg(photo("coffee")))
    assert _open_groups() == []

    copy = add(EDITS["rotated"](original))

    assert _open_groups() == [{first.pk, copy.pk}]
    features = ImageFeatures.objects.get(image=copy)
    assert (
        features.phash is not None and features.decode_mode == "draft-1/4"
    )  # 512 px JPEG: DCT-scaled to 128


def test_find_duplicates_prints_groups_with_ids_hashes_and_distances(add: Add) -> None:
    original = photo("camera")
    a = add(jpeg(original), hashed=False)
    b = add(EDITS["brightened"](original), hashed=False)
    out = io.StringIO()

    call_command("find_duplicates", "--json", "--max-distance", "6", stdout=out)

    report = json.loads(out.getvalue())
    assert report["max_distance"] == 6
    (group,) = report["duplicate_groups"]
    by_id = {image["id"]: image for image in group["images"]}
    assert set(by_id) == {a.pk, b.pk}
    assert by_id[a.pk]["sha256"] == a.sha256
    assert by_id[a.pk]["distances"][str(b.pk)] == by_id[a.pk]["nearest_distance"] <= 6


def _random_hashes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    # Near pairs at every distance up to 14 bits, and a few exact copies.
    for i in range(n // 20):
        value = int(hashes[i])
        for bit in rng.choice(64, size=int(rng.integers(0, 15)), replace=False):
            value ^= 1 << int(bit)
        hashes[n - 1 - i] = value
    hashes[100:104] = hashes[7]
    return hashes


@pytest.mark.parametrize("max_distance", [0, 3, 8, 10, 13])
def test_the_index_returns_exactly_what_brute_force_returns(max_distance: int) -> None:
    hashes = _random_hashes(6000, seed=max_distance)

    found = pairs_within(hashes, max_distance)
    expected = brute_force_pairs(hashes, max_distance)

    assert len(expected[0]) > 0
    for got, want in zip(found, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def _stored_hashes(hashes: list[int]) -> list[Image]:
    """Image rows (no files) with ``hashes`` as their pHashes."""
    from curation.hamming import part_values

    images = Image.objects.bulk_create(
        Image(
            sha256=f"{i:064x}",
            extension="jpg",
            content_type="image/jpeg",
            format="JPEG",
            width=10,
            height=10,
            file_size=1,
        )
        for i in range(len(hashes))
    )
    ImageFeatures.objects.bulk_create(
        ImageFeatures(
            image=image,
            phash=signed_of(h),
            phash_part0=part_values(h, 3)[0],
            phash_part1=part_values(h, 3)[1],
            phash_part2=part_values(h, 3)[2],
        )
        for image, h in zip(images, hashes, strict=True)
    )
    return images


def test_the_database_lookup_returns_exactly_what_brute_force_returns(db: None) -> None:
    hashes = _random_hashes(400, seed=42)
    images = _stored_hashes([int(h) for h in hashes])
    for query in range(0, 400, 7):
        got = near_images(phash=int(hashes[query]), max_distance=8, exclude_id=images[query].pk)
        distances = [bin(int(hashes[query]) ^ int(h)).count("1") for h in hashes]
        want = sorted(
            ((images[i].pk, d) for i, d in enumerate(distances) if d <= 8 and i != query),
            key=lambda item: (item[1], item[0]),
        )
        assert got == want


def test_find_duplicates_prints_thousands_of_grouped_images(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1,200 images in 120 groups of exact copies: reading them back by image id once built an
    # expression deeper than SQLite allows. The images have no files: identical hashes stand
    # for verified copies.
    monkeypatch.setattr(
        duplicates, "verify_pair", lambda cache, pair, candidate: Verdict(True, None, "same hash")
    )
    centres = [int(h) for h in _random_hashes(120, seed=9)[:120]]
    _stored_hashes([centre for centre in centres for _ in range(10)])
    out = io.StringIO()

    call_command("find_duplicates", "--json", "--method", "phash", stdout=out)

    report = json.loads(out.getvalue())
    assert report["images_in_groups"] == 1200
    assert sum(len(group["images"]) for group in report["duplicate_groups"]) == 1200


def _group_of(*images: Image) -> DuplicateGroup:
    group = DuplicateGroup.objects.get(members__image=images[0], status=DuplicateStatus.OPEN)
    assert {m.image_id for m in group.members.all()} == {i.pk for i in images}
    return group


def test_the_suggested_keeper_has_the_highest_resolution_and_takes_the_label(
    add: Add, reviewer: User
) -> None:
    original = photo("coins")
    subclass = SubClassFactory()
    small_labelled = add(jpeg(original.resize((192, 151))), subclass)
    large_unlabelled = add(jpeg(original))
    group = _group_of(small_labelled, large_unlabelled)
    members = list(
        Image.objects.filter(duplicate_members__group=group).select_related("subclass", "features")
    )
    keeper = suggested_keeper(members)
    assert keeper is not None and keeper.pk == large_unlabelled.pk

    duplicate_group_resolve(group_id=group.pk, keeper_id=keeper.pk, actor=reviewer)

    large_unlabelled.refresh_from_db()
    small_labelled.refresh_from_db()
    assert large_unlabelled.subclass_id == subclass.pk
    assert large_unlabelled.status == ImageStatus.ACTIVE
    assert small_labelled.status == ImageStatus.TRASHED
    assert small_labelled.trashed_reason == (
        f"duplicate of image {large_unlabelled.pk}; same label ({subclass})"
    )
    relabel = LabelEvent.objects.get(image=large_unlabelled, reason=LabelReason.DUPLICATE)
    assert relabel.to_subclass_id == subclass.pk and relabel.actor == reviewer
    trash = LabelEvent.objects.get(image=small_labelled, reason=LabelReason.DUPLICATE)
    assert trash.to_status == ImageStatus.TRASHED
    group.refresh_from_db()
    assert group.status == DuplicateStatus.RESOLVED and group.keeper_id == large_unlabelled.pk
    subclass.refresh_from_db()
    assert subclass.image_count == 1


def test_not_duplicates_dismisses_the_group_for_good(add: Add, reviewer: User) -> None:
    original = photo("clock")
    a = add(jpeg(original))
    b = add(EDITS["cropped"](original))
    group = _group_of(a, b)

    duplicate_group_dismiss(group_id=group.pk, actor=reviewer)
    duplicates_scan()
    features_and_duplicates_make(image_ids=[a.pk, b.pk])

    assert _open_groups() == []
    group.refresh_from_db()
    assert group.status == DuplicateStatus.DISMISSED


def test_the_api_lists_groups_and_resolves_one(add: Add, reviewer_api: Any, api: Any) -> None:
    original = photo("astronaut")
    a = add(jpeg(original))
    b = add(EDITS["watermarked"](original))
    group = _group_of(a, b)

    listing = api.get("/api/v1/duplicates/")
    assert listing.status_code == 200
    (row,) = listing.json()["results"]
    assert {m["image"]["id"] for m in row["members"]} == {a.pk, b.pk}
    assert row["suggested_keeper"] in (a.pk, b.pk)

    forbidden = api.post(f"/api/v1/duplicates/{group.pk}/resolve/", {"keeper": a.pk})
    assert forbidden.status_code == 403
    done = reviewer_api.post(f"/api/v1/duplicates/{group.pk}/resolve/", {"keeper": a.pk})
    assert done.status_code == 200, done.content
    assert done.json()["status"] == "resolved"
    again = reviewer_api.post(f"/api/v1/duplicates/{group.pk}/resolve/", {"keeper": a.pk})
    assert again.status_code == 409


def test_the_review_page_shows_a_group_side_by_side_and_keeps_the_chosen_image(
    add: Add, reviewer: User, client: Any
) -> None:
    original = photo("astronaut")
    small = add(jpeg(original.resize((256, 256))))
    large = add(EDITS["re-encoded"](original))
    group = _group_of(small, large)
    client.force_login(reviewer)

    page = client.get("/duplicates/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "suggested keeper" in html and "512 \u00d7 512" in html and "256 \u00d7 256" in html
    assert "0 of 1 group reviewed" in html

    response = client.post(f"/duplicates/{group.pk}/resolve", {"keeper": small.pk})
    assert response.status_code == 302
    large.refresh_from_db()
    assert large.status == ImageStatus.TRASHED
    assert "No open duplicate groups" in client.get(response["Location"]).content.decode()


def test_labellers_cannot_review_duplicates(labeller: User, client: Any) -> None:
    client.force_login(labeller)
    assert client.get("/duplicates/").status_code == 403
