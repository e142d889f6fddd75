from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from accounts.models import User
from curation.demo import DemoError, DemoOptions, demo_build, demo_overview, demo_stages_run


class Command(BaseCommand):
    help = (
        "Build a demo library from data shipped inside installed packages (scikit-learn's "
        "handwritten digits, printed digits, scikit-image's sample photos and near-duplicates "
        "of them), then a model that knows its classes: the pretrained backbone, the library's "
        "embeddings, a dataset version, the quick trainer's head on it (evaluated on its test "
        "split and activated) and suggestions for every image. Nothing is downloaded. Running "
        "it again creates nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--small", action="store_true", help="a subset of about 200 images, for a quick look"
        )
        parser.add_argument(
            "--no-thumbnails",
            action="store_true",
            help="leave thumbnails to the worker instead of making them now",
        )
        parser.add_argument(
            "--no-embeddings",
            action="store_true",
            help="leave the whole library's embeddings (similar images, OOD scores) to the "
            "worker; the trainer still embeds its train and val images",
        )
        parser.add_argument(
            "--no-model",
            action="store_true",
            help="stop after the images: no backbone, dataset, trained model or suggestions",
        )
        parser.add_argument("--user", help="record the import as this user")
        parser.add_argument("--json", action="store_true", help="print a JSON summary only")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = None
        if options["user"]:
            actor = User.objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"No user named {options['user']!r}.")
        quiet = options["json"]
        bars: dict[str, tqdm[Any]] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if quiet:
                return
            bar = bars.get(stage)
            if bar is None:
                bar = bars[stage] = tqdm(total=total, unit="image", desc=stage, file=self.stderr)
            bar.update(done - bar.n)

        if not quiet:
            self.stderr.write("Generating the demo images…")
        try:
            summary = demo_build(
                actor=actor,
                small=options["small"],
                make_thumbnails=not options["no_thumbnails"],
                progress=progress,
            )
            # The model and its suggestions, from the apps that own them (inference).
            stages = demo_stages_run(
                options=DemoOptions(
                    actor=actor,
                    small=options["small"],
                    embeddings=not options["no_embeddings"],
                    model=not options["no_model"],
                    progress=progress,
                )
            )
        except DemoError as exc:
            raise CommandError(str(exc)) from None
        finally:
            for bar in bars.values():
                bar.close()
        result = {**summary.as_dict(), **demo_overview(), **stages}
        if quiet:
            self.stdout.write(json.dumps(result))
            return
        if summary.created == 0 and summary.rejected == 0:
            self.stdout.write(
                f"The demo library is already here: all {summary.files} images are stored."
            )
        else:
            self.stdout.write(
                f"Demo library: {summary.created} images created, {summary.already_stored} "
                f"already stored, {summary.rejected} rejected; {summary.thumbnails_made} "
                f"thumbnails made (import batch #{summary.batch})."
            )
        for item in summary.rejections[:20]:
            self.stdout.write(f"  rejected {item['name']}: {item['reason']}")
        for row in result["classes"]:  # type: ignore[attr-defined]
            self.stdout.write(f"  {row['name']:<14} {row['kind']:<8} {row['images']:>5} images")
        self.stdout.write(f"  {'inbox':<14} {'':<8} {result['inbox']:>5} images")
        for stage in stages.values():
            for line in stage.get("lines", []):  # type: ignore[attr-defined]
                self.stdout.write(str(line))
