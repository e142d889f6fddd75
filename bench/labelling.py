"""Label-and-next server time on a 100,000-image library on PostgreSQL.

    python bench/labelling.py [--reuse] [--images 100000] [--classes 200] [--repeat 300]

Populates the database ``loupe_label_bench`` (dropped and created again unless ``--reuse``)
with ``--classes`` classes plus an "Unknown" holding class, image rows without files, half of
them in the inbox, and an active model version with a top-3 prediction for every image (so the
queue takes its least-confident-first path, the expensive one). Then, logged in as a labeller,
it walks the inbox the way the labelling page does: one POST /api/v1/labelling/actions/ per
answer, naming the images the page holds and asking for one more (count=1), timed in-process
with Django's test Client. It prints the median and p95 server time and the queries per request.

Target: p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "loupe-bench-labelling"
DATABASE = "loupe_label_bench"
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ["LOUPE_DATA_DIR"] = str(WORK)
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")
sys.path.insert(0, str(ROOT))

TARGET_P95_MS = 50.0
PREFETCH = 5
SEED = 11


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def populate(*, images: int, classes: int) -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from curation.models import ClassKind, Image, LabelClass, Source, SubClass
    from inference.models import LabelMatch, ModelVersion, Prediction

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    rng = random.Random(SEED)
    label_classes = LabelClass.objects.bulk_create(
        [LabelClass(name=f"Species {i:04d}") for i in range(classes)]
        + [LabelClass(name="Unknown", kind=ClassKind.HOLDING)]
    )
    subclasses = SubClass.objects.bulk_create(
        SubClass(label_class=c, name="default", source=Source.REAL, is_default=True)
        for c in label_classes
    )
    normal = [s for s in subclasses if s.label_class.kind == ClassKind.NORMAL]
    print(f"populating {images:,} images with predictions…", flush=True)
    batch = 10_000
    stamp = timezone.now()
    for start in range(0, images, batch):
        rows = [
            Image(
                sha256=f"{i:064x}",
                extension="jpg",
                content_type="image/jpeg",
                format="JPEG",
                width=1600,
                height=1000,
                file_size=400_000,
                original_filename=f"photo-{i:07d}.jpg",
                subclass=None if i % 2 == 0 else normal[i % len(normal)],
                labelled_at=None if i % 2 == 0 else stamp,
                thumbnail_ready=True,
            )
            for i in range(start, min(images, start + batch))
        ]
        Image.objects.bulk_create(rows, batch_size=batch)
    model = ModelVersion.objects.create(
        number=1,
        name="bench",
        onnx_file="models/bench.onnx",
        sha256="0" * 64,
        file_size=1,
        label_map=[c.name for c in label_classes[:classes]],
        input_name="input",
        output_name="output",
        is_active=True,
        activated_at=stamp,
    )
    LabelMatch.objects.bulk_create(
        LabelMatch(model_version=model, index=i, name=c.name, label_class=c)
        for i, c in enumerate(label_classes[:classes])
    )
    ids = list(Image.objects.order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), batch):
        predictions = []
        for image_id in ids[start : start + batch]:
            indices = rng.sample(range(classes), 3)
            top = rng.uniform(0.2, 0.99)
            scores = [top, (1 - top) * 0.6, (1 - top) * 0.3]
            predictions.append(
                Prediction(
                    image_id=image_id,
                    model_version=model,
                    class_indices=indices,
                    class_names=[f"Species {i:04d}" for i in indices],
                    scores=scores,
                    top1_index=indices[0],
                    top1_score=top,
                )
            )
        Prediction.objects.bulk_create(predictions, batch_size=batch)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE curation_subclass s SET image_count = c.n
            FROM (SELECT subclass_id, count(*) AS n FROM curation_image
                  WHERE status = 'active' AND subclass_id IS NOT NULL GROUP BY subclass_id) c
            WHERE s.id = c.subclass_id
            """
        )
        # What the services keep with each change: the inbox counter, and each image's top-1
        # score under the active model (the queue's least-confident-first order).
        cursor.execute(
            """
            UPDATE curation_librarycounter SET value = (
                SELECT count(*) FROM curation_image WHERE status = 'active' AND subclass_id IS NULL
            ) WHERE name = 'inbox'
            """
        )
        cursor.execute(
            """
            UPDATE curation_image i SET suggestion_score = p.top1_score
            FROM inference_prediction p
            WHERE p.image_id = i.id AND p.model_version_id = %s
            """,
            [model.pk],
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"populated in {time.monotonic() - started:.0f} s", flush=True)


def measure(*, repeat: int) -> bool:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from accounts.models import Role, User
    from curation.models import ClassKind, Image, SubClass

    setup_test_environment()
    labeller, _ = User.objects.get_or_create(
        username=f"bench-labeller-{int(time.time())}", defaults={"role": Role.LABELLER}
    )
    client = Client()
    client.force_login(labeller)
    targets = list(
        SubClass.objects.filter(label_class__kind=ClassKind.NORMAL, is_default=True).values_list(
            "pk", flat=True
        )
    )
    inbox = Image.objects.filter(subclass__isnull=True, status="active").count()
    print(f"library: {Image.objects.count():,} images, {inbox:,} in the inbox, all predicted")

    response = client.get("/api/v1/labelling/queue/", {"queue": "inbox", "count": str(PREFETCH)})
    assert response.status_code == 200, response.content
    held = response.json()["next"]
    rng = random.Random(SEED)

    def label_and_next() -> tuple[float, int]:
        nonlocal held
        current, rest = held[0], held[1:]
        body = {
            "queue": "inbox",
            "image": current["id"],
            "version": current["version"],
            "action": "label",
            "subclass": rng.choice(targets),
            "holding": [item["id"] for item in rest],
            "count": 1,
        }
        started = time.perf_counter()
        response = client.post("/api/v1/labelling/actions/", body, content_type="application/json")
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.content
        held = rest + response.json()["next"]
        return elapsed, len(response.json()["next"])

    for _ in range(10):  # warm-up: connections, caches, plans
        label_and_next()
    with CaptureQueriesContext(connection) as context:
        label_and_next()
    queries = list(context.captured_queries)
    timings = [label_and_next()[0] for _ in range(repeat)]
    median = statistics.median(timings)
    p95 = statistics.quantiles(timings, n=20)[-1]
    print(
        f"label-and-next (POST actions, count=1), {repeat} requests: median {median:.1f} ms, "
        f"p95 {p95:.1f} ms, max {max(timings):.1f} ms; {len(queries)} queries per request "
        f"(target p95 < {TARGET_P95_MS:.0f} ms: {'met' if p95 < TARGET_P95_MS else 'MISSED'})"
    )
    slowest = sorted(queries, key=lambda q: float(q["time"]), reverse=True)[:3]
    for query in slowest:
        print(f"  {float(query['time']) * 1000:6.1f} ms  {query['sql'][:160]}")
    return p95 < TARGET_P95_MS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", action="store_true", help="keep the populated database")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"load average: {os.getloadavg()}")
    if not args.reuse:
        _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
        _psql(f"CREATE DATABASE {DATABASE}")

    import django

    django.setup()
    if not args.reuse:
        populate(images=args.images, classes=args.classes)
    sys.exit(0 if measure(repeat=args.repeat) else 1)


if __name__ == "__main__":
    main()
