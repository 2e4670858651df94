"""The database session store whose per-request read is plain SQL behaves as Django's own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from server.core.sessions import SessionStore

pytestmark = pytest.mark.django_db


def test_a_saved_session_loads_in_another_store() -> None:
    first = SessionStore()
    first["ratings.raters"] = {"poems": 7}
    first.save()
    again = SessionStore(session_key=first.session_key)
    assert again["ratings.raters"] == {"poems": 7}
    assert again.session_key == first.session_key


def test_an_expired_session_loads_empty_and_gets_a_new_key() -> None:
    store = SessionStore()
    store["x"] = 1
    store.save()
    Session.objects.filter(session_key=store.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    expired = SessionStore(session_key=store.session_key)
    assert expired.load() == {}
    assert expired.session_key is None  # a new key is made on save, never the expired one reused


@pytest.mark.parametrize("key", ["no-such-session-key-000000000000", "short", ""])
def test_unknown_or_malformed_keys_load_empty(key: str) -> None:
    assert SessionStore(session_key=key).load() == {}


def test_a_deleted_session_is_gone_for_every_store() -> None:
    # What a logout does: another process holding the same cookie must not see the session again.
    store = SessionStore()
    store["_auth_user_id"] = "1"
    store.save()
    key = store.session_key
    store.delete()
    assert SessionStore(session_key=key).load() == {}


def test_a_tampered_session_row_loads_empty() -> None:
    store = SessionStore()
    store["x"] = 1
    store.save()
    Session.objects.filter(session_key=store.session_key).update(session_data="not-signed-data")
    assert SessionStore(session_key=store.session_key).load() == {}
