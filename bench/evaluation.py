"""Evaluation reports over 100,000 labelled images with predictions in place, on the embedded
SQLite database, timed end to end.

    python bench/evaluation.py [--images 100000] [--classes 200] [--repeat 3]

Fills a scratch database (``$TMPDIR/loupe-bench-evaluation``) with ``--classes`` classes, the
images (rows only: the reports never open a file) and one stored top-5 prediction each from
a model that is right about 85 % of the time, then times a whole evaluation run (scope rows,
the predictions-reused check, arrays, every report, the Double-check queue) and the report
and Double-check pages. Targets: reports < 10 s, pages < 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "loupe-bench-evaluation"
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ["LOUPE_DATA_DIR"] = str(WORK)
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")
os.environ.setdefault("LOUPE_ALLOWED_HOSTS", "testserver")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)

    import django

    django.setup()
    import numpy as np
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import Role, User
    from curation.models import Image, LabelClass, SubClass
    from inference.evaluation import EvaluationScope, evaluation_create, evaluation_execute
    from inference.models import LabelMatch, ModelVersion, Prediction

    # Pages are rendered without collectstatic: plain static URLs.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    names = [f"Class {i:03d}" for i in range(args.classes)]
    classes = LabelClass.objects.bulk_create([LabelClass(name=name) for name in names])
    subclasses = SubClass.objects.bulk_create(
        [SubClass(label_class=c, name="default", is_default=True) for c in classes]
    )
    version = ModelVersion.objects.create(
        number=1,
        name="bench",
        onnx_file="models/none.onnx",
        sha256="0" * 64,
        file_size=1,
        label_map=names,
        input_name="image",
        output_name="logits",
    )
    LabelMatch.objects.bulk_create(
        [
            LabelMatch(model_version=version, index=i, name=name, label_class=classes[i])
            for i, name in enumerate(names)
        ]
    )
    rng = np.random.default_rng(1)
    truth = rng.integers(0, args.classes, size=args.images)
    batch = 5000
    for start in range(0, args.images, batch):
        stop = min(args.images, start + batch)
        images = Image.objects.bulk_create(
            [
                Image(
                    sha256=f"{i:064x}",
                    extension="jpg",
                    content_type="image/jpeg",
                    format="JPEG",
                    width=64,
                    height=64,
                    file_size=1000,
                    subclass=subclasses[int(truth[i])],
                )
                for i in range(start, stop)
            ]
        )
        rows = []
        for offset, image in enumerate(images):
            t = int(truth[start + offset])
            drawn = rng.choice(args.classes, size=5, replace=False)
            others = [int(o) for o in drawn if o != t][:4]
            if rng.random() < 0.85:
                order = [t, *others]
                top = float(rng.uniform(0.6, 0.999))
            else:
                order = [others[0], t, *others[1:]]
                top = float(rng.uniform(0.3, 0.95))
            rest = (1 - top) * np.array([0.5, 0.25, 0.15, 0.1])
            scores = [top, *[float(r) for r in rest]]
            rows.append(
                Prediction(
                    image=image,
                    model_version=version,
                    class_indices=order,
                    class_names=[names[i] for i in order],
                    scores=scores,
                    top1_index=order[0],
                    top1_score=scores[0],
                )
            )
        Prediction.objects.bulk_create(rows)
    print(
        f"filled {args.images:,} images, {args.classes} classes, predictions in place "
        f"({time.perf_counter() - started:.1f} s)"
    )

    run_times = []
    run = None
    for _ in range(args.repeat):
        run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
        started = time.perf_counter()
        metrics = evaluation_execute(run=run)
        run_times.append(time.perf_counter() - started)
    assert run is not None
    print(
        f"evaluation run (all reports + Double-check queue of {metrics['double_check_items']:,}): "
        f"median {statistics.median(run_times):.2f} s over {args.repeat} "
        f"(min {min(run_times):.2f}, max {max(run_times):.2f}); target < 10 s"
    )

    user = User.objects.create_user(username="bench", role=Role.REVIEWER)
    client = Client()
    client.force_login(user)
    for label, path in (
        ("report page", f"/models/evaluations/{run.pk}/"),
        ("report page, threshold 0.8", f"/models/evaluations/{run.pk}/?threshold=0.8"),
        ("double-check page", f"/models/evaluations/{run.pk}/double-check/"),
        ("API double-check list", f"/api/v1/evaluations/{run.pk}/double-check/"),
    ):
        times = []
        for _ in range(args.repeat + 2):
            started = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, (path, response.status_code)
        print(f"{label}: median {statistics.median(times) * 1000:.0f} ms; target < 1000 ms")


if __name__ == "__main__":
    main()
