"""Page and endpoint server times at 1,000,000 images on PostgreSQL.

    python bench/scale.py [--reuse] [--images 1000000] [--classes 1500] [--repeat 20]

Populates the database ``loupe_scale`` (dropped and created again unless ``--reuse``) with
1,500 classes (a long tail: a few big classes, many small ones), their sub-classes of mixed
source, and image rows without files (COPY): about 10% in the inbox and a few thousand
trashed. Sub-class counters are set in one UPDATE, then VACUUM ANALYZE. Then it times the
library overview, class pages, the inbox, the trash and the image API in-process with
Django's test Client (logged in as an admin, so reviewer-only parts render too): median and
p95 of ``--repeat`` requests each, and the number of queries. Any page over the target gets
EXPLAIN ANALYZE of its slowest query.

Target: every page under 300 ms of server time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "loupe-bench-scale"
DATABASE = "loupe_scale"
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ["LOUPE_DATA_DIR"] = str(WORK)
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")
sys.path.insert(0, str(ROOT))

TARGET_MS = 300.0
SEED = 7


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        stdout=subprocess.DEVNULL,
    )


# --- Populate -----------------------------------------------------------------------------


def populate(*, images: int, classes: int) -> None:
    import numpy as np
    from django.core.management import call_command
    from django.db import connection

    from curation.models import ClassKind, Image, LabelClass, Source, SubClass

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    rng = np.random.default_rng(SEED)

    label_classes = LabelClass.objects.bulk_create(
        LabelClass(
            name=f"Species {i:04d}",
            kind=ClassKind.HOLDING if i % 75 == 0 else ClassKind.NORMAL,
        )
        for i in range(1, classes + 1)
    )
    subclasses: list[SubClass] = []
    for index, label_class in enumerate(label_classes):
        subclasses.append(
            SubClass(label_class=label_class, name="default", source=Source.REAL, is_default=True)
        )
        if index % 5 < 2:
            subclasses.append(SubClass(label_class=label_class, name="staged", source="staged"))
        if index % 7 == 0:
            subclasses.append(
                SubClass(label_class=label_class, name="synthetic", source="synthetic")
            )
        if index % 4 == 1:
            subclasses.append(SubClass(label_class=label_class, name="juvenile", source="real"))
    subclasses = SubClass.objects.bulk_create(subclasses, batch_size=2000)

    # A long tail: class sizes follow rank^-0.9; inside a class the default sub-class gets the
    # lion's share.
    class_rank = rng.permutation(classes) + 1
    class_weight = {lc.pk: 1.0 / class_rank[i] ** 0.9 for i, lc in enumerate(label_classes)}
    weights = np.array(
        [class_weight[s.label_class_id] * (4.0 if s.is_default else 1.0 / 3.0) for s in subclasses]
    )
    weights /= weights.sum()
    subclass_ids = np.array([s.pk for s in subclasses])

    labelled = rng.random(images) >= 0.10
    chosen = subclass_ids[rng.choice(len(subclass_ids), size=images, p=weights)]
    trashed = np.zeros(images, dtype=bool)
    trashed[rng.choice(images, size=max(1, images // 300), replace=False)] = True

    columns = (
        "sha256, extension, content_type, format, width, height, file_size, original_filename, "
        "subclass_id, labelled_by_id, labelled_at, status, trashed_reason, trashed_at, version, "
        "import_batch_id, created_at, thumbnail_ready"
    )
    table = Image._meta.db_table
    stamp = "2025-01-01 00:00:00+00"
    print(f"populating {images:,} image rows into {table} with COPY…", flush=True)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            lines: list[str] = []
            for i in range(images):
                subclass = str(chosen[i]) if labelled[i] else "\\N"
                labelled_at = stamp if labelled[i] else "\\N"
                if trashed[i]:
                    status, reason, trashed_at = "trashed", "blurry", stamp
                else:
                    status, reason, trashed_at = "active", "", "\\N"
                lines.append(
                    f"{i:064x}\tjpg\timage/jpeg\tJPEG\t1600\t1000\t{400_000 + i % 200_000}\t"
                    f"photo-{i:07d}.jpg\t{subclass}\t\\N\t{labelled_at}\t{status}\t{reason}\t"
                    f"{trashed_at}\t1\t\\N\t{stamp}\tt\n"
                )
                if len(lines) == 50_000:
                    copy.write("".join(lines))
                    lines.clear()
            if lines:
                copy.write("".join(lines))
        print(f"  rows copied in {time.monotonic() - started:.0f} s", flush=True)
        cursor.execute(
            """
            UPDATE curation_subclass s SET image_count = c.n
            FROM (SELECT subclass_id, count(*) AS n FROM curation_image
                  WHERE status = 'active' AND subclass_id IS NOT NULL GROUP BY subclass_id) c
            WHERE s.id = c.subclass_id
            """
        )
        cursor.execute(
            """
            UPDATE curation_librarycounter SET value = (
                SELECT count(*) FROM curation_image WHERE status = 'active' AND subclass_id IS NULL
            ) WHERE name = 'inbox'
            """
        )
    # Outside a transaction: VACUUM sets the visibility map (index-only counts), ANALYZE the
    # statistics the planner needs.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"populated in {time.monotonic() - started:.0f} s", flush=True)


# --- Measure ------------------------------------------------------------------------------


def _explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def measure(*, repeat: int, explain_all: bool) -> None:
    from django.db import connection
    from django.db.models import Sum
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings, setup_test_environment

    from accounts.models import Role, User
    from curation.models import ClassKind, Image, LabelClass, SubClass

    setup_test_environment()
    user, _ = User.objects.get_or_create(
        username="bench-admin",
        defaults={"role": Role.ADMIN, "is_staff": True, "is_superuser": True},
    )
    labeller, _ = User.objects.get_or_create(
        username="bench-labeller", defaults={"role": Role.LABELLER}
    )
    admin_client = Client()
    admin_client.force_login(user)
    labeller_client = Client()
    labeller_client.force_login(labeller)

    sizes = list(
        LabelClass.objects.filter(kind=ClassKind.NORMAL)
        .annotate(n=Sum("subclasses__image_count"))
        .order_by("-n")
        .values_list("pk", "n")
    )
    largest, largest_n = sizes[0]
    median, median_n = sizes[len(sizes) // 2]
    staged_in_largest = SubClass.objects.filter(
        label_class_id=largest, source="staged"
    ).values_list("pk", flat=True)
    images = Image.objects.count()
    inbox = Image.objects.filter(subclass__isnull=True, status="active").count()
    trashed = Image.objects.filter(status="trashed").count()
    print(
        f"library: {images:,} images, {LabelClass.objects.count():,} classes, "
        f"{SubClass.objects.count():,} sub-classes, {inbox:,} in the inbox, {trashed:,} trashed; "
        f"largest class {largest} has {largest_n:,} images, median class {median} has "
        f"{median_n:,}"
    )
    pages = [
        ("library overview", "/"),
        ("library overview, page 20", "/?page=20"),
        ("library search", "/?q=Species%2001"),
        ("class page, largest class", f"/classes/{largest}/"),
        ("class page, largest, 2nd page", None),
        ("class page, largest, as labeller", f"/classes/{largest}/"),
        ("class page, median class", f"/classes/{median}/"),
        ("class page, largest, source=staged", f"/classes/{largest}/?source=staged"),
        ("inbox", "/inbox/"),
        ("trash", "/trash/"),
        ("API images ?label_class=largest", f"/api/v1/images/?label_class={largest}"),
        ("API images ?labelled=false", "/api/v1/images/?labelled=false"),
        ("API images (all, newest first)", "/api/v1/images/"),
    ]
    if not staged_in_largest:
        pages = [p for p in pages if "staged" not in p[0]]

    # Pages render {% static %}; the manifest only exists after collectstatic.
    plain_static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    from django.conf import settings

    results = []
    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": plain_static}):
        for label, url in pages:
            # Reviewers see a "move to another class" form per sub-class; labellers do not.
            client = labeller_client if "labeller" in label else admin_client
            if url is None:
                # The second page of the largest class: the cursor is the last image shown.
                first = admin_client.get(f"/classes/{largest}/")
                page = first.context["page"] if first.context else None
                cursor = page.next_cursor if page is not None else None
                url = f"/classes/{largest}/?before={cursor}" if cursor else f"/classes/{largest}/"
            response = client.get(url)
            status = response.status_code
            with CaptureQueriesContext(connection) as context:
                client.get(url)
            # Copied now: the next request clears the connection's query log.
            captured = list(context.captured_queries)
            timings = []
            for _ in range(repeat):
                started = time.perf_counter()
                client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
            slowest = max(captured, key=lambda q: float(q["time"]), default=None)
            results.append((label, url, status, statistics.median(timings), p95, captured, slowest))

    print(f"\nserver time, in-process test Client, {repeat} requests each after one warm-up:")
    print(f"  {'page':<36} {'status':>6} {'median ms':>10} {'p95 ms':>8} {'queries':>8}  url")
    for label, url, status, med, p95, captured, _ in results:
        flag = "  OVER TARGET" if p95 > TARGET_MS else ""
        print(f"  {label:<36} {status:>6} {med:>10.1f} {p95:>8.1f} {len(captured):>8}  {url}{flag}")
    print(f"  target: under {TARGET_MS:.0f} ms each")

    for label, url, _, _, p95, _captured, slowest in results:
        if slowest is None or not (explain_all or p95 > TARGET_MS):
            continue
        print(f"\n--- {label} ({url}): slowest query, {float(slowest['time']) * 1000:.1f} ms")
        print(slowest["sql"][:2000])
        if slowest["sql"].lstrip().upper().startswith("SELECT"):
            print(_explain(slowest["sql"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", action="store_true", help="keep the populated database")
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--explain-all", action="store_true", help="EXPLAIN ANALYZE every page's slowest query"
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"load average: {os.getloadavg()}")
    if not args.reuse:
        _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
        _psql(f"CREATE DATABASE {DATABASE}")

    import django

    django.setup()
    if args.reuse:
        # A kept database may predate the latest migrations (they keep its counters right).
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    else:
        populate(images=args.images, classes=args.classes)
    measure(repeat=args.repeat, explain_all=args.explain_all)
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
