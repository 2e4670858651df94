from django.apps import AppConfig


class JudgesConfig(AppConfig):
    name = "server.judges"
    label = "judges"
    verbose_name = "Machine judges"
