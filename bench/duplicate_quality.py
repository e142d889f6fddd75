"""Near-duplicate detection quality on copies of real photographs, side by side with imagededup.

    python bench/duplicate_quality.py [--seeds 0,1,2] [--imagededup .venv-imagededup/bin/python]

The photographs that ship with scikit-image and scikit-learn are cut into distinct tiles (the
originals; tiles of one photograph are distinct images of one kind of subject: grass, brick,
gravel, stars, text...). Each original gets one copy per edit users make, with parameters
drawn per seed: re-encoded as JPEG at quality 10-25, half and double size, cropped by 2-8% of
each side's length in total (unevenly), rotated by 1-5 degrees either way, a caption band or a
small watermark, brightness, contrast and blur changes. The true pairs are every pair within
an original's family (the original and its copies, and the copies among themselves).

Loupe runs its production path in a scratch library: ``image_import`` of every file, the
worker's ``features_make`` (hashes, probe hashes, quality metrics) and the ``duplicates_scan``
a "Scan the library" job runs, at the defaults. Its predicted pairs are the pairs within each
group (groups are tight: each member is verified against the centre). Beside it, in the same
run on the same files: pHash alone at Loupe's old default (8 bits), and imagededup's PHash
(``encode_images`` + ``find_duplicates``) at its default threshold 10, at 16, and at its best
threshold for that seed. imagededup needs PyTorch, so it runs from its own environment:

    python3 -m venv .venv-imagededup && .venv-imagededup/bin/pip install imagededup==0.3.3.post2

It prints precision, recall and F1 over pairs, the recall per edit kind, the false pairs
between distinct tiles of one photograph, and the scan's timings. Target: F1 >= 0.96 with
precision >= 0.99, above imagededup's best.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "loupe-bench-duplicate-quality"
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ["LOUPE_DATA_DIR"] = str(WORK / "data")
os.environ["DATABASE_URL"] = f"sqlite:///{WORK / 'library.sqlite3'}"
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")

import numpy as np  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from PIL import ImageDraw, ImageEnhance, ImageFilter  # noqa: E402

# Real photographs only (no drawings or synthetic patterns); ``cat`` is ``chelsea`` again.
PHOTO_NAMES = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
    "text",
)  # fmt: skip
TILE = 224  # tiles are cut at this size from photographs brought to at most 900 px
MAX_TILES_PER_PHOTO = 8
WORDS = ("stock", "photo", "sample", "draft", "copyright", "archive", "2024", "field", "lab")

Edit = Callable[[PILImage.Image, random.Random], tuple[PILImage.Image, int]]


def photo_tiles() -> list[tuple[str, PILImage.Image]]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos: list[tuple[str, np.ndarray]] = [
        (name, np.asarray(getattr(skimage.data, name)())) for name in PHOTO_NAMES
    ]
    photos += list(zip(("china", "flower"), load_sample_images().images, strict=True))
    tiles = []
    for name, pixels in photos:
        image = PILImage.fromarray(pixels.astype(np.uint8)).convert("RGB")
        scale = 900 / max(image.size)
        if scale < 1:
            image = image.resize(
                (round(image.width * scale), round(image.height * scale)),
                PILImage.Resampling.LANCZOS,
            )
        boxes = [
            (left, top, left + TILE, top + TILE)
            for top in range(0, image.height - TILE + 1, TILE)
            for left in range(0, image.width - TILE + 1, TILE)
        ]
        for box in random.Random(name).sample(boxes, min(len(boxes), MAX_TILES_PER_PHOTO)):
            tiles.append((name, image.crop(box)))
    return tiles


def _crop(image: PILImage.Image, rng: random.Random) -> tuple[PILImage.Image, int]:
    w, h = image.size
    cut_x, cut_y = round(w * rng.uniform(0.02, 0.08)), round(h * rng.uniform(0.02, 0.08))
    left, top = rng.randint(0, cut_x), rng.randint(0, cut_y)
    return image.crop((left, top, w - (cut_x - left), h - (cut_y - top))), 90


def _rotate(image: PILImage.Image, rng: random.Random) -> tuple[PILImage.Image, int]:
    angle = rng.uniform(1, 5) * rng.choice((-1, 1))
    return image.rotate(angle, resample=PILImage.Resampling.BICUBIC), 90


def _text(image: PILImage.Image, rng: random.Random, *, band: bool) -> PILImage.Image:
    w, h = image.size
    words = " ".join(rng.sample(WORDS, 2))
    layer = PILImage.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(10, h // 16)
    if band:
        draw.rectangle((0, h - size - 6, w, h), fill=(0, 0, 0, 200))
        draw.text((6, h - size - 4), words, fill=(255, 255, 255, 255), font_size=size)
    else:
        x, y = rng.randint(0, w // 2), rng.randint(0, h - size - 2)
        draw.text((x, y), f"(c) {words}", fill=(255, 255, 255, 150), font_size=size)
    return PILImage.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


EDITS: dict[str, Edit] = {
    "re-encoded": lambda im, rng: (im, rng.randint(10, 25)),
    "half size": lambda im, rng: (
        im.resize((im.width // 2, im.height // 2), PILImage.Resampling.LANCZOS),
        90,
    ),
    "double size": lambda im, rng: (
        im.resize((im.width * 2, im.height * 2), PILImage.Resampling.BICUBIC),
        90,
    ),
    "cropped": _crop,
    "rotated": _rotate,
    "captioned": lambda im, rng: (_text(im, rng, band=True), 90),
    "watermarked": lambda im, rng: (_text(im, rng, band=False), 90),
    "brightness": lambda im, rng: (
        ImageEnhance.Brightness(im).enhance(rng.choice((rng.uniform(0.7, 0.85), 1.25))),
        90,
    ),
    "contrast": lambda im, rng: (
        ImageEnhance.Contrast(im).enhance(rng.choice((rng.uniform(0.6, 0.8), 1.3))),
        90,
    ),
    "blurred": lambda im, rng: (im.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.0))), 90),
}


def make_files(folder: Path, seed: int) -> list[dict[str, Any]]:
    """Write the originals (PNG) and their copies (JPEG) into ``folder``; one record each."""
    rng = random.Random(seed)
    records = []
    for index, (photo, tile) in enumerate(photo_tiles()):
        name = f"{index:04d}-original.png"
        tile.save(folder / name)
        records.append({"file": name, "family": index, "photo": photo, "edit": "original"})
        for edit, make in EDITS.items():
            copy, quality = make(tile, rng)
            name = f"{index:04d}-{edit.replace(' ', '-')}.jpg"
            copy.save(folder / name, format="JPEG", quality=quality)
            records.append({"file": name, "family": index, "photo": photo, "edit": edit})
    return records


def true_pairs(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    by_family: dict[int, list[str]] = {}
    for record in records:
        by_family.setdefault(record["family"], []).append(record["file"])
    return {
        tuple(sorted(pair))  # type: ignore[misc]
        for files in by_family.values()
        for pair in combinations(files, 2)
    }


def scores(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float, float]:
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def per_edit_recall(found: set[tuple[str, str]], records: list[dict[str, Any]]) -> dict[str, float]:
    original = {r["family"]: r["file"] for r in records if r["edit"] == "original"}
    out = {}
    for edit in EDITS:
        copies = [r for r in records if r["edit"] == edit]
        hit = sum(
            1
            for r in copies
            if tuple(sorted((original[r["family"]], r["file"]))) in found  # type: ignore[comparison-overlap]
        )
        out[edit] = hit / len(copies)
    return out


def same_photo_false_pairs(found: set[tuple[str, str]], records: list[dict[str, Any]]) -> int:
    info = {r["file"]: r for r in records}
    return sum(
        1
        for a, b in found
        if info[a]["family"] != info[b]["family"] and info[a]["photo"] == info[b]["photo"]
    )


def open_pairs(file_of: dict[int, str]) -> set[tuple[str, str]]:
    from curation.models import DuplicateGroup, DuplicateStatus

    found: set[tuple[str, str]] = set()
    for group in DuplicateGroup.objects.filter(status=DuplicateStatus.OPEN).prefetch_related(
        "members"
    ):
        members = [file_of[m.image_id] for m in group.members.all()]
        found |= {tuple(sorted(pair)) for pair in combinations(members, 2)}  # type: ignore[misc]
    return found


def embedding_methods(file_of: dict[int, str], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The combined scan (hash and embedding candidates), after installing the backbone and
    embedding the library as the worker does; and how far the centred similarities of copies
    sit above those of distinct tiles of one photograph (why embeddings alone are no longer a
    scan method)."""
    from django.core.management import call_command

    from curation.models import DuplicateGroup
    from curation.services.duplicates import duplicates_scan
    from inference.embeddings import embedding_matrix, embeddings_compute
    from inference.embeddings.pairs import centred

    call_command("install_backbone", "--json", stdout=io.StringIO())
    started = time.perf_counter()
    embeddings_compute()
    seconds_embed = time.perf_counter() - started
    out: dict[str, Any] = {"seconds_embed": seconds_embed}
    for method in ("all",):
        DuplicateGroup.objects.all().delete()
        started = time.perf_counter()
        scan = duplicates_scan(method=method)
        out[method] = {
            "found": sorted(open_pairs(file_of)),
            "seconds": time.perf_counter() - started,
            "scan": scan.as_dict(),
        }
    ids, matrix = embedding_matrix()
    matrix = centred(matrix, matrix.mean(axis=0), len(ids))
    row = {file_of[int(i)]: k for k, i in enumerate(ids)}
    info = {r["file"]: r for r in records}
    copies, distinct = [], []
    originals = [r["file"] for r in records if r["edit"] == "original"]
    for r in records:
        if r["edit"] != "original":
            original = f"{r['family']:04d}-original.png"
            copies.append(float(matrix[row[original]] @ matrix[row[r["file"]]]))
    for a, b in combinations(originals, 2):
        if info[a]["photo"] == info[b]["photo"]:
            distinct.append(float(matrix[row[a]] @ matrix[row[b]]))
    out["similarity"] = {
        "copies_p5": float(np.percentile(copies, 5)),
        "copies_median": float(np.median(copies)),
        "distinct_p95": float(np.percentile(distinct, 95)),
        "distinct_max": float(max(distinct)),
        "copies_below_distinct_max": int(sum(c <= max(distinct) for c in copies)),
        "copies": len(copies),
    }
    return out


