"""Label-error ranking on planted-noise libraries, side by side with cleanlab.

    python bench/label_errors.py [--seeds 5] [--libraries digits,photos]

Builds two real libraries in a scratch data directory (``$TMPDIR/loupe-bench-label-errors``)
and embeds them with the EfficientNet-Lite0 backbone through the worker's own path
(``embeddings_make``):

- **digits**: the demo library's labelled images (scikit-learn's handwritten digits drawn as
  images, printed digits, "Not a digit" photos);
- **photos**: tiles of the real photographs that ship with scikit-image and scikit-learn, one
  class per photograph (textures such as grass, gravel and brick among them, so some classes
  look alike), at two tile sizes.

For each library, noise rate (5% and 10%), noise kind (uniform: any other class; look-alike: the
class whose mean embedding is nearest) and noise seed, the labels of that share of images are
changed, and both rankings run on the same embeddings:

- Loupe's ``label_error_ranking`` (the function the ranking job runs), with its defaults, in
  the order of the Double-check queue the job fills (``Ranking.queue``);
- cleanlab's ``find_label_issues`` on out-of-sample probabilities from
  ``cross_val_predict`` of the standardised logistic regression a user would fit
  (``--cleanlab-C``), ranked by cleanlab's own label-quality score.

It prints, per seed, the recall of the planted errors within the first N (N = the number
planted) for both, and the averages and worst seeds. Target: Loupe ≥ 0.90 on average and
≥ 0.87 on the worst seed, above cleanlab. ``bench/label_error_scale.py`` times the ranking
and the ranking job at up to 100,000 images (10 and 200 classes).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "loupe-bench-label-errors"
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ["LOUPE_DATA_DIR"] = str(WORK / "data")
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")

import numpy as np  # noqa: E402

PHOTO_NAMES = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
    "text",
)  # fmt: skip
TILE_SIZES = (64, 96)
TILE_SIDE = 96  # every tile is stored at this size, whatever it was cut at
THRESHOLD = 0.95  # the ranking's default: its queue is what a reviewer works through


def photo_tiles() -> dict[str, list[Any]]:
    """Per photograph, its tiles as PIL images: non-overlapping grids at each tile size."""
    import skimage.data
    from PIL import Image as PILImage
    from sklearn.datasets import load_sample_images

    photos: dict[str, np.ndarray] = {}
    for name in PHOTO_NAMES:
        photos[name] = np.asarray(getattr(skimage.data, name)())
    for name, pixels in zip(("china", "flower"), load_sample_images().images, strict=True):
        photos[name] = np.asarray(pixels)
    tiles: dict[str, list[Any]] = {}
    for name, pixels in photos.items():
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[:, :, :3]
        image = PILImage.fromarray(pixels.astype(np.uint8)).convert("RGB")
        # Large photographs are brought to about 512 px so that no class dwarfs the others.
        scale = 512 / max(image.size)
        if scale < 1:
            image = image.resize(
                (round(image.width * scale), round(image.height * scale)),
                PILImage.Resampling.LANCZOS,
            )
        cut = []
        for size in TILE_SIZES:
            for top in range(0, image.height - size + 1, size):
                for left in range(0, image.width - size + 1, size):
                    tile = image.crop((left, top, left + size, top + size))
                    cut.append(tile.resize((TILE_SIDE, TILE_SIDE), PILImage.Resampling.LANCZOS))
        tiles[name] = cut
    return tiles


def library_features(library: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features n x d as the ranking job reads them, labels, class names) of a library, built
    and embedded once (``library_build``) and then read from a cache file."""
    cache = WORK / f"features-{library}.npz"
    if not cache.exists():
        # Each library has a database of its own, and Django's settings are read once per
        # process: build it in a process of its own.
        subprocess.run([sys.executable, __file__, "--build", library], check=True)
    saved = np.load(cache)
    return saved["features"], saved["labels"], [str(n) for n in saved["names"]]


