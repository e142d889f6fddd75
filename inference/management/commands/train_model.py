from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.models import DatasetVersion, Job
from curation.services.jobs import job_progress, job_run
from inference.evaluation import evaluation_job_work
from inference.management.commands.register_model import user_named
from inference.models import EvaluationRun
from inference.trainer import (
    DEFAULT_C,
    DEFAULT_MAX_ITER,
    TrainingError,
    training_job_work,
    training_start,
)


class Command(BaseCommand):
    help = (
        "Train a logistic-regression head on the embedding model's features of a dataset "
        "version's train split, register it with the embedding model as one ONNX model version "
        "and evaluate it on the test split."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", required=True, help="dataset version name")
        parser.add_argument(
            "--C", type=float, default=DEFAULT_C, help="inverse regularisation strength"
        )
        parser.add_argument("--max-iter", type=int, default=DEFAULT_MAX_ITER)
        parser.add_argument("--activate", action="store_true", help="activate the new version")
        parser.add_argument("--user", help="record the training as this user")
        parser.add_argument("--json", action="store_true", help="print a JSON summary")

    def handle(self, *args: Any, **options: Any) -> None:
        dataset = DatasetVersion.objects.filter(name=options["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset version named {options['dataset']!r}")
        try:
            job = training_start(
                dataset=dataset,
                actor=user_named(options["user"]),
                C=options["C"],
                max_iter=options["max_iter"],
                activate=options["activate"],
                enqueue=False,
            )
        except TrainingError as exc:
            raise CommandError(str(exc)) from None
        started = time.perf_counter()
        bar = tqdm(total=0, unit="img", disable=options["json"], file=self.stderr._out)

        def progress_for(job_id: int) -> Any:
            def progress(done: int, total: int, message: str = "") -> None:
                bar.total = total
                bar.n = done
                bar.set_description(message[:40], refresh=True)
                job_progress(job_id=job_id, done=done, total=total, message=message)

            return progress

        try:
            job_run(
                job_id=job.pk,
                work=lambda j: training_job_work(j, progress_for(j.pk), enqueue_evaluation=False),
            )
            result = Job.objects.get(pk=job.pk).result
            run = EvaluationRun.objects.get(pk=result["evaluation_id"])
            assert run.job_id is not None
            job_run(
                job_id=run.job_id,
                work=lambda j: evaluation_job_work(j, progress_for(j.pk)),
            )
        except Exception as exc:
            raise CommandError(f"training failed: {exc}") from exc
        finally:
            bar.close()
        run.refresh_from_db()
        report = run.metrics.get("sets", {}).get(run.split, {}).get("metrics", {})
        summary = {
            **result,
            "job": job.pk,
            "test": {
                "split": run.split,
                "images": run.metrics.get("images_scored"),
                "accuracy": report.get("accuracy"),
                "log_loss": report.get("log_loss"),
            },
            "seconds_with_evaluation": round(time.perf_counter() - started, 3),
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary))
            return
        validation = result["validation"]
        seconds = result["seconds"]
        self.stdout.write(
            self.style.SUCCESS(
                f"Model v{result['model_version']} ({result['model_name']}): "
                f"{result['classes']} classes, {result['images']['train']} training images, "
                f"{seconds['total']:.1f}s (embedding {seconds['embedding']:.1f}s, "
                f"head {seconds['head']:.1f}s, export {seconds['export_and_register']:.1f}s)"
            )
        )
        if validation["images"]:
            self.stdout.write(
                f"  validation ({validation['images']} images): accuracy "
                f"{validation['accuracy']:.3f}, log loss {validation['log_loss']:.3f}, "
                f"top-3 accuracy {validation['top3_accuracy']:.3f}"
            )
        if report:
            self.stdout.write(
                f"  {run.split} ({run.metrics['images_scored']} images): accuracy "
                f"{report['accuracy']:.3f}, log loss {report['log_loss']:.3f} "
                f"(evaluation {run.pk})"
            )
        if result["images_without_embedding"]:
            self.stdout.write(f"  without an embedding: {result['images_without_embedding']}")
        if result["activated"]:
            self.stdout.write("  activated")
