"""Rater quality becomes a binomial test: a significance level and a minimum number of checks per
study. ``min_gold_checks`` (gold answers before a gold pause) becomes ``quality_min_checks`` (checks
of any kind before that kind may pause); a study keeps its own value when it was stricter than the
new default of six."""

import django.core.validators
from django.db import migrations, models
from django.db.models import F
from django.db.models.functions import Greatest


def carry_min_gold_checks(apps, schema_editor):  # type: ignore[no-untyped-def]
    Study = apps.get_model("studies", "Study")
    Study.objects.update(quality_min_checks=Greatest(F("min_gold_checks"), 6))


def restore_min_gold_checks(apps, schema_editor):  # type: ignore[no-untyped-def]
    Study = apps.get_model("studies", "Study")
    Study.objects.update(min_gold_checks=F("quality_min_checks"))


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="quality_alpha",
            field=models.FloatField(
                default=0.01,
                validators=[
                    django.core.validators.MinValueValidator(0.0001),
                    django.core.validators.MaxValueValidator(0.2),
                ],
            ),
        ),
        migrations.AddField(
            model_name="study",
            name="quality_min_checks",
            field=models.PositiveIntegerField(
                default=6, validators=[django.core.validators.MinValueValidator(2)]
            ),
        ),
        migrations.RunPython(carry_min_gold_checks, restore_min_gold_checks),
        migrations.RemoveField(model_name="study", name="min_gold_checks"),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(("quality_alpha__gte", 0.0001), ("quality_alpha__lte", 0.2)),
                name="study_quality_alpha_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(("quality_min_checks__gte", 2)), name="study_quality_min_checks"
            ),
        ),
    ]
