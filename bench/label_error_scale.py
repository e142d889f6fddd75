"""Label-error ranking at scale: how long it takes, and how much memory, from 10,000 to
100,000 images with embeddings stored, at 10 and 200 classes.

    python bench/label_error_scale.py [--sizes 10000,30000,100000] [--classes 10,200]
                                      [--job] [--job-images 100000]

The embeddings are synthetic but shaped like the stored ones: d = 1,280 (the backbone's
pooled output), L2-normalised and rounded through float16 as ``ImageEmbedding`` stores them.
Each class is a Gaussian cluster around its centre in a 64-dimensional subspace, under
isotropic noise in all 1,280 dimensions and a common offset (pooled activations are positive),
spread so that the out-of-sample heads are right about 90% of the time; 5% of the labels are
then moved to another class at random, as planted errors.

**The ranking** (always): ``label_error_ranking`` and ``Ranking.queue``, the functions the
job runs, with the job's defaults (5 folds, 3 repeats, 256 components), one process per size
so that each reports its own peak memory (resident set, on top of the embeddings it holds).
It prints the seconds, split into the heads' fits and the rest (the projection, scoring,
averaging), and the recall of the planted errors in the first N of the queue as a check that
the ranking still finds them.

**The job** (``--job``): the ranking job end to end on PostgreSQL (database
``loupe_label_error_scale``, dropped and created again) for ``--job-images`` images at each
class count: image rows (no files) and their stored embeddings are written first, then a job
from ``label_error_ranking_start`` is run by the Celery task ``inference.rank_label_errors``
in-process, as a worker runs it, in a process of its own. A thread reads the job's progress
from the database every few seconds, as the jobs page does. It prints the seconds to done,
the progress it saw, the size of the Double-check queue and the peak memory.

Target: 100,000 images in ≤ 10 minutes at 10 and at 200 classes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "loupe-bench-label-error-scale"
DATABASE = "loupe_label_error_scale"
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ["LOUPE_DATA_DIR"] = str(WORK)
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")

import numpy as np  # noqa: E402

DIMENSIONS = 1280  # EfficientNet-Lite0's pooled embedding, as install_backbone stores it
LATENT = 64
NOISE_RATE = 0.05
TARGET_SECONDS = 600.0
# The spread of each class around its centre, per class count: about 90% out-of-sample
# accuracy on the clean labels at 10,000 images.
WITHIN = {10: 2.3, 200: 1.5}
CHUNK = 10_000


def synthetic(
    images: int, classes: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings n x 1,280 float32 as the job reads them, noisy labels, indices of the
    planted errors), made a block of rows at a time so that making them costs little more
    memory than holding them."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((LATENT, DIMENSIONS)).astype(np.float32) / np.sqrt(LATENT)
    centres = rng.standard_normal((classes, LATENT)).astype(np.float32)
    labels = rng.integers(0, classes, size=images)
    within = WITHIN.get(classes, 2.0)
    features = np.empty((images, DIMENSIONS), dtype=np.float32)
    for start in range(0, images, CHUNK):
        rows = labels[start : start + CHUNK]
        latent = centres[rows] + within * rng.standard_normal((len(rows), LATENT), np.float32)
        block = latent @ basis + rng.standard_normal((len(rows), DIMENSIONS), np.float32)
        block += 1.0
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        features[start : start + len(rows)] = block.astype(np.float16)
    changed = np.sort(rng.choice(images, size=round(NOISE_RATE * images), replace=False))
    noisy = labels.copy()
    noisy[changed] = (labels[changed] + rng.integers(1, classes, size=len(changed))) % classes
    return features, noisy, changed


# --- Memory ---------------------------------------------------------------------------------


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_reset() -> None:
    """Start the peak resident set from now (Linux: writing 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


# --- The ranking ------------------------------------------------------------------------------


def ranking_one(images: int, classes: int) -> dict[str, Any]:
    import django

    django.setup()
    from inference.label_errors import discriminant_fit, label_error_ranking

    features, noisy, changed = synthetic(images, classes)
    held = _status_mib("VmRSS")
    fits: list[float] = []

    def timed_fit(**kwargs: Any) -> Any:
        started = time.perf_counter()
        result = discriminant_fit(**kwargs)
        fits.append(time.perf_counter() - started)
        return result

    peak_reset()
    started = time.perf_counter()
    ranking = label_error_ranking(features, noisy, fit=timed_fit)
    queue, _ = ranking.queue(threshold=0.95)
    seconds = time.perf_counter() - started
    return {
        "images": images,
        "classes": classes,
        "seconds": round(seconds, 1),
        "fit_seconds": round(sum(fits), 1),
        "fits": len(fits),
        "queue": len(queue),
        "recall": round(float(np.isin(queue[: len(changed)], changed).mean()), 3),
        "held_mib": round(held),
        "peak_mib": round(_status_mib("VmHWM")),
        "embeddings_mib": round(features.nbytes / 2**20),
    }


# --- The job ----------------------------------------------------------------------------------


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _use_database() -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")


def job_populate(images: int, classes: int) -> float:
    """A fresh database holding ``images`` labelled image rows and their stored embeddings."""
    _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    _psql(f"CREATE DATABASE {DATABASE}")
    _use_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from curation.models import Image, LabelClass, SubClass
    from curation.services.images import subclass_counts_rebuild
    from inference.models import ImageEmbedding, ModelVersion

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    label_classes = LabelClass.objects.bulk_create(
        [LabelClass(name=f"Species {i:03d}") for i in range(classes)]
    )
    subclasses = SubClass.objects.bulk_create(
        [SubClass(label_class=c, name="default", is_default=True) for c in label_classes]
    )
    version = ModelVersion.objects.create(
        number=1,
        name="backbone (bench: embeddings stored, never run)",
        onnx_file="models/none.onnx",
        sha256="0" * 64,
        file_size=1,
        label_map=[],
        input_name="image",
        output_name="logits",
        embedding_output="embedding",
    )
    features, noisy, _ = synthetic(images, classes)
    for start in range(0, images, 5000):
        stop = min(images, start + 5000)
        made = Image.objects.bulk_create(
            [
                Image(
                    sha256=f"{i:064x}",
                    extension="jpg",
                    content_type="image/jpeg",
                    format="JPEG",
                    width=224,
                    height=224,
                    file_size=20_000,
                    subclass=subclasses[int(noisy[i])],
                )
                for i in range(start, stop)
            ]
        )
        ImageEmbedding.objects.bulk_create(
            [
                ImageEmbedding(
                    model_version=version,
                    image=image,
                    vector=features[start + offset].astype("<f2").tobytes(),
                )
                for offset, image in enumerate(made)
            ]
        )
    subclass_counts_rebuild()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def job_one() -> dict[str, Any]:
    """Run one ranking job on the populated database, as a worker would, watching its
    progress from another connection."""
    _use_database()
    import django

    django.setup()
    from django.db import connection

    from curation.models import Job
    from inference.label_errors import label_error_ranking_start
    from inference.tasks import rank_label_errors

    run = label_error_ranking_start(actor=None, enqueue=False)
    job_id = run.job_id
    assert job_id is not None
    seen: list[tuple[float, int, int, str]] = []
    finished = threading.Event()
    started = time.perf_counter()

    def watch() -> None:
        while not finished.wait(3.0):
            row = Job.objects.filter(pk=job_id).values("done", "total", "message").first()
            if row and (not seen or seen[-1][1:] != (row["done"], row["total"], row["message"])):
                elapsed = time.perf_counter() - started
                seen.append((round(elapsed, 1), row["done"], row["total"], row["message"]))
        connection.close()

    watcher = threading.Thread(target=watch, daemon=True)
    peak_reset()
    watcher.start()
    rank_label_errors.apply(args=[job_id])
    seconds = time.perf_counter() - started
    finished.set()
    watcher.join()
    job = Job.objects.get(pk=job_id)
    run.refresh_from_db()
    return {
        "seconds": round(seconds, 1),
        "status": job.status,
        "images_ranked": run.metrics.get("images_ranked"),
        "double_check_items": run.metrics.get("double_check_items"),
        "progress": seen,
        "peak_mib": round(_status_mib("VmHWM")),
    }


# --- Main -------------------------------------------------------------------------------------


def _last_line(*args: str) -> str:
    """Run this file with ``args`` in a process of its own; the last line it printed."""
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return out.strip().splitlines()[-1]


def _child(*args: str) -> dict[str, Any]:
    return dict(json.loads(_last_line(*args)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--classes", default="10,200")
    parser.add_argument("--job", action="store_true", help="also run the job end to end")
    parser.add_argument("--job-images", type=int, default=100_000)
    parser.add_argument("--only-job", action="store_true", help="skip the ranking sizes")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # images,classes: one ranking
    parser.add_argument("--run-job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--populate", help=argparse.SUPPRESS)  # images,classes: fill the library
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.populate:
        images, classes = (int(v) for v in args.populate.split(","))
        print(job_populate(images, classes))
        return
    if args.one:
        images, classes = (int(v) for v in args.one.split(","))
        print(json.dumps(ranking_one(images, classes)))
        return
    if args.run_job:
        print(json.dumps(job_one()))
        return

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    sizes = [int(v) for v in args.sizes.split(",")]
    class_counts = [int(v) for v in args.classes.split(",")]
    if not args.only_job:
        for classes in class_counts:
            print(f"\nlabel_error_ranking, {classes} classes, d = {DIMENSIONS}, 5 folds x 3")
            before = None
            for images in sizes:
                r = _child("--one", f"{images},{classes}")
                growth = ""
                if before is not None:
                    ratio = r["seconds"] / before["seconds"]
                    growth = f", {ratio:.2f}x for {images / before['images']:.2f}x the images"
                print(
                    f"  {images:>7,} images: {r['seconds']:7.1f} s (fits {r['fit_seconds']:.1f} s "
                    f"over {r['fits']}){growth}; queue {r['queue']:,}, recall "
                    f"{r['recall']:.3f}; peak {r['peak_mib']:,} MiB resident, holding "
                    f"{r['held_mib']:,} MiB before the ranking ({r['embeddings_mib']:,} MiB of "
                    f"embeddings); load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                before = r
    if args.job:
        for classes in class_counts:
            print(f"\nranking job end to end (PostgreSQL), {args.job_images:,} images, {classes}")
            filled = float(_last_line("--populate", f"{args.job_images},{classes}"))
            print(f"  filled the library in {filled:.1f} s", flush=True)
            r = _child("--run-job")
            for elapsed, done, total, message in r["progress"]:
                print(f"    {elapsed:6.1f} s  {done:>7,} / {total:<7,} {message}")
            verdict = "within" if r["seconds"] <= TARGET_SECONDS else "OVER"
            print(
                f"  job {r['status']} in {r['seconds']:.1f} s ({verdict} the 600 s target): "
                f"{r['images_ranked']:,} ranked, {r['double_check_items']:,} to double-check; "
                f"peak {r['peak_mib']:,} MiB resident; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
