from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.server.api.world import World, build_world


@pytest.fixture(autouse=True)
def _fresh_throttle_counters(settings) -> None:  # type: ignore[no-untyped-def]
    # Throttle counters live in the shared cache (a database table here): a key prefix of its own
    # gives every test none, without touching the database or deleting anyone else's.
    settings.CACHES = {
        alias: {**options, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
        for alias, options in settings.CACHES.items()
    }


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    # The default hasher takes ~0.3 s a password by design; tests create several users each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db: None, settings, tmp_path: Path) -> World:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    return build_world()


def token_client(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def staff_client(world: World) -> APIClient:
    return token_client(world.staff)


@pytest.fixture
def rater_client(world: World) -> APIClient:
    return token_client(world.rater_a_user)
