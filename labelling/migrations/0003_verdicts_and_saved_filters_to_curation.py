"""Bad-image verdicts and saved filters moved to curation (curation 0011 took over their tables):
labelling forgets the models and leaves the tables alone."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("labelling", "0002_second_opinion_settled_choice"),
        ("curation", "0011_library_verdicts_and_saved_filters"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="BadVerdict"),
                migrations.DeleteModel(name="SavedFilter"),
            ],
        ),
    ]
