"""``manage.py api_token USERNAME [--rotate]``: print the user's REST API token (created when missing).

Programs send it as ``Authorization: Token <key>``. ``--rotate`` replaces the key (the old one
stops working at once). Staff can do the same on the dashboard's token page.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from server.api.services import api_token_issue
from server.core.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Print (creating when missing) the REST API token of a user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--rotate", action="store_true", help="replace the existing key")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"There is no user {options['username']!r}.")
        try:
            token = api_token_issue(user=user, rotate=options["rotate"])
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(token.key)
