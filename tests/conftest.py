from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see workers/celery_app.py
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

DEMO_CORPUS = Path(__file__).resolve().parents[1] / "workers" / "ml" / "corpus" / "lovelace.txt"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 and its tokenizer, built from the demo corpus in a few seconds."""
    from workers.ml.base_model import TINY_BUILD_CONFIG, build_base_model

    root = tmp_path_factory.mktemp("tiny-model")
    build_base_model(
        corpus=DEMO_CORPUS.read_text(encoding="utf-8")[:20_000],
        output_dir=root / "model",
        checkpoint_dir=root / "checkpoints",
        config=TINY_BUILD_CONFIG,
    )
    return root / "model"


@pytest.fixture
def tiny_model_allowed(tiny_model_dir: Path, settings) -> Path:  # type: ignore[no-untyped-def]
    """The tiny model, in a folder that jobs may load models from (``LOVELACE_MODEL_ROOTS``)."""
    settings.LOVELACE_MODEL_ROOTS = [*settings.LOVELACE_MODEL_ROOTS, tiny_model_dir.parent]
    return tiny_model_dir


@pytest.fixture
def image_storage(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """The images storage in a folder of this test's own (the var dir is left alone)."""
    folder = tmp_path / "images"
    settings.STORAGES = {
        **settings.STORAGES,
        "images": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    return folder


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, request: pytest.FixtureRequest
) -> None:
    """Under pytest-xdist on PostgreSQL, each test process's database (``test_<name>_gw1``) is a
    copy of one database migrated once per run (``TEST["TEMPLATE"]``): the processes no longer run
    every migration each, which took minutes of a loaded 2-core machine. Django still runs
    ``migrate`` on each copy, which finds nothing left to do."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    worker = getattr(request.config, "workerinput", {}).get("workerid")
    if not worker or database["ENGINE"] != "django.db.backends.postgresql":
        return
    database["TEST"]["TEMPLATE"] = template_database(request.config)


def template_database_name() -> str:
    from django.conf import settings

    return f"test_{settings.DATABASES['default']['NAME']}_template"


def template_database(config: pytest.Config) -> str:
    """The run's migrated template database, created by the first test process that asks (the
    others wait on the lock); the controller drops it when the run ends."""
    from filelock import FileLock

    name = template_database_name()
    shared = config._tmp_path_factory.getbasetemp().parent  # type: ignore[attr-defined]  # the run's
    with FileLock(shared / "template-database.lock"):
        done = shared / "template-database.done"
        if not done.exists():
            _server_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
            url = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{name}"))
            # What Django's create_test_db does to a new test database, in a process of its own so
            # that this one's connections keep pointing where they did.
            for command in (["migrate", "--run-syncdb"], ["createcachetable"]):
                subprocess.run(
                    [sys.executable, "manage.py", *command, "--verbosity", "0"],
                    cwd=Path(__file__).resolve().parents[1],
                    env={**os.environ, "DATABASE_URL": url},
                    check=True,
                )
            done.write_text(name)
    return name


def _server_execute(*statements: str) -> None:
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    with psycopg.connect(
        host=database["HOST"], port=database["PORT"] or 5432, user=database["USER"],
        password=database["PASSWORD"] or None, dbname="postgres", autocommit=True,
    ) as server:  # fmt: skip
        for statement in statements:
            server.execute(statement)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The xdist controller drops the template database once every test process is done."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    if not (config._tmp_path_factory.getbasetemp() / "template-database.done").exists():  # type: ignore[attr-defined]
        return
    _server_execute(f'DROP DATABASE IF EXISTS "{template_database_name()}" WITH (FORCE)')
