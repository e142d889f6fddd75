"""The verdict roll-up is unique on its hour and a digest of its other key fields: a unique
index on the fields themselves could pass PostgreSQL's limit on the size of an index row."""

import hashlib
import json

from django.db import migrations, models


def fill_digests(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("inference", "PredictionLogVerdictHour")
    rows = list(model.objects.all())
    for row in rows:
        key = [
            row.model_version_label,
            row.top1_name,
            row.centile,
            row.verdict,
            row.out_of_scope_subject,
        ]
        text = json.dumps([str(value) for value in key], ensure_ascii=False)
        row.digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    model.objects.bulk_update(rows, ["digest"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("inference", "0006_production_rollups")]

    operations = [
        migrations.RemoveConstraint(
            model_name="predictionlogverdicthour", name="logverdicthour_key"
        ),
        migrations.AddField(
            model_name="predictionlogverdicthour",
            name="digest",
            field=models.CharField(
                default="", help_text="hash of the key fields after the hour", max_length=32
            ),
            preserve_default=False,
        ),
        migrations.RunPython(fill_digests, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="predictionlogverdicthour",
            constraint=models.UniqueConstraint(
                fields=("hour", "digest"), name="logverdicthour_key"
            ),
        ),
    ]
