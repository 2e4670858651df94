from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _create_cache_table(*, using: str, **kwargs: Any) -> None:
    # The embedded topology keeps its cache (rate-limit counters) in a database table, which no
    # migration creates; ``migrate`` makes it so that no deployment step can be forgotten. The
    # command does nothing for other cache backends or when the table exists (one introspection
    # query). Django sends the signal once per app with models, and this app has none, so it is
    # not filtered by sender.
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


class CoreConfig(AppConfig):
    name = "server.core"
    label = "core"

    def ready(self) -> None:
        post_migrate.connect(_create_cache_table, dispatch_uid="core.create_cache_table")
