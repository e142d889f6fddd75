"""The quick trainer and the label-error ranking on the demo library, timed end to end.

    python bench/trainer.py [--swaps 10] [--folds 5]

Builds the demo library (about 2,000 images, ten digit classes and "Not a digit") in a scratch
data directory (``$TMPDIR/loupe-bench-trainer``), installs the EfficientNet-Lite0 backbone and
builds a dataset version with the default parameters, then:

1. trains with no embedding stored yet (``train_model``: embedding the train and val images,
   head, export, registration),
2. trains again on the stored embeddings (the head-only case),
3. swaps the labels of ``--swaps`` handwritten digits to another digit and ranks label errors
   with ``--folds`` folds, printing where the swapped images land in the Double-check queue.

Target: training under a minute including embedding.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "loupe-bench-trainer"
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ["LOUPE_DATA_DIR"] = str(WORK)
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--swaps", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)

    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command

    from curation.demo import DIGIT_CLASS
    from curation.models import Image, ImageStatus, LabelReason, SubClass
    from curation.services.images import image_relabel
    from inference.models import DoubleCheckItem

    def command(*argv: str) -> dict[str, Any]:
        out = io.StringIO()
        call_command(*argv, "--json", stdout=out)
        return json.loads(out.getvalue().strip().splitlines()[-1])

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    demo = command("demo", "--no-thumbnails")
    print(f"demo library: {demo['created']} images in {time.perf_counter() - started:.1f} s")
    command("install_backbone")
    command("build_dataset", "--name", "demo")

    for label in ("cold (embeds train and val)", "warm (embeddings stored)"):
        wall = time.perf_counter()
        result = command("train_model", "--dataset", "demo")
        seconds = result["seconds"]
        print(
            f"train_model {label}: {seconds['total']:.1f} s "
            f"(embedding {seconds['embedding']:.1f} s, head {seconds['head']:.2f} s, "
            f"export and register {seconds['export_and_register']:.2f} s); "
            f"with the test-split evaluation {time.perf_counter() - wall:.1f} s; "
            f"val accuracy {result['validation']['accuracy']:.3f}, "
            f"test accuracy {result['test']['accuracy']:.3f}"
        )

    rng = np.random.default_rng(7)
    swapped: list[int] = []
    for digit in rng.choice(10, size=args.swaps, replace=args.swaps > 10):
        wrong = int((digit + rng.integers(1, 10)) % 10)
        candidates = list(
            Image.objects.filter(
                status=ImageStatus.ACTIVE,
                subclass__label_class__name=DIGIT_CLASS.format(int(digit)),
                subclass__is_default=True,
            )
            .exclude(pk__in=swapped)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        image_id = int(rng.choice(candidates))
        image_relabel(
            image_id=image_id,
            subclass=SubClass.objects.get(
                label_class__name=DIGIT_CLASS.format(wrong), is_default=True
            ),
            actor=None,
            reason=LabelReason.LABELLING,
            expected_version=None,
        )
        swapped.append(image_id)
    ranking = command("rank_label_errors", "--folds", str(args.folds))
    ranks = sorted(
        DoubleCheckItem.objects.filter(run_id=ranking["id"], image_id__in=swapped).values_list(
            "rank", flat=True
        )
    )
    print(
        f"rank_label_errors: {ranking['images_ranked']} images, {args.folds} folds, "
        f"{ranking['seconds']:.1f} s; out-of-sample accuracy {ranking['accuracy']:.3f}; "
        f"queue of {ranking['double_check_items']}"
    )
    print(
        f"swapped labels: {len(ranks)} of {len(swapped)} queued, at ranks {ranks} "
        f"({sum(r <= len(swapped) for r in ranks)} within the first {len(swapped)}, "
        f"{sum(r <= 2 * len(swapped) for r in ranks)} within the first {2 * len(swapped)})"
    )


if __name__ == "__main__":
    main()
