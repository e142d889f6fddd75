from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from accounts.models import User
from curation.services.datasets import (
    DEFAULT_MAX_PER_CLASS,
    DEFAULT_MIN_PER_CLASS,
    DEFAULT_STAGED_CAP,
    EXCLUSION_LABELS,
    EXPLORATORY_MIN_PER_CLASS,
    DatasetError,
    DatasetParams,
    dataset_build,
    dataset_leakage_report,
    dataset_version_create,
    dataset_version_fail,
    parse_ratios,
)


class Command(BaseCommand):
    help = (
        "Build a dataset version: a frozen train/val/test split of the library. The same "
        "parameters on the same library give the identical assignment."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="name of the new dataset version")
        parser.add_argument(
            "--min",
            type=int,
            default=None,
            help=f"images a class needs to be included (default {DEFAULT_MIN_PER_CLASS}, "
            f"{EXPLORATORY_MIN_PER_CLASS} with --exploratory)",
        )
        parser.add_argument(
            "--max",
            type=int,
            default=DEFAULT_MAX_PER_CLASS,
            help=f"images per class in train/val; real images beyond go to test "
            f"(default {DEFAULT_MAX_PER_CLASS})",
        )
        parser.add_argument(
            "--staged-cap",
            type=int,
            default=DEFAULT_STAGED_CAP,
            help=f"staged + synthetic images per class, real preferred "
            f"(default {DEFAULT_STAGED_CAP})",
        )
        parser.add_argument("--ratios", default="90,10,0", help="train,val,test (default 90,10,0)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--exploratory", action="store_true", help="throw-away build, not for production"
        )
        parser.add_argument("--user", help="record the build as this user")
        parser.add_argument("--json", action="store_true", help="print a JSON summary only")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = None
        if options["user"]:
            actor = User.objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"No user named {options['user']!r}.")
        minimum = options["min"]
        if minimum is None:
            minimum = EXPLORATORY_MIN_PER_CLASS if options["exploratory"] else DEFAULT_MIN_PER_CLASS
        try:
            params = DatasetParams(
                min_per_class=minimum,
                max_per_class=options["max"],
                staged_cap=options["staged_cap"],
                ratios=parse_ratios(options["ratios"]),
                seed=options["seed"],
                exploratory=options["exploratory"],
            )
            version = dataset_version_create(name=options["name"], params=params, actor=actor)
        except DatasetError as exc:
            raise CommandError(str(exc)) from None
        quiet = options["json"]
        started = time.monotonic()
        with tqdm(unit="image", disable=quiet, file=self.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                dataset_build(version=version, progress=progress)
            except Exception:
                dataset_version_fail(version_id=version.pk)
                raise
        elapsed = time.monotonic() - started
        summary = version.summary
        leakage = dataset_leakage_report(version=version)
        warnings = summary.get("warnings", [])
        if quiet:
            self.stdout.write(
                json.dumps(
                    {
                        "id": version.pk,
                        "name": version.name,
                        "params": version.params,
                        "seconds": round(elapsed, 2),
                        "leaking_groups": len(leakage["verified"]),
                        **summary,
                        "leakage": leakage,
                    }
                )
            )
            for line in warnings:
                self.stderr.write(f"warning: {line}")
            return
        totals = summary["totals"]
        overflow = sum(min(row["overflow"], row["test"]) for row in summary["classes"])
        flag = " (exploratory: not for production)" if version.exploratory else ""
        self.stdout.write(
            f"Built dataset version {version.name!r} (#{version.pk}){flag} in {elapsed:.1f} s: "
            f"{totals.get('total', 0)} images in {summary['included_classes']} classes — "
            f"train {totals.get('train', 0)}, val {totals.get('val', 0)}, "
            f"test {totals.get('test', 0)} ({overflow} of them over the maximum per class)."
        )
        for row in summary["classes"]:
            if row["status"] == "below_min":
                self.stdout.write(
                    f"  excluded {row['name']}: {row['eligible']} usable, needs {row['needs']} more"
                )
        for reason, count in summary["excluded"].items():
            self.stdout.write(f"  left out {count} images: {EXCLUSION_LABELS[reason]}")
        ratios = summary.get("ratios_kept")
        if ratios:
            self.stdout.write(
                "  every class is within max(1 image, 2%) of its ratios "
                f"{'/'.join(str(r) for r in params.ratios)}"
            )
        if leakage["verified"]:
            self.stdout.write(
                f"  warning: {len(leakage['verified'])} near-duplicate groups span splits"
            )
        candidates = leakage["candidates"]
        if candidates:
            self.stdout.write(
                f"  {candidates['straddling']} of {candidates['pairs']} pHash pairs within "
                f"{candidates['max_distance']} bits (not verified as one group) straddle two splits"
            )
        for line in warnings:
            self.stderr.write(self.style.WARNING(f"warning: {line}"))
