from django.apps import AppConfig


class GeneratorsConfig(AppConfig):
    name = "server.generators"
    label = "generators"
