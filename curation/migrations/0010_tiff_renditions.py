"""Images stored in a format browsers cannot display (TIFF) get a full-size JPEG rendition,
made by the worker with the thumbnail. Those thumbnailed before renditions existed are marked
as needing both again, so the worker's catch-up makes what is missing."""

from __future__ import annotations

from typing import Any

from django.db import migrations

# curation.imaging.BROWSER_SAFE_EXTENSIONS when this migration was written.
BROWSER_SAFE = ["jpg", "png", "webp", "bmp"]


def renditions_needed(apps: Any, schema_editor: Any) -> None:
    Image = apps.get_model("curation", "Image")
    Image.objects.filter(thumbnail_ready=True).exclude(extension__in=BROWSER_SAFE).update(
        thumbnail_ready=False
    )


class Migration(migrations.Migration):
    dependencies = [("curation", "0009_probe_hashes")]

    operations = [migrations.RunPython(renditions_needed, migrations.RunPython.noop)]