def library_build(library: str) -> None:
    cache = WORK / f"features-{library}.npz"
    import django

    db = WORK / f"{library}.sqlite3"
    db.unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    django.setup()
    from django.core.management import call_command

    from curation.models import ImportKind, LabelClass, SubClass
    from curation.services.images import file_inspect, image_import, import_batch_create
    from curation.services.taxonomy import class_create
    from inference.embeddings import embedding_matrix, embeddings_make
    from inference.label_errors import labelled_images

    call_command("migrate", verbosity=0)
    call_command("install_backbone", "--json", stdout=io.StringIO())
    if library == "digits":
        call_command("demo", "--no-thumbnails", "--json", stdout=io.StringIO())
    else:
        batch = import_batch_create(kind=ImportKind.UPLOAD, name="tiles", actor=None)
        for name, tiles in photo_tiles().items():
            label_class = class_create(name=name, actor=None)
            subclass = SubClass.objects.get(label_class=label_class, is_default=True)
            for tile in tiles:
                out = io.BytesIO()
                tile.save(out, format="JPEG", quality=90)
                data = out.getvalue()
                image_import(
                    inspection=file_inspect(data=data, name=f"{name}.jpg"),
                    content=io.BytesIO(data),
                    subclass=subclass,
                    actor=None,
                    batch=batch,
                )
    ids, class_ids = labelled_images()
    started = time.perf_counter()
    for start in range(0, len(ids), 256):
        embeddings_make(image_ids=ids[start : start + 256])
    print(f"{library}: embedded {len(ids)} images in {time.perf_counter() - started:.1f} s")
    embedded, features = embedding_matrix(image_ids=ids)
    class_of = dict(zip(ids, class_ids, strict=True))
    names = dict(LabelClass.objects.values_list("pk", "name"))
    order = sorted({class_of[int(i)] for i in embedded}, key=lambda c: names[c])
    index = {c: k for k, c in enumerate(order)}
    labels = np.array([index[class_of[int(i)]] for i in embedded], dtype=np.int64)
    class_names = [names[c] for c in order]
    np.savez(cache, features=features, labels=labels, names=np.array(class_names))


def plant_noise(
    labels: np.ndarray, features: np.ndarray, *, rate: float, kind: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, indices changed): ``rate`` of the images, chosen with ``seed``, get
    another class: any other one (uniform) or the one whose mean embedding is nearest their
    own class's (look-alike)."""
    rng = np.random.default_rng(seed)
    classes = int(labels.max()) + 1
    changed = np.sort(rng.choice(len(labels), size=round(rate * len(labels)), replace=False))
    noisy = labels.copy()
    if kind == "uniform":
        shift = rng.integers(1, classes, size=len(changed))
        noisy[changed] = (labels[changed] + shift) % classes
    else:
        centres = np.stack([features[labels == c].mean(axis=0) for c in range(classes)])
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        similarity = centres @ centres.T
        np.fill_diagonal(similarity, -np.inf)
        noisy[changed] = similarity.argmax(axis=1)[labels[changed]]
    return noisy, changed


def cleanlab_ranking(
    features: np.ndarray, labels: np.ndarray, *, C: float, seed: int
) -> tuple[np.ndarray, int]:
    """Image indices, likeliest label error first, as a cleanlab user would get them."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1):
        probabilities = cross_val_predict(
            model, features, labels, cv=folds, method="predict_proba", n_jobs=2
        )
    ranked = find_label_issues(
        labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    # find_label_issues flags a set; its ranking continues with the rest by the same score.
    rest = np.setdiff1d(np.arange(len(labels)), ranked)
    self_confidence = probabilities[rest, labels[rest]]
    return np.concatenate([ranked, rest[np.argsort(self_confidence, kind="stable")]]), len(ranked)


def recall_at_n(order: np.ndarray, changed: np.ndarray) -> float:
    return float(np.isin(order[: len(changed)], changed).sum() / len(changed))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--libraries", default="digits,photos")
    parser.add_argument("--rates", default="0.05,0.10")
    parser.add_argument("--kinds", default="uniform,lookalike")
    parser.add_argument("--cleanlab-C", type=float, default=1.0)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.build:
        library_build(args.build)
        return
    import django

    django.setup()
    from inference.label_errors import label_error_ranking

    for library in args.libraries.split(","):
        features, labels, names = library_features(library)
        print(f"\n{library}: {len(labels)} images, {len(names)} classes, d = {features.shape[1]}")
        for rate in (float(r) for r in args.rates.split(",")):
            for kind in args.kinds.split(","):
                ours, theirs = [], []
                for seed in range(args.seeds):
                    noisy, changed = plant_noise(labels, features, rate=rate, kind=kind, seed=seed)
                    started = time.perf_counter()
                    ranking = label_error_ranking(features, noisy)
                    queue, _ = ranking.queue(threshold=THRESHOLD)
                    seconds = time.perf_counter() - started
                    ours.append(recall_at_n(queue, changed))
                    started = time.perf_counter()
                    order, flagged = cleanlab_ranking(features, noisy, C=args.cleanlab_C, seed=seed)
                    cl_seconds = time.perf_counter() - started
                    theirs.append(recall_at_n(order, changed))
                    print(
                        f"  {rate:.0%} {kind:9} seed {seed}: N = {len(changed)}; Loupe "
                        f"{ours[-1]:.3f} ({seconds:.1f} s), cleanlab {theirs[-1]:.3f} "
                        f"({cl_seconds:.1f} s, flagged {flagged})"
                    )
                print(
                    f"  {rate:.0%} {kind:9} mean: Loupe {np.mean(ours):.3f} (worst "
                    f"{min(ours):.3f}), cleanlab {np.mean(theirs):.3f} (worst {min(theirs):.3f})"
                )


if __name__ == "__main__":
    main()
