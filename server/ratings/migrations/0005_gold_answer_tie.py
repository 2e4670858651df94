"""Staff's gold checks may expect a tie."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ratings', '0004_assignment_token_unique'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='comparison',
            name='gold_comparison_has_answer',
        ),
        migrations.AlterField(
            model_name='comparison',
            name='gold_answer',
            field=models.CharField(blank=True, choices=[('A', 'A'), ('B', 'B'), ('tie', 'Tie')], max_length=3),
        ),
        migrations.AddConstraint(
            model_name='comparison',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('kind', 'gold'), ('gold_answer__in', ['A', 'B', 'tie'])), models.Q(models.Q(('kind', 'gold'), _negated=True), ('gold_answer', '')), _connector='OR'), name='gold_comparison_has_answer'),
        ),
    ]
