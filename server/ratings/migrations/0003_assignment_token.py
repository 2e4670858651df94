"""Random assignment tokens: a nullable column, filled for the existing rows (0004 makes it unique
and required). Two migrations, so the fill commits before the table is altered again."""

import secrets

from django.db import migrations, models

BATCH = 2000


def fill_tokens(apps, schema_editor):  # type: ignore[no-untyped-def]
    Assignment = apps.get_model("ratings", "Assignment")
    pending = []
    for assignment in Assignment.objects.filter(token__isnull=True).only("id").iterator(chunk_size=BATCH):
        assignment.token = secrets.token_urlsafe(16)
        pending.append(assignment)
        if len(pending) == BATCH:
            Assignment.objects.bulk_update(pending, ["token"])
            pending = []
    Assignment.objects.bulk_update(pending, ["token"])


class Migration(migrations.Migration):
    dependencies = [("ratings", "0002_comparison_prompt_trigger")]
    operations = [
        migrations.AddField(
            model_name="assignment",
            name="token",
            field=models.CharField(editable=False, max_length=32, null=True),
        ),
        migrations.RunPython(fill_tokens, migrations.RunPython.noop),
    ]
