from django.db import migrations

from server.core.triggers import install_trigger
from server.ratings.models import COMPARISON_PROMPT_TRIGGER


class Migration(migrations.Migration):
    dependencies = [("ratings", "0001_initial"), ("generators", "0001_initial")]
    operations = [install_trigger(COMPARISON_PROMPT_TRIGGER)]
