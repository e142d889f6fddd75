from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.models import DatasetVersion
from curation.services.dataset_jobs import export_root
from curation.services.export import (
    DEFAULT_SHARD_SIZE,
    EXPORT_FORMATS,
    ExportError,
    dataset_export,
)


class Command(BaseCommand):
    help = (
        "Export a dataset version as WebDataset tar shards (one shard set per split) or as a "
        "folder tree <split>/<class>/<sha256>.<ext>, with a manifest and the label map. "
        "Exporting the same version twice gives byte-identical shards. Folder exports copy "
        "(or reflink) the originals, so no write to the export can change the library."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="dataset version name (or #id)")
        parser.add_argument("--format", choices=EXPORT_FORMATS, default="webdataset")
        parser.add_argument(
            "--letterbox", type=int, default=None, metavar="SIZE", help="square PNGs of SIZE px"
        )
        parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE)
        parser.add_argument("--out", type=Path, default=None, help="output folder")
        parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
        parser.add_argument("--json", action="store_true", help="print a JSON summary only")
        parser.add_argument(
            "--hard-links",
            action="store_true",
            help=(
                "folder format: hard-link the originals instead of copying them. Saves the "
                "space, but a hard link is the original: anyone running as root who writes to "
                "a file of the export changes the library's original"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"]
        versions = DatasetVersion.objects.all()
        if name.startswith("#") and name[1:].isdigit():
            version = versions.filter(pk=int(name[1:])).first()
        else:
            version = versions.filter(name=name).first()
        if version is None:
            raise CommandError(f"No dataset version named {name!r}.")
        out = options["out"] or export_root() / f"{version.pk}-{options['format']}"
        quiet = options["json"]
        with tqdm(unit="image", disable=quiet, file=self.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                result = dataset_export(
                    version=version,
                    out=out,
                    format=options["format"],
                    letterbox=options["letterbox"],
                    shard_size=options["shard_size"],
                    workers=options["workers"],
                    progress=progress,
                    hard_links=options["hard_links"],
                )
            except ExportError as exc:
                raise CommandError(str(exc)) from None
        if quiet:
            self.stdout.write(json.dumps(result.as_dict()))
            return
        rate = result.images / result.seconds if result.seconds else 0
        detail = (
            f"{len(result.files)} shards, {result.bytes_written / 1e6:.1f} MB"
            if result.format == "webdataset"
            else (
                f"{result.linked} hard-linked, {result.copied} copied"
                if options["hard_links"]
                else f"{result.copied} copied, {result.reflinked} reflinked"
            )
        )
        if result.format == "folder" and result.letterboxed:
            detail = f"{result.letterboxed} letterboxed PNGs, {result.bytes_written / 1e6:.1f} MB"
        self.stdout.write(
            f"Exported {version.name!r}: {result.images} images to {result.out} "
            f"({detail}) in {result.seconds:.1f} s, {rate:.0f} images/s."
        )
