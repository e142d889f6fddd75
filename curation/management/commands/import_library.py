from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from accounts.models import User
from curation.models import ImportKind, ImportOutcome, Source
from curation.services.images import ImportResult, import_batch_create
from curation.services.imports import Destination, folder_files, folder_import
from curation.tasks import enqueue_processing


class Command(BaseCommand):
    help = (
        "Import a folder tree <class>/<sub-class>/* or <class>/* into the library. Running it "
        "again on the same tree creates nothing new. Thumbnails follow in the worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--inbox", action="store_true", help="import every file unlabelled")
        parser.add_argument(
            "--source",
            choices=[s.value for s in Source],
            default=Source.REAL,
            help="source of sub-classes this import creates (default real)",
        )
        parser.add_argument("--user", help="record the import as this user")
        parser.add_argument(
            "--workers",
            type=int,
            default=os.cpu_count() or 1,
            help="processes that hash and validate files (default: one per core)",
        )
        parser.add_argument("--json", action="store_true", help="print a JSON summary only")

    def handle(self, *args: Any, **options: Any) -> None:
        root: Path = options["path"]
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder.")
        actor = None
        if options["user"]:
            actor = User.objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"No user named {options['user']!r}.")
        destination = Destination(from_folders=not options["inbox"], source=options["source"])
        batch = import_batch_create(kind=ImportKind.FOLDER, name=str(root.resolve()), actor=actor)
        total = len(folder_files(root))
        quiet = options["json"]
        counts: Counter[str] = Counter()
        rejected: list[dict[str, str]] = []
        created: list[int] = []

        def on_created(image_id: int) -> None:
            created.append(image_id)
            if len(created) % 1000 == 0:
                enqueue_processing(created[-1000:])

        started = time.monotonic()
        with tqdm(total=total, unit="file", disable=quiet, file=self.stderr) as bar:

            def progress(result: ImportResult) -> None:
                counts[result.outcome] += 1
                if result.outcome == ImportOutcome.REJECTED:
                    rejected.append({"name": result.name, "reason": result.reason})
                bar.update(1)

            folder_import(
                root=root,
                destination=destination,
                actor=actor,
                batch=batch,
                workers=max(1, options["workers"]),
                progress=progress,
                on_created=on_created,
            )
        enqueue_processing(created[len(created) - len(created) % 1000 :])
        elapsed = time.monotonic() - started
        summary = {
            "batch": batch.pk,
            "files": total,
            "created": counts[ImportOutcome.CREATED],
            "duplicate": counts[ImportOutcome.DUPLICATE],
            "rejected": counts[ImportOutcome.REJECTED],
            "seconds": round(elapsed, 2),
            "files_per_second": round(total / elapsed, 1) if elapsed else None,
            "rejections": rejected,
        }
        if quiet:
            self.stdout.write(json.dumps(summary))
            return
        self.stdout.write(
            f"Imported {root}: {summary['created']} created, {summary['duplicate']} duplicates, "
            f"{summary['rejected']} rejected in {elapsed:.1f} s "
            f"({summary['files_per_second']} files/s). Import batch #{batch.pk}."
        )
        for item in rejected[:20]:
            self.stdout.write(f"  rejected {item['name']}: {item['reason']}")
        if len(rejected) > 20:
            self.stdout.write(f"  … and {len(rejected) - 20} more (see --json or the import page)")
