"""The fast paths of near-duplicate search give exactly what the slow, obvious ones give: the
threaded Hamming search what brute force gives, the stacked pHashes what imagehash gives,
the histogram metrics what numpy's statistics give, and the one-statement database look-up
what a comparison with every stored hash gives."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pytest
import skimage.data
from PIL import Image as PILImage

from curation import hamming
from curation.hamming import (
    brute_force_pairs,
    pairs_between,
    pairs_within,
    part_values,
    popcount,
    signed_of,
)
from curation.imaging import open_for_analysis
from curation.models import Image, ImageFeatures, ImageProbe, ImageStatus
from curation.nearcopy import phash_values, probe_hashes, probe_images
from curation.services.duplicates import near_candidates
from curation.services.hashing import analyse, dhash_value, hash_value, probe_rows
from curation.services.quality import quality_metrics


def _hashes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)


def _near(values: np.ndarray, rng: np.random.Generator, bits: int) -> np.ndarray:
    out = values.copy()
    for i in range(len(out)):
        for bit in rng.choice(64, size=int(rng.integers(0, bits + 1)), replace=False):
            out[i] ^= np.uint64(1 << int(bit))
    return out


@pytest.mark.parametrize("max_distance", [0, 4, 8])
def test_seven_probe_hashes_per_image_against_the_library_find_what_brute_force_finds(
    max_distance: int,
) -> None:
    # More queries than base hashes, as in a scan: the buckets are built on the queries.
    rng = np.random.default_rng(max_distance)
    base = _hashes(700, seed=1)
    queries = _hashes(7 * 700, seed=2)
    queries[:600] = _near(base[rng.integers(0, 700, size=600)], rng, 10)

    left, right, distances = pairs_between(queries, base, max_distance)

    all_distances = popcount(queries[:, None] ^ base[None, :])
    want_left, want_right = np.nonzero(all_distances <= max_distance)
    assert len(want_left) > 0
    np.testing.assert_array_equal(left, want_left)
    np.testing.assert_array_equal(right, want_right)
    np.testing.assert_array_equal(distances, all_distances[want_left, want_right])


def test_large_buckets_of_identical_and_similar_hashes_are_searched_in_pieces_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blank frames share one hash; low-information images share most of their bits.
    monkeypatch.setattr(hamming, "_MAX_EXPANDED", 500)
    hashes = _hashes(4000, seed=3)
    hashes[:900] = hashes[0]
    hashes[900:1500] &= np.uint64(0xFFFF)

    found = pairs_within(hashes, 8)
    expected = brute_force_pairs(hashes, 8)

    assert len(expected[0]) > 900 * 899 // 2
    for got, want in zip(found, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    left, right, _ = pairs_between(hashes[:1200], hashes[600:2000], 8)
    distances = popcount(hashes[:1200, None] ^ hashes[None, 600:2000])
    want_left, want_right = np.nonzero(distances <= 8)
    np.testing.assert_array_equal(left, want_left)
    np.testing.assert_array_equal(right, want_right)


def test_the_search_gives_the_same_pairs_on_one_thread_as_on_several(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hashes = _hashes(50_000, seed=4)
    hashes[25_000:26_000] = _near(hashes[:1000], np.random.default_rng(5), 8)
    several = pairs_within(hashes, 8)
    monkeypatch.setattr(hamming, "search_threads", lambda: 1)

    one = pairs_within(hashes, 8)

    assert len(one[0]) >= 1000
    for a, b in zip(one, several, strict=True):
        np.testing.assert_array_equal(a, b)


def _greys() -> list[PILImage.Image]:
    rng = np.random.default_rng(6)
    images = []
    for name in ("astronaut", "camera", "coffee", "page", "checkerboard", "moon"):
        grey = PILImage.fromarray(getattr(skimage.data, name)()).convert("L")
        images += [grey.resize(size) for size in ((240, 135), (61, 61), (7, 300), (1, 1))]
    # Flat images: their DCT is all ties around the median.
    images += [PILImage.new("L", (50, 40), value) for value in (0, 128, 255)]
    images += [PILImage.fromarray(rng.integers(0, 256, (90, 70), dtype=np.uint8))]
    return images


def test_stacked_phashes_are_imagehash_phashes_bit_for_bit() -> None:
    images = _greys()
    images += [probe for image in images[:8] for probe in probe_images(image)]

    got = phash_values(images)

    assert got == [hash_value(imagehash.phash(image)) for image in images]
    assert probe_hashes(images[0]) == [
        hash_value(imagehash.phash(probe)) for probe in probe_images(images[0])
    ]


def test_the_dhash_is_imagehash_dhash_bit_for_bit() -> None:
    for image in _greys():
        assert dhash_value(image) == hash_value(imagehash.dhash(image))


def test_metrics_from_the_histogram_are_numpy_percentiles_and_deviation() -> None:
    rng = np.random.default_rng(7)
    photo = PILImage.fromarray(skimage.data.coffee()).resize((240, 160))
    pixels = np.asarray(photo.convert("YCbCr")).copy()
    pixels[..., 0] = np.clip(pixels[..., 0] + rng.integers(-20, 20, pixels.shape[:2]), 0, 255)
    image = PILImage.fromarray(pixels, mode="YCbCr")
    grey = pixels[..., 0].astype(np.float64)

    metrics = quality_metrics(pixels=image, width=2400, height=1600)

    p05, p50, p95 = np.percentile(grey, [5, 50, 95])
    assert metrics["brightness_p05"] == pytest.approx(p05, abs=1e-9)
    assert metrics["brightness_p50"] == pytest.approx(p50, abs=1e-9)
    assert metrics["brightness_p95"] == pytest.approx(p95, abs=1e-9)
    assert metrics["contrast"] == pytest.approx(grey.std(), rel=1e-9)
    assert metrics["colourfulness"] > 10 and not metrics["is_grayscale"]


def test_the_worker_analysis_stores_imagehash_values_of_the_decoded_luma() -> None:
    out = io.BytesIO()
    PILImage.fromarray(skimage.data.astronaut()).resize((1024, 768)).save(out, format="JPEG")

    values = analyse(io.BytesIO(out.getvalue()), width=1024, height=768)

    grey = open_for_analysis(io.BytesIO(out.getvalue())).image.getchannel(0)
    assert values["decode_mode"] == "draft-1/4"
    assert values["phash"] & (2**64 - 1) == hash_value(imagehash.phash(grey))
    assert values["dhash"] & (2**64 - 1) == hash_value(imagehash.dhash(grey))
    assert values["probes"] == [hash_value(imagehash.phash(p)) for p in probe_images(grey)]


@pytest.mark.django_db
def test_the_import_lookup_finds_what_a_comparison_with_every_stored_hash_finds() -> None:
    rng = np.random.default_rng(8)
    n = 600
    phashes = _hashes(n, seed=9)
    probes = _hashes(7 * n, seed=10)
    phashes[300:400] = _near(phashes[:100], rng, 9)  # near pHashes
    phashes[400:500] = _near(probes[rng.integers(0, 7 * 100, size=100)], rng, 9)  # near a probe
    probes[7 * 500 : 7 * 600 : 7] = _near(phashes[100:200], rng, 9)  # a probe near a pHash
    images = Image.objects.bulk_create(
        Image(
            sha256=f"{i:064x}",
            extension="jpg",
            content_type="image/jpeg",
            format="JPEG",
            width=10,
            height=10,
            file_size=1,
            status=ImageStatus.TRASHED if i % 50 == 7 else ImageStatus.ACTIVE,
        )
        for i in range(n)
    )
    ids = [image.pk for image in images]
    ImageFeatures.objects.bulk_create(
        ImageFeatures(
            image=image,
            phash=signed_of(int(phashes[i])),
            phash_part0=part_values(int(phashes[i]), 3)[0],
            phash_part1=part_values(int(phashes[i]), 3)[1],
            phash_part2=part_values(int(phashes[i]), 3)[2],
        )
        for i, image in enumerate(images)
    )
    ImageProbe.objects.bulk_create(
        row
        for i, image in enumerate(images)
        for row in probe_rows(image.pk, [int(v) for v in probes[7 * i : 7 * i + 7]])
    )
    active = np.array([i % 50 != 7 for i in range(n)])

    with_candidates = 0
    for query in [*range(0, 200, 3), *range(300, 600, 3)]:
        own = phashes[query]
        own_probes = probes[7 * query : 7 * query + 7]
        got = near_candidates(
            phash=int(own),
            probes=[int(p) for p in own_probes],
            max_distance=8,
            exclude_id=ids[query],
        )

        direct = popcount(np.concatenate([[own], own_probes])[:, None] ^ phashes).min(axis=0)
        reverse = popcount(probes ^ own).reshape(n, 7).min(axis=1)
        best = np.minimum(direct, reverse)
        want = {ids[i]: int(best[i]) for i in range(n) if best[i] <= 8 and active[i] and i != query}
        assert {image_id: c.bits for image_id, c in got.items()} == want
        with_candidates += bool(want)
    assert with_candidates > 100
