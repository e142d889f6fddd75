from __future__ import annotations

import dataclasses
import importlib
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from curation.models import Image, LabelClass, SubClass
from inference.models import (
    PredictionLog,
    PredictionLogClassHour,
    PredictionLogHour,
    PredictionLogScoreHour,
    PredictionLogVerdictHour,
    Verdict,
)
from inference.production import (
    Dashboard,
    LogEntry,
    ReviewError,
    Source,
    dashboard,
    library_disagrees,
    prediction_log_record,
    prediction_log_review,
    prediction_logs_record,
)
from inference.rollups import hour_ceil, hour_floor, production_rollups_rebuild, rollups_record

pytestmark = pytest.mark.django_db

MONDAY = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def _class(name: str) -> SubClass:
    label_class = LabelClass.objects.create(name=name)
    return SubClass.objects.create(label_class=label_class, name="default", is_default=True)


def _entry(image: Image, top1: str = "Robin", score: float = 0.97, **kwargs: Any) -> LogEntry:
    return LogEntry(
        client=kwargs.pop("client", "app"),
        model_version_label=kwargs.pop("label", "v1"),
        class_names=[top1, "Other"],
        scores=[score, score * (1 - score)],  # below the top-1, and summing to at most 1
        image_sha256=image.sha256,
        **kwargs,
    )


@contextmanager
def _clock(moment: datetime) -> Iterator[None]:
    """The services' clock: the log is received at ``moment``."""
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


def _log(image: Image, at: datetime = MONDAY, **kwargs: Any) -> PredictionLog:
    with _clock(at):
        return prediction_log_record(entry=_entry(image, **kwargs), actor=None).log


def _rollups() -> dict[str, Counter[tuple[Any, ...]]]:
    """Every roll-up row as key -> count, rows at zero left out."""
    tables: dict[str, Counter[tuple[Any, ...]]] = {}
    for model, count in (
        (PredictionLogHour, "calls"),
        (PredictionLogScoreHour, "calls"),
        (PredictionLogClassHour, "calls"),
        (PredictionLogVerdictHour, "logs"),
    ):
        names = [f.name for f in model._meta.fields if f.name not in ("id", "digest", count)]
        rows = model._default_manager.values_list(*names, count)
        tables[model.__name__] = Counter({tuple(row[:-1]): row[-1] for row in rows if row[-1]})
    return tables


def test_a_logged_call_is_counted_in_its_hour_version_client_centile_and_class(
    make_image: Callable[..., Image],
) -> None:
    image = make_image()
    _log(image, MONDAY + timedelta(minutes=59, seconds=59), score=0.95, client="kiosk")
    _log(image, MONDAY + timedelta(minutes=3), score=0.949, label="v2", top1="Wren")

    assert _rollups() == {
        "PredictionLogHour": Counter({(MONDAY, "v1", "kiosk"): 1, (MONDAY, "v2", "app"): 1}),
        "PredictionLogScoreHour": Counter({(MONDAY, 95): 1, (MONDAY, 94): 1}),
        "PredictionLogClassHour": Counter({(MONDAY, "Robin"): 1, (MONDAY, "Wren"): 1}),
        "PredictionLogVerdictHour": Counter(),
    }


def test_a_retried_request_is_counted_once(make_image: Callable[..., Image]) -> None:
    image = make_image()
    first = _log(image, request_id="r-1", client="kiosk")
    again = _log(image, MONDAY + timedelta(hours=2), request_id="r-1", client="kiosk")

    assert again.pk == first.pk
    assert list(PredictionLogHour.objects.values_list("hour", "calls")) == [(MONDAY, 1)]
    assert PredictionLogScoreHour.objects.get().calls == 1


