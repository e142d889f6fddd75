"""Perceptual hashes (64-bit pHash and dHash, with imagehash) and quality metrics, computed in
the worker after import from one reduced decode of each original."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import IO, Any

import imagehash
import numpy as np
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image as PILImage

from curation.hamming import part_values, signed_of
from curation.imaging import ImageRejected, open_for_analysis
from curation.models import Image, ImageFeatures, ImageProbe
from curation.nearcopy import phash_values, probe_hashes, probe_images
from curation.services.quality import quality_metrics

logger = logging.getLogger(__name__)

# The stored pHash is cut in this many parts for the database lookup (see ImageFeatures).
PHASH_PARTS = 3


def hash_value(bits: imagehash.ImageHash) -> int:
    """An 8x8 imagehash as an unsigned 64-bit integer, first bit most significant (the same
    order as ``str(hash)``)."""
    return int.from_bytes(np.packbits(bits.hash.ravel()).tobytes(), "big")


def dhash_value(grey: PILImage.Image) -> int:
    """``imagehash.dhash`` of a grey image (mode ``L``) as an unsigned 64-bit integer, bit for
    bit, without its copies of the image."""
    pixels = np.asarray(grey.resize((9, 8), PILImage.Resampling.LANCZOS))
    return int.from_bytes(np.packbits(pixels[:, 1:] > pixels[:, :-1]).tobytes(), "big")


def analyse(stream: IO[bytes], *, width: int, height: int) -> dict[str, Any]:
    """Hashes and quality metrics from one decode, as ``ImageFeatures`` field values, and
    under ``probes`` the probe hashes (unsigned; see ``curation.nearcopy``).

    The decode is the cheapest that serves both (``open_for_analysis``: a JPEG's luma and
    chroma at the smallest DCT scale that keeps 128 pixels a side, no colour conversion);
    the pHash and the seven probe hashes are computed in one stack."""
    decoded = open_for_analysis(stream)
    luma = decoded.image.getchannel(0)
    phash, *probes = phash_values([luma, *probe_images(luma)])
    dhash = dhash_value(luma)
    parts = part_values(phash, PHASH_PARTS)
    return {
        "probes": probes,
        "phash": signed_of(phash),
        "dhash": signed_of(dhash),
        "phash_part0": parts[0],
        "phash_part1": parts[1],
        "phash_part2": parts[2],
        "decode_mode": decoded.mode,
        **quality_metrics(pixels=decoded.image, luma=luma, width=width, height=height),
    }


def features_make(
    *, image_ids: list[int], progress: Callable[[int], None] | None = None
) -> list[int]:
    """Compute hashes and quality metrics for the images among ``image_ids`` that have none.
    Idempotent: a second run (or a redelivered task) skips them. Returns the ids computed,
    unreadable ones included (their row records the error, so nobody retries them forever)."""
    pending = Image.objects.filter(pk__in=image_ids, features__isnull=True).only(
        "pk", "sha256", "extension", "width", "height"
    )
    rows = []
    probes: list[ImageProbe] = []
    for image in pending:
        try:
            with default_storage.open(image.storage_name, "rb") as original:
                values = analyse(original, width=image.width, height=image.height)
            probes.extend(probe_rows(image.pk, values.pop("probes")))
            rows.append(ImageFeatures(image=image, **values))
        except FileNotFoundError:
            # The original may still be arriving on shared storage: try again later.
            logger.error("Image %s: original %s is missing", image.pk, image.storage_name)
        except ImageRejected as exc:
            logger.error("Image %s: cannot hash: %s", image.pk, exc)
            rows.append(ImageFeatures(image=image, error=str(exc)[:500]))
        if progress is not None:
            progress(1)
    with transaction.atomic():
        ImageFeatures.objects.bulk_create(rows, ignore_conflicts=True)
        # A redelivered task may have stored them already.
        ImageProbe.objects.filter(image_id__in=[row.image_id for row in rows]).delete()
        ImageProbe.objects.bulk_create(probes, batch_size=2000)
    return [row.image_id for row in rows]


def probe_rows(image_id: int, probes: list[int]) -> list[ImageProbe]:
    rows = []
    for value in probes:
        parts = part_values(value, PHASH_PARTS)
        rows.append(
            ImageProbe(
                image_id=image_id,
                value=signed_of(value),
                part0=parts[0],
                part1=parts[1],
                part2=parts[2],
            )
        )
    return rows


def images_missing_probes(*, limit: int) -> list[int]:
    """Hashed images whose probe hashes predate them (features stored before probes were)."""
    return list(
        ImageFeatures.objects.filter(phash__isnull=False, image__probes__isnull=True)
        .order_by("image_id")
        .values_list("image_id", flat=True)[:limit]
    )


def probes_make(*, image_ids: list[int]) -> int:
    """Compute the probe hashes of hashed images that have none. Idempotent."""
    pending = Image.objects.filter(
        pk__in=image_ids, features__phash__isnull=False, probes__isnull=True
    ).only("pk", "sha256", "extension")
    probes: list[ImageProbe] = []
    done = 0
    for image in pending:
        try:
            with default_storage.open(image.storage_name, "rb") as original:
                decoded = open_for_analysis(original, grey_only=True)
        except (FileNotFoundError, ImageRejected) as exc:
            logger.error("Image %s: cannot compute probe hashes: %s", image.pk, exc)
            continue
        probes.extend(probe_rows(image.pk, probe_hashes(decoded.image)))
        done += 1
    with transaction.atomic():
        ImageProbe.objects.filter(image_id__in=[p.image_id for p in probes]).delete()
        ImageProbe.objects.bulk_create(probes, batch_size=2000)
    return done


def images_missing_features(*, after_id: int = 0, limit: int) -> list[int]:
    return list(
        Image.objects.filter(features__isnull=True, pk__gt=after_id)
        .order_by("id")
        .values_list("pk", flat=True)[:limit]
    )
