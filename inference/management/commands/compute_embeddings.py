from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.models import Job
from curation.services.jobs import job_create, job_progress, job_run
from inference.embeddings import (
    EMBEDDINGS_KIND,
    EmbeddingError,
    embedding_version_required,
    embeddings_compute,
    ood_scores_fill,
)


class Command(BaseCommand):
    help = (
        "Compute the embedding of every active image that has none (the embedding model is "
        "LOUPE_EMBEDDING_MODEL or the installed backbone), their out-of-distribution scores, "
        "and rebuild the similarity index. Runs here, recorded as a job; running it again "
        "computes only what is missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--recompute-ood",
            action="store_true",
            help="score every embedded image again (after much labelling)",
        )
        parser.add_argument("--json", action="store_true", help="print a JSON summary only")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            version = embedding_version_required()
        except EmbeddingError as exc:
            raise CommandError(str(exc)) from None
        quiet = options["json"]
        job = job_create(kind=EMBEDDINGS_KIND, actor=None, params={"model_version_id": version.pk})
        started = time.perf_counter()
        bar = tqdm(total=0, unit="img", desc="embedding", disable=quiet, file=self.stderr._out)

        def work(job: Job) -> dict[str, Any]:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()
                job_progress(job_id=job.pk, done=done, total=total)

            def stage(message: str) -> None:
                if not quiet:
                    bar.refresh()
                    self.stderr.write(message)

            result = embeddings_compute(version=version, progress=progress, stage=stage)
            if options["recompute_ood"]:
                result["ood_scored"] = ood_scores_fill(version=version, recompute=True)
            return result

        try:
            job_run(job_id=job.pk, work=work)
        except Exception as exc:
            raise CommandError(f"embedding failed: {exc}") from exc
        finally:
            bar.close()
        result = Job.objects.get(pk=job.pk).result
        result["seconds"] = round(time.perf_counter() - started, 2)
        result["job"] = job.pk
        if quiet:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(self.style.SUCCESS(f"{result['message']} ({result['seconds']} s)"))
