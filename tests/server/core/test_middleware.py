"""The health path skips host validation and the https redirect; SameSite=None (MTurk) is given
only to the cookies of rating pages for participants without an account."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def production_security(settings):  # type: ignore[no-untyped-def]
    settings.ALLOWED_HOSTS = ["lovelace.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    return settings


@pytest.mark.parametrize("path", ["/healthz", "/healthz?cc=LOVELACE-1"])
def test_the_health_path_answers_any_host_over_plain_http(production_security, path: str) -> None:  # type: ignore[no-untyped-def]
    response = Client().get(path, HTTP_HOST="127.0.0.1:8000")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": connection.vendor}


@pytest.mark.parametrize(
    ("method", "path", "host", "status"),
    [
        ("get", "/accounts/login/", "127.0.0.1:8000", 400),  # another path: the host is checked
        ("post", "/healthz", "127.0.0.1:8000", 400),  # another method on the health path too
        ("get", "/accounts/login/", "lovelace.example.org", 301),  # and plain HTTP is redirected
        ("get", "/healthzz", "lovelace.example.org", 301),
    ],
)
def test_only_the_health_check_is_exempt(
    production_security, method: str, path: str, host: str, status: int
) -> None:  # type: ignore[no-untyped-def]
    response = getattr(Client(), method)(path, HTTP_HOST=host)

    assert response.status_code == status


def samesite(response, name: str) -> str:  # type: ignore[no-untyped-def]
    return response.cookies[name]["samesite"]


def mturk_page(study):  # type: ignore[no-untyped-def]
    return reverse("ratings:page", args=[study.slug]) + (
        f"?t={study.invite_token}&assignmentId=a-1&hitId=h-1&workerId=w-1"
    )


@pytest.fixture
def mturk_iframe(settings):  # type: ignore[no-untyped-def]
    settings.LOVELACE_ALLOW_MTURK_IFRAME = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    return settings


def test_a_rating_page_gives_an_mturk_worker_cross_site_cookies(mturk_iframe) -> None:  # type: ignore[no-untyped-def]
    study = factories.study(gold_rate=0.0, repeat_rate=0.0)

    response = Client().get(mturk_page(study))

    assert response.status_code == 200
    assert (samesite(response, "sessionid"), samesite(response, "csrftoken")) == ("None", "None")
    assert (response.cookies["sessionid"]["secure"], response.cookies["csrftoken"]["secure"]) == (True, True)


def test_every_other_page_keeps_lax_cookies(mturk_iframe) -> None:  # type: ignore[no-untyped-def]
    factories.user(username="operator", is_staff=True, password="a long enough password")
    client = Client()

    login_page = client.get("/accounts/login/")
    logged_in = client.post(
        "/accounts/login/", {"username": "operator", "password": "a long enough password"}
    )

    assert samesite(login_page, "csrftoken") == "Lax"
    assert logged_in.status_code == 302
    assert samesite(logged_in, "sessionid") == "Lax"


def test_a_logged_in_user_on_a_rating_page_keeps_lax_cookies(mturk_iframe) -> None:  # type: ignore[no-untyped-def]
    study = factories.study(gold_rate=0.0, repeat_rate=0.0)
    client = Client()
    client.force_login(factories.user(username="operator", is_staff=True))

    response = client.get(reverse("ratings:page", args=[study.slug]))  # enrols staff: the session changes

    assert response.status_code == 200
    assert samesite(response, "sessionid") == "Lax"


def test_without_the_setting_rating_pages_keep_lax_cookies(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOVELACE_ALLOW_MTURK_IFRAME = False
    study = factories.study(gold_rate=0.0, repeat_rate=0.0)

    response = Client().get(mturk_page(study))

    assert (samesite(response, "sessionid"), samesite(response, "csrftoken")) == ("Lax", "Lax")
