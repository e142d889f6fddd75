from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.hamming import to_unsigned
from curation.models import DuplicateGroup, Image
from curation.services.duplicates import default_max_distance, duplicates_scan
from curation.services.hashing import features_make, images_missing_features


class Command(BaseCommand):
    help = (
        "Find near-duplicate groups among the active images (pHash within --max-distance bits). "
        "Hashes any image that has none first. Replaces the open groups; reviewed ones stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-distance",
            type=int,
            default=None,
            help=f"Hamming threshold in bits (default {default_max_distance()})",
        )
        parser.add_argument("--json", action="store_true", help="print the groups as JSON only")
        parser.add_argument("--chunk", type=int, default=200, help="images hashed per batch")

    def handle(self, *args: Any, **options: Any) -> None:
        max_distance = options["max_distance"]
        if max_distance is None:
            max_distance = default_max_distance()
        if not 0 <= max_distance <= 32:
            raise CommandError("--max-distance must be between 0 and 32 bits.")
        quiet = options["json"]
        missing = Image.objects.filter(features__isnull=True).count()
        if missing:
            with tqdm(
                total=missing, unit="image", desc="hashing", disable=quiet, file=self.stderr
            ) as bar:
                after = 0
                while ids := images_missing_features(after_id=after, limit=options["chunk"]):
                    features_make(image_ids=ids, progress=bar.update)
                    after = ids[-1]
        result = duplicates_scan(
            max_distance=max_distance,
            progress=None if quiet else lambda message: self.stderr.write(message),
        )
        groups = (
            DuplicateGroup.objects.filter(pk__in=result.group_ids)
            .prefetch_related("members__image__features")
            .order_by("id")
        )
        if quiet:
            self.stdout.write(json.dumps(self._as_json(result.as_dict(), groups), indent=2))
            return
        for group in groups:
            members = list(group.members.all())
            line = ", ".join(f"{m.image_id} ({m.distance} bits)" for m in members)
            self.stdout.write(f"group {group.pk}: {line}")
        summary = result.as_dict()
        self.stdout.write(
            f"{summary['message']}; search {summary['seconds_search']} s ({summary['index']})"
        )

    def _as_json(self, summary: dict[str, Any], groups: Any) -> dict[str, Any]:
        out = []
        for group in groups:
            members = list(group.members.all())
            hashes = {m.image_id: int(to_unsigned([m.image.features.phash])[0]) for m in members}
            out.append(
                {
                    "group": group.pk,
                    "images": [
                        {
                            "id": m.image_id,
                            "sha256": m.image.sha256,
                            "phash": f"{hashes[m.image_id]:016x}",
                            "nearest_distance": m.distance,
                            "distances": {
                                str(other): (hashes[m.image_id] ^ hashes[other]).bit_count()
                                for other in hashes
                                if other != m.image_id
                            },
                        }
                        for m in members
                    ],
                }
            )
        return {**summary, "duplicate_groups": out}
