from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from inference.models import OutputKind, ResizeMode
from inference.preprocessing import PreprocessSpec
from inference.services import Registration
from inference.uploads import model_file_register
from inference.validation import ModelRejected


def add_spec_arguments(parser: CommandParser) -> None:
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--layout", choices=["NCHW", "NHWC"], default="NCHW")
    parser.add_argument("--channel-order", choices=["RGB", "BGR"], default="RGB")
    parser.add_argument(
        "--scale", type=float, default=1 / 255, help="pixel values 0..255 are multiplied by this"
    )
    parser.add_argument("--mean", type=float, nargs="*", default=[], help="subtracted after scale")
    parser.add_argument("--std", type=float, nargs="*", default=[], help="divided after mean")
    parser.add_argument("--resize", choices=list(ResizeMode.values), default=ResizeMode.LETTERBOX)
    parser.add_argument("--output", choices=list(OutputKind.values), default=OutputKind.LOGITS)
    parser.add_argument("--embedding-output", default="", help="name of an embedding output")


def spec_from(options: dict[str, Any]) -> PreprocessSpec:
    return PreprocessSpec(
        input_size=options["input_size"],
        layout=options["layout"],
        channel_order=options["channel_order"],
        scale=options["scale"],
        mean=tuple(options["mean"]),
        std=tuple(options["std"]),
        resize_mode=options["resize"],
    )


def user_named(username: str | None) -> User | None:
    if not username:
        return None
    try:
        return User.objects.get(username=username)
    except User.DoesNotExist:
        raise CommandError(f"no user named {username!r}") from None


def registration_summary(registration: Registration) -> dict[str, Any]:
    version = registration.version
    return {
        "number": version.number,
        "name": version.name,
        "classes": len(version.label_map),
        "active": version.is_active,
        "sha256": version.sha256,
        "unmatched_labels": registration.unmatched,
        "created_classes": registration.created_classes,
    }


def print_summary(command: BaseCommand, summary: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        command.stdout.write(json.dumps(summary))
        return
    command.stdout.write(
        command.style.SUCCESS(
            f"Registered model v{summary['number']} {summary['name']!r}: "
            f"{summary['classes']} classes" + (", active" if summary["active"] else "")
        )
    )
    if summary["created_classes"]:
        command.stdout.write(f"Created {len(summary['created_classes'])} classes.")
    unmatched = summary["unmatched_labels"]
    if unmatched:
        shown = ", ".join(unmatched[:10]) + (" …" if len(unmatched) > 10 else "")
        command.stdout.write(
            f"{len(unmatched)} label names match no library class: {shown}\n"
            "Run again with --create-classes, or create them on the model page."
        )


class Command(BaseCommand):
    help = (
        "Register an ONNX classifier and its label map (JSON list of class names in output "
        "order) as the next model version. The file is validated first: nothing is stored if "
        "it is refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--onnx", type=Path, required=True)
        parser.add_argument("--labels", type=Path, required=True)
        parser.add_argument("--name", default="")
        parser.add_argument("--notes", default="")
        parser.add_argument("--activate", action="store_true")
        parser.add_argument(
            "--create-classes", action="store_true", help="create classes for unmatched labels"
        )
        parser.add_argument("--user", help="record the upload as this user")
        parser.add_argument("--json", action="store_true", help="print a JSON summary")
        add_spec_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        onnx_path: Path = options["onnx"]
        labels_path: Path = options["labels"]
        for path in (onnx_path, labels_path):
            if not path.is_file():
                raise CommandError(f"{path} is not a file")
        try:
            registration = model_file_register(
                path=str(onnx_path),
                labels=labels_path.read_bytes(),
                name=options["name"] or onnx_path.stem,
                actor=user_named(options["user"]),
                spec=spec_from(options),
                output_kind=options["output"],
                embedding_output=options["embedding_output"],
                notes=options["notes"],
                activate=options["activate"],
                create_classes=options["create_classes"],
            )
        except ModelRejected as exc:
            raise CommandError(f"Model refused: {exc}") from None
        print_summary(self, registration_summary(registration), as_json=options["json"])
