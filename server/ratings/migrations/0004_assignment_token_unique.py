from django.db import migrations, models

import server.ratings.models


class Migration(migrations.Migration):
    dependencies = [("ratings", "0003_assignment_token")]
    operations = [
        migrations.AlterField(
            model_name="assignment",
            name="token",
            field=models.CharField(
                default=server.ratings.models.assignment_token_new, editable=False, max_length=32, unique=True
            ),
        ),
    ]
