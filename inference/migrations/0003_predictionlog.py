# Production prediction logs.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0005_datasets_benchmarks"),
        ("inference", "0002_evaluations"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="PredictionLog",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model_version_label", models.CharField(max_length=100)),
                ("class_names", models.JSONField(help_text="top-k class names, best first")),
                ("scores", models.JSONField(help_text="top-k scores, best first")),
                ("top1_name", models.CharField(max_length=500)),
                ("top1_score", models.FloatField()),
                ("logged_at", models.DateTimeField(help_text="the client's clock")),
                ("received_at", models.DateTimeField(help_text="server time the log arrived")),
                ("client", models.CharField(help_text="serving system or app id", max_length=100)),
                ("request_id", models.CharField(blank=True, max_length=200)),
                (
                    "verdict",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("correct", "Correct"),
                            ("wrong", "Wrong class"),
                            ("bad_picture", "Bad picture"),
                            ("out_of_scope", "Out of scope"),
                            ("should_be_confident", "Should have been confident"),
                        ],
                        max_length=32,
                    ),
                ),
                ("out_of_scope_subject", models.CharField(blank=True, max_length=200)),
                ("reviewed_at", models.DateTimeField(blank=True, null=True)),
                (
                    "image",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="production_logs",
                        to="curation.image",
                    ),
                ),
                (
                    "logged_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "model_version",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="production_logs",
                        to="inference.modelversion",
                    ),
                ),
                (
                    "reviewed_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "true_subclass",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="curation.subclass",
                    ),
                ),
            ],
            options={
                "ordering": ["-received_at", "-id"],
                "indexes": [
                    models.Index(
                        fields=["received_at"],
                        include=("model_version_label", "top1_score", "top1_name"),
                        name="predictionlog_received",
                    ),
                    models.Index(
                        fields=["model_version_label", "received_at"],
                        name="predictionlog_version_time",
                    ),
                    models.Index(fields=["verdict", "received_at"], name="predictionlog_verdict"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("request_id", ""), _negated=True),
                        fields=("client", "request_id"),
                        name="predictionlog_one_per_request",
                    )
                ],
            },
        ),
    ]
