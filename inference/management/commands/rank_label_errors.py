from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.models import Job
from curation.services.jobs import job_progress, job_run
from inference.evaluation import EvaluationError
from inference.label_errors import (
    DEFAULT_FOLDS,
    DEFAULT_REPEATS,
    DEFAULT_SEED,
    label_error_ranking_start,
    label_errors_job_work,
)
from inference.management.commands.register_model import user_named
from inference.models import DoubleCheckKind, EvaluationRun


class Command(BaseCommand):
    help = (
        "Rank the labelled library by the out-of-sample probability of each image's label "
        "(repeated K-fold cross-validated discriminant heads on the embeddings) and fill a "
        "Double-check queue with the likeliest label errors first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS)
        parser.add_argument(
            "--repeats",
            type=int,
            default=DEFAULT_REPEATS,
            help="fold assignments (seeds seed, seed+1, …) whose probabilities are averaged",
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
        parser.add_argument("--threshold", type=float, default=0.95)
        parser.add_argument("--user", help="record the run as this user")
        parser.add_argument("--json", action="store_true", help="print a JSON summary")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = label_error_ranking_start(
                actor=user_named(options["user"]),
                folds=options["folds"],
                repeats=options["repeats"],
                seed=options["seed"],
                threshold=options["threshold"],
                enqueue=False,
            )
        except EvaluationError as exc:
            raise CommandError(str(exc)) from None
        assert run.job_id is not None
        bar = tqdm(total=0, unit="img", disable=options["json"], file=self.stderr._out)

        def work(job: Job) -> dict[str, Any]:
            def progress(done: int, total: int, message: str) -> None:
                bar.total = total
                bar.n = done
                bar.set_description(message[:40], refresh=True)
                job_progress(job_id=job.pk, done=done, total=total, message=message)

            return label_errors_job_work(job, progress)

        try:
            job_run(job_id=run.job_id, work=work)
        except Exception as exc:
            raise CommandError(f"ranking failed: {exc}") from exc
        finally:
            bar.close()
        run = EvaluationRun.objects.get(pk=run.pk)
        metrics = run.metrics
        queue = list(
            run.items.order_by("rank")
            .select_related("true_class")
            .values_list(
                "rank",
                "image_id",
                "true_class__name",
                "predicted_name",
                "given_probability",
                "kind",
            )[:10]
        )
        if options["json"]:
            keys = (
                "images_ranked",
                "classes_ranked",
                "folds",
                "repeats",
                "seed",
                "components",
                "embedding_model",
                "classes_skipped",
                "images_skipped",
                "images_without_embedding",
                "excluded_classes",
                "fold_sizes",
                "duplicate_groups_kept_together",
                "double_check_items",
                "seconds",
            )
            summary = {"id": run.pk, **{key: metrics[key] for key in keys}}
            summary["accuracy"] = metrics["sets"]["cross-validation"]["metrics"]["accuracy"]
            summary["top"] = [
                {
                    "rank": r,
                    "image": i,
                    "given": g,
                    "predicted": p,
                    "given_probability": q,
                    "kind": k,
                }
                for r, i, g, p, q, k in queue
            ]
            self.stdout.write(json.dumps(summary))
            return
        accuracy = metrics["sets"]["cross-validation"]["metrics"]["accuracy"]
        self.stdout.write(
            self.style.SUCCESS(
                f"Evaluation {run.pk}: {metrics['images_ranked']} images in "
                f"{metrics['classes_ranked']} classes ranked by {metrics['folds']}-fold "
                f"cross-validation, {metrics['repeats']} times, on "
                f"v{metrics['embedding_model']['number']} embeddings "
                f"in {metrics['seconds']:.1f}s; out-of-sample accuracy {accuracy:.3f}"
            )
        )
        if metrics["classes_skipped"]:
            self.stdout.write(
                f"  skipped {metrics['images_skipped']} images in {metrics['classes_skipped']} "
                f"classes with fewer than {metrics['folds']} images"
            )
        if metrics["images_without_embedding"]:
            self.stdout.write(f"  without an embedding: {metrics['images_without_embedding']}")
        self.stdout.write(f"  Double-check queue: {metrics['double_check_items']} images; first:")
        kinds = dict(DoubleCheckKind.choices)
        for rank, image_id, given, predicted, probability, kind in queue:
            self.stdout.write(
                f"  {rank:>4}. image {image_id}: labelled {given}, p = {probability:.3f}, "
                f"predicted {predicted} ({kinds.get(kind, kind).lower()})"
            )
