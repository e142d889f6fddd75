from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.management.commands.backup import stage_progress
from curation.services.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a backup archive made by 'backup' into this installation (run 'migrate' "
        "first). Refuses an installation that holds any data unless --force, which replaces "
        "everything. Checks every checksum before writing a row; the worker rebuilds the "
        "thumbnails afterwards."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="the archive 'backup' wrote")
        parser.add_argument(
            "--force",
            action="store_true",
            help="replace everything in a non-empty installation (its rows are deleted)",
        )
        parser.add_argument("--json", action="store_true", help="print a JSON summary only")

    def handle(self, *args: Any, **options: Any) -> None:
        quiet = options["json"]
        with tqdm(unit="file", disable=quiet, file=self.stderr) as bar:
            try:
                result = backup_restore(
                    path=options["path"], force=options["force"], progress=stage_progress(bar)
                )
            except (BackupError, OSError) as exc:
                raise CommandError(f"Restore failed: {exc}") from None
        if quiet:
            self.stdout.write(json.dumps(result.as_dict()))
            return
        self.stdout.write(
            f"Restored {result.objects} rows and {result.files} files "
            f"({result.bytes / 1e6:.1f} MB) from {result.path} in {result.seconds:.1f} s. "
            f"Thumbnails of {result.thumbnails_queued} images are queued for the worker"
            + (
                f"; {result.jobs_interrupted} job(s) in progress at backup time were marked failed."
                if result.jobs_interrupted
                else "."
            )
        )
