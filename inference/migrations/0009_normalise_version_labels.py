"""Production logs name their model version one way: ``v<number>``. Logs recorded before kept
the client's spelling (``2`` from ``predict`` with ``log=true``, ``v2`` from clients), which
split one model into two series on the dashboard; they are renamed here.

The roll-ups are keyed by that label. When any log was renamed, the rows keyed by a label are
emptied rather than patched: the dashboard then counts from the logs (and says to run
``rebuild_production_rollups``) until they are rebuilt, so it is never wrong meanwhile."""

import re

from django.db import migrations

_VERSION_LABEL = re.compile(r"^v?(\d+)$", re.IGNORECASE)


def normalise_labels(apps, schema_editor):  # type: ignore[no-untyped-def]
    log_model = apps.get_model("inference", "PredictionLog")
    version_model = apps.get_model("inference", "ModelVersion")
    numbers = dict(version_model.objects.values_list("pk", "number"))
    # One row per distinct (label, version): a few, whatever the number of logs.
    pairs = log_model.objects.values_list("model_version_label", "model_version_id").distinct()
    renamed = 0
    for label, version_id in list(pairs.order_by()):
        if version_id is not None and version_id in numbers:
            canonical = f"v{numbers[version_id]}"
        else:
            number = _VERSION_LABEL.match(label.strip())
            canonical = f"v{int(number.group(1))}" if number else label.strip()[:100]
        if canonical != label:
            renamed += log_model.objects.filter(
                model_version_label=label, model_version_id=version_id
            ).update(model_version_label=canonical)
    if renamed:
        for name in ("PredictionLogHour", "PredictionLogVerdictHour"):
            apps.get_model("inference", name).objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("inference", "0008_double_check_kind")]

    operations = [migrations.RunPython(normalise_labels, migrations.RunPython.noop)]
