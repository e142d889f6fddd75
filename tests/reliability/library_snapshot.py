"""What a user would check after a restore, as plain data: every image with its file's bytes
(hashed), label and history, the class tree, model versions and users. Used by the backup
tests in this process and in a restored installation's process."""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.files.storage import default_storage

from accounts.models import User
from curation.models import Image, ImageStatus, LabelClass, LibraryCounter, SubClass


def _stored_sha256(name: str) -> str | None:
    try:
        with default_storage.open(name, "rb") as stored:
            return hashlib.sha256(stored.read()).hexdigest()
    except FileNotFoundError:
        return None


def _subclass(subclass: SubClass | None) -> str | None:
    return f"{subclass.label_class.name} / {subclass.name}" if subclass else None


def describe() -> dict[str, Any]:
    from inference.models import ModelVersion

    images = {}
    queryset = Image.objects.select_related("subclass__label_class", "labelled_by")
    for image in queryset.order_by("sha256"):
        events = image.label_events.select_related(
            "actor", "from_subclass__label_class", "to_subclass__label_class"
        ).order_by("id")
        images[image.sha256] = {
            "file": _stored_sha256(image.storage_name),
            "subclass": _subclass(image.subclass),
            "status": image.status,
            "trashed_reason": image.trashed_reason,
            "version": image.version,
            "labelled_by": image.labelled_by.username if image.labelled_by else None,
            "original_filename": image.original_filename,
            "events": [
                [
                    event.reason,
                    event.note,
                    _subclass(event.from_subclass),
                    _subclass(event.to_subclass),
                    event.from_status,
                    event.to_status,
                    event.actor.username if event.actor else None,
                ]
                for event in events
            ],
        }
    classes = [
        [
            label_class.name,
            label_class.kind,
            [
                [sub.name, sub.source, sub.is_default, sub.image_count]
                for sub in label_class.subclasses.order_by("name")
            ],
        ]
        for label_class in LabelClass.objects.order_by("name")
    ]
    models = [
        [
            version.number,
            version.name,
            version.sha256,
            _stored_sha256(version.onnx_file),
            version.label_map,
            version.is_active,
        ]
        for version in ModelVersion.objects.order_by("number")
    ]
    inbox = LibraryCounter.objects.filter(name=LibraryCounter.INBOX).first()
    in_inbox = Image.objects.filter(subclass__isnull=True, status=ImageStatus.ACTIVE).count()
    return {
        "images": images,
        "classes": classes,
        "models": models,
        "users": sorted([u.username, u.role, u.is_superuser] for u in User.objects.all()),
        "inbox": in_inbox,
        # The kept counter agrees with the rows (a flushed test database may have none).
        "inbox_counter_agrees": inbox is None or inbox.value == in_inbox,
    }