def test_a_batch_counts_each_new_log_once_and_repeats_not_at_all(
    make_image: Callable[..., Image],
) -> None:
    image = make_image()
    _log(image, request_id="known")
    entries = [
        _entry(image, request_id="known"),  # logged before: not counted again
        _entry(image, request_id="new"),
        _entry(image, request_id="new"),  # the same request twice in one batch
        _entry(image, top1="Wren", score=0.3),
        _entry(image, top1="Wren", score=0.3, client=""),  # refused: no client
    ]
    with _clock(MONDAY + timedelta(minutes=30)):
        outcomes = prediction_logs_record(entries=entries, actor=None)

    assert sum(o.created for o in outcomes) == 2
    assert PredictionLog.objects.count() == 3
    assert PredictionLogHour.objects.get().calls == 3
    classes = dict(PredictionLogClassHour.objects.values_list("top1_name", "calls"))
    assert classes == {"Robin": 2, "Wren": 1}


def test_a_verdict_is_counted_and_a_changed_verdict_moves_between_rows(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    wren = _class("Wren")
    log = _log(make_image(), MONDAY + timedelta(minutes=20), score=0.42)

    prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer)
    key = (MONDAY, "v1", "Robin", 42)
    assert _rollups()["PredictionLogVerdictHour"] == Counter({(*key, "correct", ""): 1})

    prediction_log_review(
        log_id=log.pk, verdict=Verdict.WRONG, actor=reviewer, subclass=wren, replace=True
    )
    assert _rollups()["PredictionLogVerdictHour"] == Counter({(*key, "wrong", ""): 1})
    assert not PredictionLogVerdictHour.objects.filter(verdict="correct").exists()

    prediction_log_review(
        log_id=log.pk, verdict=Verdict.OUT_OF_SCOPE, actor=reviewer, subject="a cat", replace=True
    )
    prediction_log_review(
        log_id=log.pk, verdict=Verdict.OUT_OF_SCOPE, actor=reviewer, subject="a dog", replace=True
    )
    log.refresh_from_db()
    assert (log.verdict, log.out_of_scope_subject, log.true_subclass) == (
        "out_of_scope",
        "a dog",
        None,
    )
    assert _rollups()["PredictionLogVerdictHour"] == Counter({(*key, "out_of_scope", "a dog"): 1})
    # The calls themselves never move.
    assert PredictionLogHour.objects.get().calls == 1


def test_a_second_verdict_without_replace_is_refused_and_counts_stay(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    log = _log(make_image())
    prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer)
    with pytest.raises(ReviewError):
        prediction_log_review(log_id=log.pk, verdict=Verdict.BAD_PICTURE, actor=reviewer)
    assert list(PredictionLogVerdictHour.objects.values_list("verdict", "logs")) == [("correct", 1)]


def test_a_changed_verdict_on_rollups_never_built_leaves_them_alone(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    log = _log(make_image())
    prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer)
    PredictionLogVerdictHour.objects.all().delete()

    prediction_log_review(log_id=log.pk, verdict=Verdict.BAD_PICTURE, actor=reviewer, replace=True)
    assert list(PredictionLogVerdictHour.objects.values_list("verdict", "logs")) == [
        ("bad_picture", 1)
    ]


