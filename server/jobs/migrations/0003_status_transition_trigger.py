from django.db import migrations

from server.core.triggers import install_trigger
from server.jobs.models import JOB_TRANSITION_TRIGGER


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_initial")]
    operations = [install_trigger(JOB_TRANSITION_TRIGGER)]
