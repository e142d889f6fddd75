# Prediction-log indexes: the unreviewed queue, and a covering index for the dashboard on
# PostgreSQL (SQLite has no INCLUDE).

from django.conf import settings
from django.db import migrations, models

COVER = "predictionlog_received_cover"


def create_cover(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {COVER} ON inference_predictionlog (received_at) "
            "INCLUDE (model_version_label, top1_score, top1_name)"
        )


def drop_cover(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {COVER}")


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0005_datasets_benchmarks"),
        ("inference", "0003_predictionlog"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="predictionlog",
            name="predictionlog_received",
        ),
        migrations.AddIndex(
            model_name="predictionlog",
            index=models.Index(fields=["received_at"], name="predictionlog_received"),
        ),
        migrations.AddIndex(
            model_name="predictionlog",
            index=models.Index(
                condition=models.Q(("verdict", "")),
                fields=["-received_at"],
                name="predictionlog_unreviewed",
            ),
        ),
        migrations.RunPython(create_cover, drop_cover),
    ]
