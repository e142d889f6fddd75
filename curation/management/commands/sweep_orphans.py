from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from curation.services.processing import orphans_sweep


class Command(BaseCommand):
    help = (
        "Remove stored files that no image row references (trashed rows count as references). "
        "Files younger than the grace period are kept: they may belong to an import in flight."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--grace-seconds", type=int, default=None)
        parser.add_argument("--dry-run", action="store_true", help="list, remove nothing")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        result = orphans_sweep(grace_seconds=options["grace_seconds"], dry_run=options["dry_run"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict()))
            return
        verb = "Would remove" if options["dry_run"] else "Removed"
        self.stdout.write(
            f"Scanned {result.scanned} files. {verb} {len(result.removed)} orphans; kept "
            f"{result.kept_young} younger than the grace period."
        )
        for name in result.removed[:50]:
            self.stdout.write(f"  {name}")
