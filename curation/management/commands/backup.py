from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.services.backup import BackupError, Progress, backup_create


def stage_progress(bar: tqdm[Any]) -> Progress:
    """Report (stage, done, total) on one progress bar, named after the stage."""

    def progress(stage: str, done: int, total: int) -> None:
        bar.set_description(stage)
        bar.total = total
        bar.update(done - bar.n)

    return progress


class Command(BaseCommand):
    help = (
        "Write a backup of the whole installation to one zip archive: the database (Django's "
        "JSON Lines, from one consistent snapshot), every stored original and model file, "
        "their checksums and a manifest with counts. Safe while Loupe runs. Thumbnails are "
        "left out; a restore rebuilds them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="the archive to write, e.g. loupe.zip")
        parser.add_argument("--json", action="store_true", help="print a JSON summary only")

    def handle(self, *args: Any, **options: Any) -> None:
        quiet = options["json"]
        with tqdm(unit="file", disable=quiet, file=self.stderr) as bar:
            try:
                result = backup_create(path=options["path"], progress=stage_progress(bar))
            except (BackupError, OSError) as exc:
                raise CommandError(f"Backup failed: {exc}") from None
        if quiet:
            self.stdout.write(json.dumps(result.as_dict()))
            return
        self.stdout.write(
            f"Backed up {result.objects} rows and {result.files} files "
            f"({result.bytes / 1e6:.1f} MB) to {result.path} in {result.seconds:.1f} s."
        )
        for label, names in (("missing", result.missing), ("damaged", result.damaged)):
            if names:
                self.stderr.write(
                    f"Warning: {len(names)} stored file(s) {label}, recorded in the manifest: "
                    + ", ".join(names[:5])
                )
