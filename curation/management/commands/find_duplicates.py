from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.hamming import to_unsigned
from curation.models import DuplicateMethod, Image
from curation.selectors_duplicates import duplicate_groups
from curation.services.duplicates import (
    SCAN_METHODS,
    ScanResult,
    default_max_distance,
    default_min_similarity,
    duplicates_scan_method,
)
from curation.services.hashing import features_make, images_missing_features
from inference.embeddings import nearest_similarities


class Command(BaseCommand):
    help = (
        "Find near-duplicate groups among the active images: pHash within --max-distance bits "
        "(--method phash, the default), embeddings at or above --min-similarity (--method "
        "embedding; computes missing embeddings first) or both (--method all). Hashes any "
        "image that has none first. Replaces the open groups of the method; reviewed ones stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--method",
            choices=[str(m) for m in SCAN_METHODS],
            default=DuplicateMethod.PHASH,
            help="phash (default: hash candidates) or all (hash and embedding candidates)",
        )
        parser.add_argument(
            "--max-distance",
            type=int,
            default=None,
            help=f"Hamming threshold in bits (default {default_max_distance()})",
        )
        parser.add_argument(
            "--min-similarity",
            type=float,
            default=None,
            help=f"cosine similarity threshold for embeddings (default {default_min_similarity()})",
        )
        parser.add_argument("--json", action="store_true", help="print the groups as JSON only")
        parser.add_argument("--chunk", type=int, default=200, help="images hashed per batch")

    def handle(self, *args: Any, **options: Any) -> None:
        max_distance = options["max_distance"]
        if max_distance is None:
            max_distance = default_max_distance()
        if not 0 <= max_distance <= 32:
            raise CommandError("--max-distance must be between 0 and 32 bits.")
        min_similarity = options["min_similarity"]
        if min_similarity is None:
            min_similarity = default_min_similarity()
        if not 0 < min_similarity < 1:
            raise CommandError("--min-similarity must be between 0 and 1.")
        method = options["method"]
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
        if method != DuplicateMethod.PHASH:
            self._embed_missing(quiet)
        try:
            results = duplicates_scan_method(
                method=method,
                max_distance=max_distance,
                min_similarity=min_similarity,
                progress=None if quiet else lambda message: self.stderr.write(message),
            )
        except Exception as exc:
            raise CommandError(f"duplicate search failed: {exc}") from exc
        if quiet:
            scans = [self._as_json(result) for result in results]
            # One method: the scan's own summary, as before; all: one summary per method.
            out = scans[0] if len(scans) == 1 else {"method": "all", "scans": scans}
            self.stdout.write(json.dumps(out, indent=2))
            return
        for result in results:
            for group in self._groups(result):
                members = list(group.members.all())
                line = ", ".join(f"{m.image_id} ({m.distance} bits)" for m in members)
                self.stdout.write(f"{result.method} group {group.pk}: {line}")
            summary = result.as_dict()
            self.stdout.write(
                f"{summary['message']}; search {summary['seconds_search']} s ({summary['index']})"
            )

    def _embed_missing(self, quiet: bool) -> None:
        """Compute the embeddings the search needs (an embeddings job, here)."""
        from inference.embeddings import EmbeddingError, embedding_version_required

        try:
            embedding_version_required()
        except EmbeddingError as exc:
            raise CommandError(str(exc)) from None
        from django.core.management import call_command

        call_command(
            "compute_embeddings",
            *(["--json"] if quiet else []),
            stdout=_Discard() if quiet else self.stdout,
            stderr=self.stderr,
        )

    def _groups(self, result: ScanResult) -> Any:
        # Members with their images joined in one query: prefetching the images by id instead
        # builds an expression too deep for SQLite once a few thousand images are grouped.
        return duplicate_groups(status=None).filter(pk__in=result.group_ids)

    def _as_json(self, result: ScanResult) -> dict[str, Any]:
        summary = result.as_dict()
        groups = self._groups(result)
        out = []
        for group in groups:
            members = list(group.members.all())
            hashes = {
                m.image_id: int(to_unsigned([m.image.features.phash])[0])
                for m in members
                if getattr(m.image, "features", None) and m.image.features.phash is not None
            }
            similarities = (
                nearest_similarities(groups=[[m.image_id for m in members]])
                if group.method != DuplicateMethod.PHASH
                else {}
            )
            out.append(
                {
                    "group": group.pk,
                    "method": group.method,
                    "images": [
                        {
                            "id": m.image_id,
                            "sha256": m.image.sha256,
                            "phash": f"{hashes[m.image_id]:016x}" if m.image_id in hashes else None,
                            "nearest_distance": m.distance,
                            "nearest_similarity": similarities.get(m.image_id),
                            "distances": {
                                str(other): (hashes[m.image_id] ^ hashes[other]).bit_count()
                                for other in hashes
                                if other != m.image_id and m.image_id in hashes
                            },
                        }
                        for m in members
                    ],
                }
            )
        return {**summary, "duplicate_groups": out}


class _Discard:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass
