"""Bad-image verdicts and saved filters are facts about the library: their models move from
labelling to curation. The rows stay where they are; the tables are renamed to curation's."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

BAD_REASONS = [
    ("blurry", "Blurry"),
    ("too_dark", "Too dark"),
    ("back_lit", "Back-lit"),
    ("high_contrast", "High contrast or shadows"),
    ("obscured", "Obscured features"),
    ("multiple_subjects", "Multiple subjects"),
    ("doctored", "Doctored / drawn on"),
    ("unusual_angle", "Unusual angle"),
    ("screen_photo", "Photo of a screen"),
    ("too_small", "Subject too small"),
    ("too_close", "Subject too close"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0010_tiff_renditions"),
        # The tables these models take over.
        ("labelling", "0002_second_opinion_settled_choice"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The models join curation's state over labelling's existing tables...
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SavedFilter",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("name", models.CharField(max_length=200)),
                        ("params", models.JSONField(default=dict)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "created_by",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={"ordering": ["name"], "db_table": "labelling_savedfilter"},
                ),
                migrations.CreateModel(
                    name="BadVerdict",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("reason", models.CharField(choices=BAD_REASONS, max_length=32)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "actor",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "image",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="bad_verdict",
                                to="curation.image",
                            ),
                        ),
                    ],
                    options={
                        "indexes": [models.Index(fields=["reason"], name="badverdict_reason")],
                        "db_table": "labelling_badverdict",
                    },
                ),
            ],
        ),
        # ...which then take curation's names.
        migrations.AlterModelTable(name="savedfilter", table=None),
        migrations.AlterModelTable(name="badverdict", table=None),
    ]