def test_a_verdict_can_be_changed_from_the_review_page(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    log = _log(make_image(), score=0.99)
    client = Client()
    client.force_login(reviewer)
    url = reverse("production:review", args=["happy"])
    done = client.post(url, {"log": log.pk, "verdict": "correct"}, follow=True)
    assert f'href="{url}?log={log.pk}">Change</a>' in done.content.decode()

    page = client.get(f"{url}?log={log.pk}").content.decode()
    assert "Correct" in page and 'name="replace"' in page
    client.post(url, {"log": log.pk, "verdict": "bad_picture", "replace": "1"})

    log.refresh_from_db()
    assert log.verdict == "bad_picture"
    assert list(PredictionLogVerdictHour.objects.values_list("verdict", "logs")) == [
        ("bad_picture", 1)
    ]


SCORES = [0.0, 0.29, 0.5, 0.5 - 1e-12, 0.8, 0.949999, 0.95, 0.955, 0.99, 1.0]


def _random_history(
    rng: random.Random, images: list[Image], reviewer: User, wren: SubClass, logs: int
) -> list[PredictionLog]:
    """Logs over five days through the services, single and batched, with request-id
    retries, reviews and changed verdicts."""
    made: list[PredictionLog] = []
    for n in range(logs):
        at = MONDAY + timedelta(seconds=rng.randrange(5 * 86400))
        fields = {
            "top1": rng.choice(["Robin", "Wren", "Finch", "Jay"]),
            "score": rng.choice(SCORES) if rng.random() < 0.5 else rng.random(),
            "label": rng.choice(["v1", "v2", "3"]),
            "client": rng.choice(["app", "kiosk", "web"]),
            "request_id": f"r{rng.randrange(logs)}" if rng.random() < 0.3 else "",
        }
        image = rng.choice(images)
        if n % 7 == 0:
            with _clock(at):
                batch = [_entry(image, **fields), _entry(image, **{**fields, "request_id": ""})]
                made += [o.log for o in prediction_logs_record(entries=batch, actor=None) if o.log]
        else:
            made.append(_log(image, at, **fields))
    for log in rng.sample(made, len(made) // 3):
        log.refresh_from_db()
        for _ in range(rng.choice([1, 1, 2, 3])):
            verdict = rng.choice(Verdict.values)
            if verdict == Verdict.SHOULD_BE_CONFIDENT and log.top1_score >= 0.95:
                verdict = Verdict.CORRECT
            log.image.refresh_from_db()
            says_correct = verdict in (Verdict.CORRECT, Verdict.SHOULD_BE_CONFIDENT)
            if says_correct and library_disagrees(log):
                # The library labels the image otherwise (an earlier "wrong" relabelled it):
                # a reviewer records the model wrong, as the review page's l does.
                verdict = Verdict.WRONG
            prediction_log_review(
                log_id=log.pk,
                verdict=verdict,
                actor=reviewer,
                subclass=wren,
                subject=rng.choice(["", "a cat", "a dog"]),
                replace=True,
            )
    return made


def _same(board: Dashboard, reference: Dashboard) -> None:
    assert dataclasses.replace(board, from_rollups=False) == reference


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/St_Johns"])
def test_the_dashboard_from_rollups_equals_the_count_over_the_logs(
    make_image: Callable[..., Image], reviewer: User, settings: Any, zone: str
) -> None:
    settings.TIME_ZONE = zone
    rng = random.Random(zone)
    images = [make_image() for _ in range(3)]
    made = _random_history(rng, images, reviewer, _class("Wren"), logs=160)
    ranges = [
        (MONDAY - timedelta(days=1), MONDAY + timedelta(days=6)),  # everything, whole hours
        (MONDAY + timedelta(minutes=17), MONDAY + timedelta(days=3, minutes=41)),  # edges
        (MONDAY + timedelta(hours=30, minutes=5), MONDAY + timedelta(hours=30, minutes=50)),
        (MONDAY + timedelta(hours=30, minutes=5), MONDAY + timedelta(hours=31, minutes=1)),
        (MONDAY + timedelta(days=2), MONDAY + timedelta(days=2, hours=1)),  # one whole hour
    ]
    for _ in range(4):
        start = MONDAY + timedelta(seconds=rng.randrange(4 * 86400))
        ranges.append((start, start + timedelta(seconds=rng.randrange(1, 2 * 86400))))
    with timezone.override(zone):
        for start, end in ranges:
            for threshold in (0.95, 0.5, 0.29, 0.955, 1.0):
                reference = dashboard(start=start, end=end, threshold=threshold, source=Source.LOGS)
                board = dashboard(start=start, end=end, threshold=threshold)
                # St John's is 3.5 hours from UTC: its local hours are not whole UTC hours.
                whole_hours = hour_ceil(start) < hour_floor(end)
                assert board.from_rollups == (zone != "America/St_Johns" and whole_hours)
                _same(board, reference)

        # And against counts made here from the logs themselves.
        start, end = ranges[0]
        board = dashboard(start=start, end=end, threshold=0.95)
        logs = PredictionLog.objects.all()
        assert board.total == len({log.pk for log in made}) == logs.count() > 150
        assert board.above == sum(1 for log in logs if log.top1_score >= 0.95)
        reviewed = Counter(log.verdict for log in logs if log.verdict)
        assert board.verdicts == dict(reviewed) and sum(reviewed.values()) > 30
        classes = Counter(log.top1_name for log in logs)
        assert dict(board.classes) == dict(classes)
        by_hour = Counter(timezone.localtime(log.received_at).hour for log in logs)
        assert board.per_hour_of_day == [by_hour[h] for h in range(24)]


def test_rebuilding_gives_the_rollups_the_services_kept(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    rng = random.Random(3)
    images = [make_image() for _ in range(3)]
    _random_history(rng, images, reviewer, _class("Wren"), logs=120)
    kept = _rollups()
    assert all(kept.values())

    summary = production_rollups_rebuild()

    assert summary.logs == PredictionLog.objects.count()
    assert _rollups() == kept


def test_the_dashboard_reads_the_logs_while_older_logs_are_missing_from_the_rollups(
    make_image: Callable[..., Image],
) -> None:
    image = make_image()
    for minutes in (5, 70, 130):
        _log(image, MONDAY + timedelta(minutes=minutes))
    for model in (PredictionLogHour, PredictionLogScoreHour, PredictionLogClassHour):
        model._default_manager.all().delete()

    board = dashboard(start=MONDAY, end=MONDAY + timedelta(days=1))
    assert (board.rollups_missing, board.from_rollups, board.total) == (True, False, 3)
    # Traffic goes on after the upgrade: the new log is counted, the old ones still are not.
    _log(image, MONDAY + timedelta(minutes=200))
    board = dashboard(start=MONDAY, end=MONDAY + timedelta(days=1))
    assert (board.rollups_missing, board.from_rollups, board.total) == (True, False, 4)

    call_command("rebuild_production_rollups", stdout=StringIO(), stderr=StringIO())
    board = dashboard(start=MONDAY, end=MONDAY + timedelta(days=1))
    assert (board.rollups_missing, board.from_rollups, board.total) == (False, True, 4)


def test_the_rebuild_command_prints_a_json_summary(make_image: Callable[..., Image]) -> None:
    image = make_image()
    _log(image)
    _log(image, top1="Wren")
    out = StringIO()
    call_command("rebuild_production_rollups", "--json", stdout=out, stderr=StringIO())
    summary = json.loads(out.getvalue())
    assert summary["logs"] == 2
    assert summary["rows"] == {
        "predictionloghour": 1,
        "predictionlogscorehour": 1,
        "predictionlogclasshour": 2,
        "predictionlogverdicthour": 0,
    }


def test_the_dashboard_page_says_when_the_rollups_need_building(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    _log(make_image(), timezone.now() - timedelta(hours=3))
    PredictionLogHour.objects.all().delete()
    client = Client()
    client.force_login(reviewer)
    page = client.get(reverse("production:dashboard")).content.decode()
    assert "rebuild_production_rollups" in page


@pytest.mark.django_db(transaction=True)
def test_concurrent_ingestion_adds_every_call(make_image: Callable[..., Image]) -> None:
    image = make_image()
    threads, per_thread = 4, 15
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def ingest(number: int) -> None:
        try:
            barrier.wait()
            for n in range(per_thread):
                entry = _entry(image, client=f"c{n % 2}", request_id=f"t{number}-{n}")
                prediction_logs_record(entries=[entry], actor=None)
                # A retry of the same request at once: never counted twice.
                prediction_log_record(entry=entry, actor=None)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=ingest, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert PredictionLog.objects.count() == threads * per_thread
    assert sum(PredictionLogHour.objects.values_list("calls", flat=True)) == threads * per_thread
    assert sum(PredictionLogClassHour.objects.values_list("calls", flat=True)) == (
        threads * per_thread
    )


def test_rollups_record_adds_to_rows_already_there(make_image: Callable[..., Image]) -> None:
    log = _log(make_image())
    rollups_record(logs=[log, log])
    assert PredictionLogHour.objects.get().calls == 3


@pytest.mark.django_db(transaction=True)
def test_logs_arriving_during_a_rebuild_are_counted_once(
    make_image: Callable[..., Image],
) -> None:
    image = make_image()
    for minutes in (0, 90, 1500):  # older logs, so that the rebuild has days to walk
        _log(image, timezone.now() - timedelta(minutes=minutes + 60 * 24 * 2))
    stop = threading.Event()
    errors: list[BaseException] = []

    def ingest(number: int) -> None:
        try:
            n = 0
            while not stop.is_set() or n < 5:
                entry = _entry(image, client=f"c{number}", request_id=f"t{number}-{n}")
                prediction_log_record(entry=entry, actor=None)
                n += 1
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=ingest, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for _ in range(4):
        production_rollups_rebuild()
    stop.set()
    for worker in workers:
        worker.join()

    assert errors == []
    kept = _rollups()
    assert sum(kept["PredictionLogHour"].values()) == PredictionLog.objects.count() >= 13
    production_rollups_rebuild()
    assert _rollups() == kept


def test_the_longest_names_in_four_byte_characters_are_counted_and_reviewed(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    # 500 + 100 + 200 characters of four UTF-8 bytes each: well past PostgreSQL's 2,704-byte
    # limit on a b-tree index row, were the names the roll-up's unique key as they are.
    rng = random.Random(4)

    def name(length: int) -> str:  # random, so the index cannot compress it away
        return "".join(chr(rng.randrange(0x20000, 0x2A6DF)) for _ in range(length))

    top1, label, subject = name(500), name(100), name(200)
    log = _log(make_image(), MONDAY, top1=top1, label=label)
    prediction_log_review(
        log_id=log.pk, verdict=Verdict.OUT_OF_SCOPE, actor=reviewer, subject=subject
    )
    _log(make_image(), MONDAY + timedelta(minutes=1), top1=top1, label=label)

    assert _rollups()["PredictionLogClassHour"] == Counter({(MONDAY, top1): 2})
    assert _rollups()["PredictionLogVerdictHour"] == Counter(
        {(MONDAY, label, top1, 97, "out_of_scope", subject): 1}
    )


def test_the_migration_gives_existing_verdict_rows_the_digest_the_services_look_up(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    from django.apps import apps

    fill_digests = importlib.import_module(
        "inference.migrations.0007_verdict_rollup_digest"
    ).fill_digests
    log = _log(make_image(), MONDAY, top1="Wren \u00e9")
    prediction_log_review(log_id=log.pk, verdict=Verdict.OUT_OF_SCOPE, actor=reviewer, subject="x")
    row = PredictionLogVerdictHour.objects.get()
    PredictionLogVerdictHour.objects.update(digest="")

    fill_digests(apps, None)

    row.refresh_from_db()
    assert row.digest == PredictionLogVerdictHour.key_digest(
        ("v1", "Wren \u00e9", 97, "out_of_scope", "x")
    )
    # A changed verdict finds the row by that digest and moves the log off it.
    prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer, replace=True)
    assert _rollups()["PredictionLogVerdictHour"] == Counter(
        {(MONDAY, "v1", "Wren \u00e9", 97, "correct", ""): 1}
    )


def test_deleting_an_image_takes_its_logs_out_of_the_rollups(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    rng = random.Random(5)
    images = [make_image() for _ in range(3)]
    _random_history(rng, images, reviewer, _class("Wren"), logs=90)
    doomed = images[1]
    assert doomed.production_logs.exists()

    # Deleted through the ORM (a shell, a script): its logs go by cascade.
    doomed.delete()

    assert not PredictionLog.objects.filter(image_id=doomed.pk).exists()
    after_delete = _rollups()
    production_rollups_rebuild()
    assert _rollups() == after_delete
