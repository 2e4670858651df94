"""Settings fail fast, naming the variable, and production mode passes Django's deploy checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from server.config.environment import Environment, parse_rate
from tests.integration.worker_process import ROOT, environment

PRODUCTION_KEY = "k" * 30 + "-production-secret-key-0123456789"


def load_settings(*, show: str = "settings.DEBUG", **variables: str) -> subprocess.CompletedProcess[str]:
    """Start Django with only these of the variables below set; print ``show``."""
    env = environment(**variables)
    for name in (
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "CACHE_URL",
        "DJANGO_DEBUG",
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "LOVELACE_TRUSTED_PROXY_COUNT",
        "LOVELACE_ALLOW_MTURK_IFRAME",
        "LOVELACE_METRICS_TOKEN",
    ):
        if name not in variables:
            env.pop(name, None)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); from django.conf import settings; print({show})",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "server.config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_mode_without_secret_key_stops_with_its_name() -> None:
    completed = load_settings(DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="example.org")
    assert completed.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in completed.stderr


def test_production_mode_without_allowed_hosts_stops_with_its_name() -> None:
    completed = load_settings(DJANGO_DEBUG="false", DJANGO_SECRET_KEY=PRODUCTION_KEY)
    assert completed.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS must be set" in completed.stderr


POSTGRES = "postgres://lovelace@db.invalid:5432/lovelace"  # never connected to: settings only parse it
PRODUCTION = {"DJANGO_SECRET_KEY": PRODUCTION_KEY, "DJANGO_ALLOWED_HOSTS": "lovelace.example.org"}


def test_a_server_database_turns_debug_off_by_default_and_start_up_says_what_is_missing() -> None:
    completed = load_settings(DATABASE_URL=POSTGRES)

    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: "
        "DJANGO_SECRET_KEY must be set (50 or more random characters). "
        "DJANGO_ALLOWED_HOSTS must be set (comma-separated host names, e.g. lovelace.example.org). "
        "They are required in production mode, which is on because DATABASE_URL names a server and "
        "DJANGO_DEBUG is not set (it defaults to true only in the embedded topology: SQLite and the "
        "filesystem broker). On a development machine, set DJANGO_DEBUG=true."
    )


def test_a_server_broker_alone_turns_debug_off_too() -> None:
    completed = load_settings(CELERY_BROKER_URL="redis://127.0.0.1:6379/0", DJANGO_ALLOWED_HOSTS="a.org")

    assert completed.returncode != 0
    last = completed.stderr.strip().splitlines()[-1]
    assert "DJANGO_SECRET_KEY must be set" in last and "DJANGO_ALLOWED_HOSTS" not in last
    assert "because CELERY_BROKER_URL names a server and DJANGO_DEBUG is not set" in last


@pytest.mark.parametrize(
    ("variables", "debug"),
    [
        ({}, "True"),  # embedded
        ({"DATABASE_URL": "sqlite:////tmp/lovelace-settings-test.sqlite3"}, "True"),  # still embedded
        ({"DATABASE_URL": POSTGRES, **PRODUCTION}, "False"),
        ({"DATABASE_URL": POSTGRES, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0", **PRODUCTION}, "False"),
        ({"DATABASE_URL": POSTGRES, "DJANGO_DEBUG": "true"}, "True"),  # a developer's explicit choice
        ({"DJANGO_DEBUG": "false", **PRODUCTION}, "False"),
    ],
)
def test_debug_defaults_on_only_in_the_embedded_topology(variables: dict[str, str], debug: str) -> None:
    completed = load_settings(**variables)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == debug


def test_explicit_production_mode_says_why_the_variables_are_required() -> None:
    completed = load_settings(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="short", DJANGO_ALLOWED_HOSTS="a.org")

    assert completed.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY must be at least 50 characters "
        "when DJANGO_DEBUG is off. They are required because DJANGO_DEBUG is off (production mode)."
    )


PROXY_SETTINGS = (
    "settings.LOVELACE_TRUSTED_PROXY_COUNT, getattr(settings, 'SECURE_PROXY_SSL_HEADER', None), "
    "settings.REST_FRAMEWORK['NUM_PROXIES']"
)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "0 None 0"),  # embedded: no proxy, no forwarded header trusted
        ({"DJANGO_DEBUG": "false", **PRODUCTION}, "1 ('HTTP_X_FORWARDED_PROTO', 'https') 1"),
        ({"DJANGO_DEBUG": "false", "LOVELACE_TRUSTED_PROXY_COUNT": "0", **PRODUCTION}, "0 None 0"),
        ({"LOVELACE_TRUSTED_PROXY_COUNT": "2"}, "2 ('HTTP_X_FORWARDED_PROTO', 'https') 2"),
    ],
)
def test_forwarded_headers_are_trusted_only_from_the_configured_proxies(
    variables: dict[str, str], expected: str
) -> None:
    completed = load_settings(show=PROXY_SETTINGS, **variables)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == expected


def test_a_negative_proxy_count_is_refused_by_name() -> None:
    completed = load_settings(LOVELACE_TRUSTED_PROXY_COUNT="-1")

    assert "LOVELACE_TRUSTED_PROXY_COUNT must be at least 0, got -1" in completed.stderr


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"DJANGO_DEBUG": "false", "LOVELACE_ALLOW_MTURK_IFRAME": "true", **PRODUCTION}, "True Lax Lax"),
        ({"LOVELACE_ALLOW_MTURK_IFRAME": "true"}, "False Lax Lax"),  # needs Secure cookies: production only
    ],
)
def test_the_mturk_iframe_leaves_the_site_wide_cookies_lax(variables: dict[str, str], expected: str) -> None:
    show = (
        "settings.LOVELACE_ALLOW_MTURK_IFRAME, settings.SESSION_COOKIE_SAMESITE, "
        "settings.CSRF_COOKIE_SAMESITE"
    )

    completed = load_settings(show=show, **variables)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == expected


def test_malformed_database_url_stops_with_its_name() -> None:
    completed = load_settings(DATABASE_URL="mysql://db/lovelace")
    assert completed.returncode != 0
    assert "DATABASE_URL must be a postgres:// or sqlite:// URL, got scheme 'mysql'" in completed.stderr


def test_malformed_broker_url_stops_with_its_name() -> None:
    completed = load_settings(CELERY_BROKER_URL="redis://:notaport/0")
    assert completed.returncode != 0
    assert "CELERY_BROKER_URL" in completed.stderr


def test_production_mode_refuses_a_per_process_cache() -> None:
    completed = load_settings(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=PRODUCTION_KEY,
        DJANGO_ALLOWED_HOSTS="example.org",
        CACHE_URL="locmem://",
    )
    assert completed.returncode != 0
    assert "CACHE_URL=locmem:// keeps rate-limit counters inside each process" in completed.stderr


def test_a_malformed_crowd_limit_stops_with_its_name() -> None:
    completed = load_settings(LOVELACE_CROWD_JOINS_PER_ADDRESS="thirty an hour")
    assert completed.returncode != 0
    assert (
        "LOVELACE_CROWD_JOINS_PER_ADDRESS must be a rate such as 30/hour (a whole number ≥ 1, then "
        "second, minute, hour or day), got 'thirty an hour'."
    ) in completed.stderr


def test_a_short_metrics_token_stops_with_its_name_and_a_long_one_is_kept() -> None:
    short = load_settings(show="settings.LOVELACE_METRICS_TOKEN", LOVELACE_METRICS_TOKEN="x" * 31)
    assert short.returncode != 0
    assert "LOVELACE_METRICS_TOKEN must be at least 32 characters, got 31" in short.stderr

    kept = load_settings(show="settings.LOVELACE_METRICS_TOKEN", LOVELACE_METRICS_TOKEN="y" * 32)
    assert (kept.returncode, kept.stdout.strip()) == (0, "y" * 32)
    unset = load_settings(show="repr(settings.LOVELACE_METRICS_TOKEN)")
    assert (unset.returncode, unset.stdout.strip()) == (0, "''")


@pytest.mark.parametrize(
    ("variables", "production", "expected"),
    [
        (
            {},
            True,
            {
                "BACKEND": "django.core.cache.backends.db.DatabaseCache",
                "LOCATION": "lovelace_cache",
                "TIMEOUT": 86400,
                "OPTIONS": {"MAX_ENTRIES": 200_000},
            },
        ),
        (
            {"CACHE_URL": "redis://cache.local:6380/1"},
            True,
            {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": "redis://cache.local:6380/1",
            },
        ),
        ({"CACHE_URL": "locmem://"}, False, {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}),
    ],
)
def test_cache_url_selects_the_backend(
    variables: dict[str, str], production: bool, expected: dict[str, object]
) -> None:
    assert Environment(variables).cache("CACHE_URL", production=production) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("memcached://cache.local:11211", "CACHE_URL must be a redis://, rediss:// or locmem:// URL"),
        ("redis://:notaport/1", "CACHE_URL has an invalid port"),
        ("redis:///1", "CACHE_URL must name a host"),
    ],
)
def test_malformed_cache_url_is_refused_with_its_name(value: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        Environment({"CACHE_URL": value}).cache("CACHE_URL", production=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("30/hour", (30, 3600)), ("5/minutes", (5, 60)), (" 1/Second ", (1, 1)), ("2/day", (2, 86400))],
)
def test_rates_parse_into_a_count_and_seconds(value: str, expected: tuple[int, int]) -> None:
    assert parse_rate(value) == expected


@pytest.mark.parametrize("value", ["0/hour", "30", "30/fortnight", "-1/minute", "x/hour"])
def test_malformed_rates_are_refused(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="must be a rate such as 30/hour"):
        Environment({"LIMIT": value}).rate("LIMIT", default="1/hour")


def test_embedded_defaults_load_without_any_variable() -> None:
    completed = load_settings()
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "True"


def test_deploy_checks_are_clean_in_production_mode(tmp_path: Path) -> None:
    env = environment(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=PRODUCTION_KEY,
        DJANGO_ALLOWED_HOSTS="lovelace.example.org",
        LOVELACE_VAR_DIR=str(tmp_path),
    )
    completed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert "no issues" in completed.stdout


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"X": "maybe"}, "X must be a boolean"),
        ({"X": ""}, None),
    ],
)
def test_boolean_parsing(variables: dict[str, str], message: str | None) -> None:
    reader = Environment(variables)
    if message is None:
        assert reader.boolean("X", default=True) is True
    else:
        with pytest.raises(ImproperlyConfigured, match=message):
            reader.boolean("X", default=True)


def test_integer_below_minimum_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="LOVELACE_REAPER_INTERVAL must be at least 1, got 0"):
        Environment({"LOVELACE_REAPER_INTERVAL": "0"}).integer(
            "LOVELACE_REAPER_INTERVAL", default=60, minimum=1
        )


def test_postgres_url_is_parsed_into_connection_settings() -> None:
    database = Environment(
        {"DATABASE_URL": "postgres://ada:p%40ss@db.local:6543/lovelace?sslmode=require"}
    ).database("DATABASE_URL", sqlite_path=Path("/unused"))
    assert {
        key: database[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
    } == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "lovelace",
        "USER": "ada",
        "PASSWORD": "p@ss",
        "HOST": "db.local",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require", "prepare_threshold": 5},
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("prepare_threshold=off", {"prepare_threshold": None}),
        (
            "prepare_threshold=2&server_side_binding=false",
            {"server_side_binding": False, "prepare_threshold": 2},
        ),
    ],
)
def test_postgres_url_options_are_typed(query: str, expected: dict[str, object]) -> None:
    database = Environment({"DATABASE_URL": f"postgres://db.local/lovelace?{query}"}).database(
        "DATABASE_URL", sqlite_path=Path("/unused")
    )
    assert database["OPTIONS"] == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("prepare_threshold=soon", "prepare_threshold must be a whole number of runs or 'off', got 'soon'"),
        ("prepare_threshold=-1", "prepare_threshold must be a whole number"),
        ("server_side_binding=maybe", "server_side_binding must be true or false, got 'maybe'"),
    ],
)
def test_postgres_url_options_with_wrong_types_are_refused(query: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message) as raised:
        Environment({"DATABASE_URL": f"postgres://db.local/lovelace?{query}"}).database(
            "DATABASE_URL", sqlite_path=Path("/unused")
        )
    assert str(raised.value).startswith("DATABASE_URL:")


def test_postgres_url_without_database_name_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="must name a host and a database"):
        Environment({"DATABASE_URL": "postgres://db.local"}).database(
            "DATABASE_URL", sqlite_path=Path("/unused")
        )


def test_sqlite_default_uses_wal_mode(tmp_path: Path) -> None:
    database = Environment({}).database("DATABASE_URL", sqlite_path=tmp_path / "x.sqlite3")
    assert "journal_mode=WAL" in database["OPTIONS"]["init_command"]
    assert database["NAME"] == str(tmp_path / "x.sqlite3")


def test_connection_health_checks_are_on_unless_asked_off() -> None:
    url = {"DATABASE_URL": "postgres://db.local/lovelace"}
    assert (
        Environment(url).database("DATABASE_URL", sqlite_path=Path("/unused"))["CONN_HEALTH_CHECKS"] is True
    )
    database = Environment(url).database("DATABASE_URL", sqlite_path=Path("/unused"), health_checks=False)
    assert database["CONN_HEALTH_CHECKS"] is False


@pytest.mark.parametrize(
    ("entry", "expected"),
    [("import server.config.wsgi", "False"), ("import django; django.setup()", "True")],
)
def test_the_web_process_skips_connection_health_checks_and_other_processes_keep_them(
    entry: str, expected: str
) -> None:
    import os
    import subprocess
    import sys

    show = "from django.conf import settings\nprint(settings.DATABASES['default']['CONN_HEALTH_CHECKS'])"
    code = f"{entry}\n{show}"
    environment = {key: value for key, value in os.environ.items() if key != "LOVELACE_DB_HEALTH_CHECKS"}
    environment["DJANGO_SETTINGS_MODULE"] = "server.config.settings"
    finished = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(__file__).parents[3],
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.strip().splitlines()[-1] == expected


def test_root_folders_are_absolute_and_colon_separated() -> None:
    reader = Environment({"LOVELACE_MODEL_ROOTS": "/srv/models: /mnt/weights:", "EMPTY": ""})
    assert reader.path_list("LOVELACE_MODEL_ROOTS") == [Path("/srv/models"), Path("/mnt/weights")]
    assert reader.path_list("EMPTY") == []
    assert reader.path_list("UNSET") == []


def test_a_relative_root_folder_is_refused_with_its_name() -> None:
    with pytest.raises(
        ImproperlyConfigured, match=r"LOVELACE_DATA_ROOTS must list absolute folders, got 'data/corpora'\."
    ):
        Environment({"LOVELACE_DATA_ROOTS": "/srv/data:data/corpora"}).path_list("LOVELACE_DATA_ROOTS")


def test_the_image_storage_defaults_to_a_folder_in_the_var_dir(tmp_path: Path) -> None:
    completed = load_settings(show='settings.STORAGES["images"]', LOVELACE_VAR_DIR=str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(
        {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path.resolve() / "images")},
        }
    )


def test_the_image_storage_backend_and_its_options_come_from_the_environment() -> None:
    completed = load_settings(
        show='settings.STORAGES["images"]',
        LOVELACE_IMAGE_STORAGE_BACKEND="storages.backends.s3.S3Storage",
        LOVELACE_IMAGE_STORAGE_OPTIONS='{"bucket_name": "lovelace-images", "default_acl": "private"}',
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(
        {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": "lovelace-images", "default_acl": "private"},
        }
    )
    refused = load_settings(LOVELACE_IMAGE_STORAGE_OPTIONS='["not", "an object"]')
    assert refused.returncode != 0
    assert "LOVELACE_IMAGE_STORAGE_OPTIONS must be a JSON object." in refused.stderr
