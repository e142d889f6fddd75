from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from inference.rollups import production_rollups_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the production dashboard's hourly roll-ups from the prediction logs: once "
        "after upgrading from a version without them (the migration only creates the empty "
        "tables), or after logs were written other than through Loupe's services."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON summary")

    def handle(self, *args: Any, **options: Any) -> None:
        bar = tqdm(total=0, unit="log", disable=options["json"], file=self.stderr._out)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            summary = production_rollups_rebuild(progress=progress)
        finally:
            bar.close()
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "logs": summary.logs,
                        "rows": summary.rows,
                        "seconds": round(summary.seconds, 2),
                        "logs_per_second": round(summary.logs_per_second),
                    }
                )
            )
            return
        rows = ", ".join(f"{name} {n:,}" for name, n in summary.rows.items())
        self.stdout.write(
            self.style.SUCCESS(
                f"Rebuilt the production roll-ups from {summary.logs:,} logs in "
                f"{summary.seconds:.1f} s ({summary.logs_per_second:,.0f} logs/s): {rows} rows"
            )
        )
