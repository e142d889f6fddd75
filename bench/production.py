"""Production dashboard at 1,000,000 prediction logs on PostgreSQL, timed server-side.

    python bench/production.py [--logs 1000000] [--days 90] [--repeat 5] [--reuse]

Populates ``loupe_prod_bench`` (dropped and created again unless ``--reuse``) with 20,000
images and the logs spread over ``--days`` days with a daily rhythm, three model versions,
500 classes and 2 % of the logs reviewed, then builds the hourly roll-ups through the rebuild
service (timed: logs per second), checks that the dashboard from the roll-ups equals the count
over the logs, and times, side by side, the roll-up path and the logs-only path: the dashboard
aggregates (the default 30-day range and the whole range) and the whole dashboard page
(aggregates, drift, queue sizes and template); then the drift tests and the review queue's next
log. Target: every figure under 1 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "loupe-bench-production"
DATABASE = "loupe_prod_bench"
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ["LOUPE_DATA_DIR"] = str(WORK)
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")
os.environ.setdefault("LOUPE_ALLOWED_HOSTS", "testserver")
sys.path.insert(0, str(ROOT))

TARGET_S = 1.0
IMAGES = 20_000
CLASSES = 500
VERSIONS = ["v1", "v2", "v3"]
SUBJECTS = ["cat", "dog", "hand", "screenshot", "plastic toy", "car", "cake", "blank wall"]


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _copy(raw, table: str, columns: str, rows) -> None:  # type: ignore[no-untyped-def]
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        batch: list[str] = []
        for row in rows:
            batch.append("\t".join(row) + "\n")
            if len(batch) >= 50_000:
                copy.write("".join(batch))
                batch.clear()
        if batch:
            copy.write("".join(batch))


def populate(*, logs: int, days: int) -> None:
    import numpy as np
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    rng = np.random.default_rng(7)
    connection.ensure_connection()
    raw = connection.connection
    now = timezone.now()

    _copy(
        raw,
        "curation_image",
        "sha256, extension, content_type, format, width, height, file_size, original_filename,"
        " status, trashed_reason, version, created_at, thumbnail_ready",
        (
            (
                f"{i:064x}",
                "jpg",
                "image/jpeg",
                "JPEG",
                "640",
                "480",
                "50000",
                f"p{i}.jpg",
                "active",
                "",
                "1",
                now.isoformat(),
                "t",
            )
            for i in range(IMAGES)
        ),
    )
    with raw.cursor() as cursor:
        cursor.execute("SELECT min(id) FROM curation_image")
        first_image = cursor.fetchone()[0]

    # A daily rhythm: more calls in the day than at night, fewer at the weekend.
    seconds = rng.uniform(0, days * 86400, size=logs)
    hour = (seconds // 3600) % 24
    keep = rng.uniform(size=logs) < (0.25 + 0.75 * np.exp(-(((hour - 14) / 5) ** 2)))
    seconds = np.concatenate([seconds[keep], rng.uniform(0, days * 86400, size=logs - keep.sum())])
    received = np.sort(now.timestamp() - seconds)
    age = (now.timestamp() - received) / (days * 86400)
    version = 2 - np.minimum(age * 3, 2.999).astype(int)
    top1 = rng.zipf(1.3, size=logs) % CLASSES
    scores = np.clip(rng.beta(5, 1.2, size=logs), 0.01, 0.999)
    images = rng.integers(0, IMAGES, size=logs) + first_image
    reviewed = rng.uniform(size=logs) < 0.02
    verdict_pick = rng.choice(
        ["correct", "wrong", "bad_picture", "out_of_scope", "should_be_confident"],
        p=[0.7, 0.15, 0.05, 0.05, 0.05],
        size=logs,
    )
    subject_pick = rng.integers(0, len(SUBJECTS), size=logs)
    from datetime import UTC, datetime

    def rows():  # type: ignore[no-untyped-def]
        for i in range(logs):
            at = datetime.fromtimestamp(float(received[i]), tz=UTC).isoformat()
            name = f"Class {int(top1[i]):03d}"
            score = float(scores[i])
            verdict = str(verdict_pick[i]) if reviewed[i] else ""
            if verdict == "should_be_confident" and score >= 0.95:
                verdict = "correct"
            yield (
                str(int(images[i])),
                VERSIONS[int(version[i])],
                f'["{name}", "Class {(int(top1[i]) + 1) % CLASSES:03d}"]',
                f"[{score:.4f}, {(1 - score) / 2:.4f}]",
                name,
                f"{score:.4f}",
                at,
                at,
                f"app-{i % 4}",
                f"r{i}",
                verdict,
                SUBJECTS[int(subject_pick[i])] if verdict == "out_of_scope" else "",
                at if verdict else "\\N",
            )

    _copy(
        raw,
        "inference_predictionlog",
        "image_id, model_version_label, class_names, scores, top1_name, top1_score, logged_at,"
        " received_at, client, request_id, verdict, out_of_scope_subject, reviewed_at",
        rows(),
    )
    raw.commit() if not raw.autocommit else None
    with raw.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE inference_predictionlog")
        cursor.execute("VACUUM ANALYZE curation_image")
    print(f"populated {logs:,} logs over {days} days in {time.monotonic() - started:.0f} s")


def _time(label: str, fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm the cache once, as a dashboard in use would be
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    median = statistics.median(samples)
    verdict = "ok" if median < TARGET_S else "SLOW"
    worst = max(samples) * 1000
    print(f"{label:<60} median {median * 1000:7.0f} ms  max {worst:7.0f} ms  {verdict}")
    return median


def _side_by_side(label: str, rollups, logs, repeat: int) -> None:  # type: ignore[no-untyped-def]
    fast = _time(f"{label}: roll-ups", rollups, repeat)
    slow = _time(f"{label}: logs only", logs, repeat)
    print(f"{label}: logs only / roll-ups = {slow / fast:.1f}x")


def rebuild() -> None:
    from django.db import connection

    from inference.rollups import ROLLUP_MODELS, production_rollups_rebuild

    summary = production_rollups_rebuild()
    rows = ", ".join(f"{name} {n:,}" for name, n in summary.rows.items())
    print(
        f"roll-ups rebuilt from {summary.logs:,} logs in {summary.seconds:.1f} s "
        f"({summary.logs_per_second:,.0f} logs/s): {rows} rows"
    )
    with connection.cursor() as cursor:
        for model in ROLLUP_MODELS:
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")


def measure(*, repeat: int, days: int) -> None:
    from datetime import timedelta

    from django.conf import settings
    from django.db import connection
    from django.test import Client, override_settings
    from django.utils import timezone

    from accounts.models import Role, User
    from inference import views_production
    from inference.models import PredictionLog
    from inference.production import Source, dashboard, drift, review_queue

    total = PredictionLog.objects.count()
    print(f"logs in the database: {total:,}")
    # A minute past now: the range ends inside an hour, so its last hour comes from the logs.
    end = timezone.now() + timedelta(minutes=1)
    for label, start in (
        ("dashboard aggregates, last 30 days", end - timedelta(days=30)),
        (f"dashboard aggregates, all {days} days", end - timedelta(days=days + 1)),
    ):
        board = dashboard(start=start, end=end)
        reference = dashboard(start=start, end=end, source=Source.LOGS)
        assert board.from_rollups and dataclasses.replace(board, from_rollups=False) == reference
        _side_by_side(
            label,
            lambda start=start: dashboard(start=start, end=end),
            lambda start=start: dashboard(start=start, end=end, source=Source.LOGS),
            repeat,
        )
    print("the roll-up dashboards equal the counts over the logs")
    _time("drift tests, last 7 days", lambda: drift(since=end - timedelta(days=7)), repeat)
    _time(
        "review queue: next happy-path log + count",
        lambda: (review_queue(path="happy").first(), review_queue(path="happy").count()),
        repeat,
    )
    user, _ = User.objects.get_or_create(username="bench-reviewer", defaults={"role": Role.ADMIN})
    client = Client()
    client.force_login(user)
    first = (timezone.localdate() - timedelta(days=days)).isoformat()
    # The manifest storage needs collectstatic; the page's cost is the same without it.
    plain_static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    logs_only = functools.partial(dashboard, source=Source.LOGS)

    def page_from_logs(url: str) -> None:
        views_production.dashboard = logs_only  # type: ignore[assignment]
        try:
            client.get(url)
        finally:
            views_production.dashboard = dashboard

    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": plain_static}):
        for url, label in (
            ("/production/", "GET /production/ (whole page, 30 days)"),
            (f"/production/?start={first}", f"GET /production/?start=... (page, {days} days)"),
        ):
            assert client.get(url).status_code == 200
            _side_by_side(
                label,
                lambda url=url: client.get(url),
                lambda url=url: page_from_logs(url),
                repeat,
            )
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT date_trunc('hour', received_at), "
            "model_version_label, count(*), count(*) FILTER (WHERE top1_score >= 0.95) "
            "FROM inference_predictionlog WHERE received_at >= now() - interval '30 days' "
            "GROUP BY 1, 2"
        )
        plan = [row[0] for row in cursor.fetchall()]
    print("plan of the hourly aggregate (30 days):")
    for line in plan:
        print("   ", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", action="store_true", help="keep the populated database")
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"load average: {os.getloadavg()}")
    if not args.reuse:
        _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
        _psql(f"CREATE DATABASE {DATABASE}")

    import django

    django.setup()
    if args.reuse:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    else:
        populate(logs=args.logs, days=args.days)
    rebuild()
    measure(repeat=args.repeat, days=args.days)
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
