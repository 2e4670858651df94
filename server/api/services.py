"""Writing API credentials."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from rest_framework.authtoken.models import Token

from server.core.exceptions import ApplicationError


@transaction.atomic
def api_token_issue(*, user: Any, rotate: bool = False) -> Token:
    """The user's API token: the existing one, or a new one when there is none or ``rotate`` is set
    (rotating revokes the old key at once)."""
    if not user.is_active:
        raise ApplicationError("An inactive account cannot have an API token.")
    if rotate:
        Token.objects.filter(user=user).delete()
    token, _ = Token.objects.get_or_create(user=user)
    return token