def loupe(
    folder: Path, records: list[dict[str, Any]], *, embeddings: bool = False
) -> dict[str, Any]:
    """Import, hash and scan in a scratch library; run in a process of its own."""
    import django

    django.setup()
    from django.core.management import call_command

    from curation.hamming import pairs_within
    from curation.models import ImportKind
    from curation.services.duplicates import (
        Candidate,
        duplicates_scan,
        library_hashes,
        verify_candidates,
    )
    from curation.services.hashing import features_make
    from curation.services.images import file_inspect, image_import, import_batch_create

    call_command("migrate", verbosity=0)
    batch = import_batch_create(kind=ImportKind.UPLOAD, name="copies", actor=None)
    file_of: dict[int, str] = {}
    for record in records:
        data = (folder / record["file"]).read_bytes()
        result = image_import(
            inspection=file_inspect(data=data, name=record["file"]),
            content=io.BytesIO(data),
            subclass=None,
            actor=None,
            batch=batch,
        )
        assert result.image is not None, result.reason
        file_of[result.image.pk] = record["file"]
    started = time.perf_counter()
    features_make(image_ids=list(file_of))
    seconds_features = time.perf_counter() - started
    started = time.perf_counter()
    scan = duplicates_scan()
    seconds_scan = time.perf_counter() - started
    found = open_pairs(file_of)
    # The verifier alone on the hardest negatives: every pair of distinct tiles of one
    # photograph (their originals, and each original against the other tile's rotated and
    # cropped copies), whatever their hashes.
    id_of = {name: image_id for image_id, name in file_of.items()}
    photo_of = {r["file"]: r["photo"] for r in records}
    family_of = {r["file"]: r["family"] for r in records}
    originals = [r["file"] for r in records if r["edit"] == "original"]
    hard: dict[tuple[int, int], Candidate] = {}
    for a, b in combinations(originals, 2):
        if photo_of[a] != photo_of[b]:
            continue
        for other in (
            b,
            b.replace("original.png", "rotated.jpg"),
            b.replace("original.png", "cropped.jpg"),
        ):
            pair = tuple(sorted((id_of[a], id_of[other])))
            hard[pair] = Candidate(0, "bench")  # type: ignore[index]
    verdicts = verify_candidates(hard)
    accepted = sum(1 for v in verdicts.values() if v.is_copy)
    assert all(family_of[file_of[p[0]]] != family_of[file_of[p[1]]] for p in hard)
    ids, hashes = library_hashes()
    left, right, _ = pairs_within(hashes, 8)
    phash_only = {
        tuple(sorted((file_of[int(ids[a])], file_of[int(ids[b])])))
        for a, b in zip(left.tolist(), right.tolist(), strict=True)
    }
    return {
        **({"embeddings": embedding_methods(file_of, records)} if embeddings else {}),
        "found": sorted(found),
        "phash_only": sorted(phash_only),
        "seconds_features": seconds_features,
        "seconds_scan": seconds_scan,
        "scan": scan.as_dict(),
        "images": len(file_of),
        "hard_negatives": len(hard),
        "hard_accepted": accepted,
    }


