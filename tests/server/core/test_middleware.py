"""The health path skips host validation and the https redirect; SameSite=None (MTurk) is given
only to the cookies of rating pages for participants without an account."""

from __future__ import annotations

import pytest
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
    assert response.json() == {"status": "ok"}


def test_the_readiness_path_reports_the_database_and_the_broker_over_plain_http(production_security) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/readyz", HTTP_HOST="127.0.0.1:8000")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "broker": "ok"}


def test_readiness_answers_503_and_names_a_broker_that_is_down(production_security) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    production_security.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"

    response = Client().get("/readyz", HTTP_HOST="127.0.0.1:8000")

    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "database": "ok", "broker": "unavailable"}


def test_the_embedded_broker_is_ready_when_its_folder_is_writable(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_FOLDER = tmp_path / "broker"

    missing = Client().get("/readyz")
    (tmp_path / "broker" / "queue").mkdir(parents=True)
    present = Client().get("/readyz")

    assert (missing.status_code, missing.json()["broker"]) == (503, "unavailable")
    assert (present.status_code, present.json()["broker"]) == (200, "ok")


def test_every_answer_carries_a_request_id_and_keeps_a_sane_one_from_the_client() -> None:
    first = Client().get("/accounts/login/")
    second = Client().get("/accounts/login/")
    kept = Client().get("/accounts/login/", HTTP_X_REQUEST_ID="lb-1234.abc")
    replaced = Client().get("/accounts/login/", HTTP_X_REQUEST_ID="x" * 65)

    assert len(first["X-Request-ID"]) == 32 and first["X-Request-ID"] != second["X-Request-ID"]
    assert kept["X-Request-ID"] == "lb-1234.abc"
    assert replaced["X-Request-ID"] != "x" * 65


@pytest.mark.parametrize(
    ("method", "path", "host", "status"),
    [
        ("get", "/accounts/login/", "127.0.0.1:8000", 400),  # another path: the host is checked
        ("post", "/healthz", "127.0.0.1:8000", 400),  # another method on the health path too
        ("get", "/accounts/login/", "lovelace.example.org", 301),  # and plain HTTP is redirected
        ("get", "/healthzz", "lovelace.example.org", 301),
    ],
)
def test_only_the_probes_are_exempt(
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
