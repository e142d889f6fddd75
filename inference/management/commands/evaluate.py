from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.models import Job
from curation.services.jobs import job_progress, job_run
from inference.evaluation import (
    EvaluationError,
    EvaluationScope,
    evaluation_create,
    evaluation_job_work,
)
from inference.models import EvaluationRun, ModelVersion


class Command(BaseCommand):
    help = "Evaluate a model version over the labelled library, a dataset split or a benchmark set."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", type=int, required=True, help="model version number")
        parser.add_argument(
            "--scope",
            default="library",
            help="library | dataset:NAME[:split] | benchmark:NAME[:version]",
        )
        parser.add_argument("--threshold", type=float, default=0.95)
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        version = ModelVersion.objects.filter(number=options["model"]).first()
        if version is None:
            raise CommandError(f"no model version v{options['model']}")
        try:
            scope = EvaluationScope.parse(options["scope"])
            run = evaluation_create(
                version=version,
                scope=scope,
                actor=None,
                threshold=options["threshold"],
                enqueue=False,
            )
        except EvaluationError as exc:
            raise CommandError(str(exc)) from None
        assert run.job_id is not None
        started = time.perf_counter()
        bar = tqdm(total=0, unit="img", disable=options["json"], file=self.stderr._out)

        def work(job: Job) -> dict[str, Any]:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()
                job_progress(job_id=job.pk, done=done, total=total)

            return evaluation_job_work(job, progress)

        try:
            job_run(job_id=run.job_id, work=work)
        except Exception as exc:
            raise CommandError(f"evaluation failed: {exc}") from exc
        finally:
            bar.close()
        run = EvaluationRun.objects.get(pk=run.pk)
        seconds = time.perf_counter() - started
        if options["json"]:
            self.stdout.write(json.dumps({"id": run.pk, "seconds": seconds, **run.metrics}))
            return
        metrics = run.metrics
        self.stdout.write(
            self.style.SUCCESS(
                f"Evaluation {run.pk}: v{version.number} on {metrics['scope']}, "
                f"{metrics['images_scored']} images scored in {seconds:.1f}s"
            )
        )
        for name, report in metrics["sets"].items():
            if report.get("out_of_scope"):
                rate = report["threshold"]["false_positive_rate"]
                self.stdout.write(
                    f"  {name}: {report['images']} images without class, "
                    f"false-positive rate {rate if rate is None else f'{rate:.1%}'}"
                )
                continue
            if "metrics" not in report:
                continue
            m = report["metrics"]
            t = report["threshold"]
            self.stdout.write(
                f"  {name}: {report['images']} images, accuracy {m['accuracy']:.1%}, "
                f"macro F1 {m['macro']['f1']:.3f}, log loss {m['log_loss']:.3f}, "
                f"above {t['threshold']:.0%}: {t['above_right']} right / {t['above_wrong']} wrong"
            )
        for reason, count in metrics["excluded"].items():
            self.stdout.write(f"  not scored ({reason.replace('_', ' ')}): {count}")
        self.stdout.write(f"  Double-check queue: {metrics['double_check_items']} images")