IMAGEDEDUP_SCRIPT = """
import json, sys, time, logging
logging.disable(logging.WARNING)
from imagededup.methods import PHash
folder = sys.argv[1]
phasher = PHash(verbose=False)
started = time.perf_counter()
encodings = phasher.encode_images(image_dir=folder)
encode_seconds = time.perf_counter() - started
out = {"encode_seconds": encode_seconds, "thresholds": {}}
for threshold in range(0, 25, 2):
    started = time.perf_counter()
    duplicates = phasher.find_duplicates(
        encoding_map=encodings, max_distance_threshold=threshold, scores=False
    )
    pairs = sorted({tuple(sorted((a, b))) for a, others in duplicates.items() for b in others})
    out["thresholds"][threshold] = {"pairs": pairs, "seconds": time.perf_counter() - started}
print(json.dumps(out))
"""


def imagededup(python: str, folder: Path) -> dict[str, Any] | None:
    if not Path(python).exists():
        print(f"imagededup: {python} not found (see the docstring to install it); skipped")
        return None
    done = subprocess.run(
        [python, "-c", IMAGEDEDUP_SCRIPT, str(folder)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def report(name: str, found: set[tuple[str, str]], truth: set[Any], records: list[Any]) -> float:
    precision, recall, f1 = scores(found, truth)
    false_same = same_photo_false_pairs(found, records)
    print(
        f"  {name:34s} precision {precision:.3f}  recall {recall:.3f}  F1 {f1:.3f}  "
        f"({len(found)} pairs; {false_same} between distinct tiles of one photograph)"
    )
    return f1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--imagededup", default=str(ROOT / ".venv-imagededup" / "bin" / "python"))
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="also install the backbone, embed the library and run the --method all scan",
    )
    parser.add_argument("--run-loupe", nargs=2, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_loupe:
        folder, out = Path(args.run_loupe[0]), Path(args.run_loupe[1])
        records = json.loads((folder / "records.json").read_text())
        out.write_text(json.dumps(loupe(folder, records, embeddings=args.embeddings)))
        return
    print(__doc__.split("\n\n")[2].replace("\n", " ") if __doc__ else "")
    print(
        "design: candidates from pHash and dHash within 8 bits and probe hashes (pHash after a "
        "4 degree rotation or a 5% crop) within 8 bits of a pHash; each candidate verified by "
        "ORB keypoints matched under one RANSAC similarity transform spanning the frame, or, "
        "for low-information images, a pHash within 4 bits and thumbnails correlating >= 0.9. "
        "Why: pHash alone cannot reach crops and rotations without also reaching distinct "
        "images, and a geometric check rejects distinct images that hashes confuse."
    )
    summary: dict[str, list[float]] = {}
    edits: dict[str, list[float]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        shutil.rmtree(WORK, ignore_errors=True)
        folder = WORK / "files"
        folder.mkdir(parents=True)
        records = make_files(folder, seed)
        (folder / "records.json").write_text(json.dumps(records))
        truth = true_pairs(records)
        out = WORK / "loupe.json"
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--run-loupe",
                str(folder),
                str(out),
                *(["--embeddings"] if args.embeddings else []),
            ],
            check=True,
        )
        result = json.loads(out.read_text())
        (folder / "records.json").unlink()
        originals = sum(1 for r in records if r["edit"] == "original")
        print(f"seed {seed}: {originals} originals, {len(records)} images, {len(truth)} true pairs")
        found = {tuple(p) for p in result["found"]}
        summary.setdefault("Loupe (default scan)", []).append(
            report("Loupe, default scan", found, truth, records)
        )
        for edit, recall in per_edit_recall(found, records).items():
            edits.setdefault(edit, []).append(recall)
        if "embeddings" in result:
            embedded = result["embeddings"]
            for method in ("all",):
                row = embedded[method]
                summary.setdefault(f"Loupe, --method {method}", []).append(
                    report(
                        f"Loupe, --method {method}",
                        {tuple(p) for p in row["found"]},
                        truth,
                        records,
                    )
                )
                print(
                    f"    ({row['scan']['candidates']} candidate pairs, "
                    f"scan {row['seconds']:.1f} s;"
                    f" embedding the library took {embedded['seconds_embed']:.1f} s)"
                )
            sim = embedded["similarity"]
            print(
                f"  centred embedding similarity: copies median {sim['copies_median']:.3f}, 5th "
                f"percentile {sim['copies_p5']:.3f}; distinct tiles of one photograph 95th "
                f"percentile {sim['distinct_p95']:.3f}, max {sim['distinct_max']:.3f}; "
                f"{sim['copies_below_distinct_max']} of {sim['copies']} copies at or below that max"
            )
        summary.setdefault("pHash alone, 8 bits", []).append(
            report("pHash alone, 8 bits", {tuple(p) for p in result["phash_only"]}, truth, records)
        )
        theirs = imagededup(args.imagededup, folder)
        if theirs is not None:
            best = (0.0, -1)
            for threshold, row in theirs["thresholds"].items():
                f1 = scores({tuple(p) for p in row["pairs"]}, truth)[2]
                best = max(best, (f1, int(threshold)))
            for threshold, label in ((10, "default"), (16, "16"), (best[1], "best")):
                pairs = {tuple(p) for p in theirs["thresholds"][str(threshold)]["pairs"]}
                summary.setdefault(f"imagededup PHash, {label}", []).append(
                    report(f"imagededup PHash at {threshold} ({label})", pairs, truth, records)
                )
        scan = result["scan"]
        print(
            "  Loupe per edit (recall of original-copy pairs): "
            + ", ".join(f"{e} {r:.2f}" for e, r in per_edit_recall(found, records).items())
        )
        print(
            f"  Loupe timings: features {result['seconds_features']:.1f} s "
            f"({result['seconds_features'] / result['images'] * 1000:.1f} ms/image), scan "
            f"{result['seconds_scan']:.1f} s: search {scan['seconds_search']:.2f} s, "
            f"verification {scan['seconds_verify']:.1f} s for {scan['candidates']} candidate "
            f"pairs ({scan['seconds_verify'] / max(1, scan['candidates']) * 1000:.1f} ms/pair, "
            f"reading both originals included); {scan['pairs']} verified, "
            f"{scan['low_information_pairs']} of them low-information; "
            f"{scan['groups']} groups, largest {scan['largest_group']}"
        )
        print(
            f"  Loupe's verification alone on {result['hard_negatives']} pairs of distinct tiles "
            f"of one photograph (hashes ignored, bits taken as 0): "
            f"{result['hard_accepted']} accepted as copies"
        )
    print("mean over seeds:")
    for name, values in summary.items():
        print(f"  {name:34s} F1 {np.mean(values):.3f} (worst {min(values):.3f})")
    print(
        "  Loupe recall per edit: " + ", ".join(f"{e} {np.mean(v):.2f}" for e, v in edits.items())
    )


if __name__ == "__main__":
    main()
