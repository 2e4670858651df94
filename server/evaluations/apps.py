from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "server.evaluations"
    label = "evaluations"
