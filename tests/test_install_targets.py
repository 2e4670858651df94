"""The lock files, and the two images built from them (Dockerfile, docker-compose.yml).

No docker engine runs here, so the images are checked in two ways: the Dockerfile's structure
(dependencies before source, a non-root user, torch only in the worker), and the web image's
promise itself: web, beat, migrations and static files work with nothing importable but what
``requirements/web.lock`` installs (every other installed distribution is hidden from the
subprocesses).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from tests.integration.worker_process import CELERY, environment, stop

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
LOCKS = ("web.lock", "worker-cpu.lock", "worker-cuda.lock", "dev.lock")
CUDA_ONLY = re.compile(r"^(torch|triton|nvidia-.+|cuda-.+)$")
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)(?:\s*;[^\\]*)?\s*\\?$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries(name: str) -> dict[str, tuple[str, list[str]]]:
    """``{package: (version, hashes)}``; fails on any line that is not a pin, a hash or a comment."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for number, raw in enumerate((REQUIREMENTS / name).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash=sha256:"):
            assert current is not None, f"{name}:{number}: a hash before any package"
            digest = line.removeprefix("--hash=sha256:").rstrip(" \\")
            assert re.fullmatch(r"[0-9a-f]{64}", digest), f"{name}:{number}: {line}"
            entries[current][1].append(digest)
            continue
        match = ENTRY.match(line)
        assert match, f"{name}:{number}: not an exact pin: {line}"
        current = canonical(match.group(1))
        assert current not in entries, f"{name}:{number}: {current} pinned twice"
        entries[current] = (match.group(2), [])
    return entries


def pyproject_pins() -> dict[str, dict[str, str]]:
    """The direct dependencies of pyproject.toml by group: ``{"core"|extra: {package: version}}``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    pins: dict[str, dict[str, str]] = {}
    for group, requirements in groups.items():
        pins[group] = {}
        for requirement in requirements:
            name, version = requirement.split("==")
            pins[group][canonical(name.split("[")[0])] = version
    return pins


def test_every_lock_pins_every_package_exactly_with_hashes() -> None:
    for name in (*LOCKS, "uv.lock"):
        entries = lock_entries(name)
        assert entries, name
        unhashed = [package for package, (_, hashes) in entries.items() if not hashes]
        assert unhashed == [], f"{name}: no hash for {unhashed}"


def test_the_locks_hold_pyproject_pins_and_agree_with_each_other() -> None:
    pins = pyproject_pins()
    wanted = {
        "web.lock": pins["core"],
        "worker-cpu.lock": {**pins["core"], **pins["ml"]},
        "worker-cuda.lock": {**pins["core"], **pins["ml"], **pins["gpu"]},
        "dev.lock": {**pins["core"], **pins["ml"], **pins["dev"]},
    }
    versions: dict[str, dict[str, str]] = {}
    for name in LOCKS:
        entries = lock_entries(name)
        for package, version in wanted[name].items():
            if name != "worker-cuda.lock" and package == "torch":
                continue  # installed apart, by version (requirements/lock.sh)
            assert package in entries, f"{name} lacks {package}"
            assert entries[package][0] == version, f"{name}: {package} {entries[package][0]} != {version}"
        for package, (version, _) in entries.items():
            versions.setdefault(package, {})[name] = version
        if name != "worker-cuda.lock":
            assert [package for package in entries if CUDA_ONLY.match(package)] == [], name
    disagreeing = {package: seen for package, seen in versions.items() if len(set(seen.values())) > 1}
    assert disagreeing == {}
    # The web image carries no ML library at all; only the GPU image has the CUDA-only ones.
    assert not set(lock_entries("web.lock")) & (set(pins["ml"]) - set(pins["core"]))
    for name in ("web.lock", "worker-cpu.lock", "dev.lock"):
        assert not set(lock_entries(name)) & set(pins["gpu"]), name


def test_torch_is_pinned_to_one_version_everywhere() -> None:
    torch = pyproject_pins()["ml"]["torch"]
    assert lock_entries("worker-cuda.lock")["torch"][0] == torch
    assert re.search(rf"^TORCH_VERSION := {re.escape(torch)}$", (ROOT / "Makefile").read_text(), re.M)
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(torch)}$", (ROOT / "Dockerfile").read_text(), re.M)


def test_this_environment_is_the_dev_lock() -> None:
    """`make install` installed exactly the lock (a stale .venv fails here, not somewhere odd)."""
    differing = {}
    for package, (version, _) in lock_entries("dev.lock").items():
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            differing[package] = (installed, version)
    assert differing == {}, "installed != dev.lock: run `make install`"


# --- The Dockerfile -------------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, tuple[str, list[str]]]:
    """``{stage: (parent, instructions)}`` with continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, tuple[str, list[str]]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM (\S+) AS (\S+)$", line)
        if match:
            current = []
            stages[match.group(2)] = (match.group(1), current)
        elif current is not None:
            current.append(line)
    return stages


def lineage(stages: dict[str, tuple[str, list[str]]], target: str) -> list[str]:
    """Every instruction that builds ``target``, from the base image on."""
    parent, instructions = stages[target]
    return (lineage(stages, parent) if parent in stages else []) + instructions


@pytest.mark.parametrize("target", ["web", "worker"])
def test_each_image_installs_locked_dependencies_before_the_source_and_runs_unprivileged(
    target: str,
) -> None:
    instructions = lineage(dockerfile_stages(), target)
    installs = [i for i, line in enumerate(instructions) if "pip install" in line]
    sources = [
        i for i, line in enumerate(instructions) if re.match(r"COPY (server|workers|evaluation)\b", line)
    ]
    assert installs and sources and max(installs) < min(sources)
    for i in installs:
        assert "--mount=type=cache" in instructions[i]  # BuildKit's cache survives a rebuild
        assert "--require-hashes" in instructions[i]
    users = [line for line in instructions if line.startswith("USER ")]
    assert users and users[-1] == "USER lovelace"
    torch = any("torch" in line for line in instructions)
    assert torch == (target == "worker")
    ignored = [line for line in (ROOT / ".dockerignore").read_text().split("\n") if line[:1] not in "#"]
    assert ignored[0] == "*" and "!requirements/*.lock" in ignored  # a small, stable build context


def test_compose_runs_web_beat_and_migrations_on_the_small_image_and_workers_on_torch() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("migrate", "web", "beat"):
        assert services[name]["build"]["target"] == "web", name
    assert services["worker-cpu"]["build"] == {"context": ".", "target": "worker", "args": {"VARIANT": "cpu"}}
    assert services["worker-gpu"]["build"] == {
        "context": ".",
        "target": "worker",
        "args": {"VARIANT": "cuda"},
    }
    assert len({service["image"] for service in services.values()}) == 5  # postgres, redis, 3 of ours


# --- The web image's promise ----------------------------------------------------------------------

HIDE = """
import importlib.abc, sys
HIDDEN = frozenset({hidden!r})
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"{{name}} is not in requirements/web.lock", name=name)
        return None
sys.meta_path.insert(0, Hide())
"""


def hidden_outside_web_lock() -> set[str]:
    """Top-level modules of this environment that the web image would not have."""
    allowed = set(lock_entries("web.lock")) | {"lovelace", "pip", "setuptools", "wheel"}
    hidden = set()
    for module, distributions in importlib.metadata.packages_distributions().items():
        if not {canonical(distribution) for distribution in distributions} & allowed:
            hidden.add(module)
    return hidden


@pytest.fixture
def web_image_environment(tmp_path: Path) -> Iterator[dict[str, str]]:
    """This machine's PostgreSQL and Redis, a fresh database, and only web.lock importable."""
    import psycopg

    from tests.settings import DATABASES

    hidden = hidden_outside_web_lock()
    assert {"torch", "transformers", "trl"} <= hidden  # the hiding hides what it should
    (tmp_path / "sitecustomize.py").write_text(HIDE.format(hidden=sorted(hidden)))
    database = DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("needs PostgreSQL")
    name = f"lovelace_webimage_{uuid.uuid4().hex[:8]}"
    server = psycopg.connect(
        host=database["HOST"], port=database["PORT"] or 5432, user=database["USER"],
        password=database["PASSWORD"] or None, dbname="postgres", autocommit=True,
    )  # fmt: skip
    server.execute(f'CREATE DATABASE "{name}"')
    url = environment()["DATABASE_URL"]
    env = environment(
        DATABASE_URL=urlunsplit(urlsplit(url)._replace(path=f"/{name}")),
        LOVELACE_VAR_DIR=str(tmp_path / "var"),
        LOVELACE_STATIC_ROOT=str(tmp_path / "static"),
    )
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    try:
        yield env
    finally:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.close()


def run(env: dict[str, str], *command: str) -> str:
    completed = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return completed.stdout


@pytest.mark.integration
def test_web_beat_migrations_and_static_files_need_nothing_beyond_the_web_lock(
    web_image_environment: dict[str, str], tmp_path: Path
) -> None:
    env = web_image_environment
    hidden = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert "not in requirements/web.lock" in hidden.stderr  # the hiding reaches subprocesses
    run(env, "manage.py", "migrate", "--noinput")
    run(env, "manage.py", "check")
    assert "static files copied" in run(env, "manage.py", "collectstatic", "--noinput")
    from tests.server.config.test_light_web_process import HEAVY_MODULES, LOAD_EVERYTHING

    assert run(env, "-c", f"HEAVY = {HEAVY_MODULES!r}\n{LOAD_EVERYTHING}").strip() == "none"
    # beat runs in the web image too: it starts and ticks.
    log = tmp_path / "beat.log"
    with log.open("wb") as output:
        beat = subprocess.Popen(
            [CELERY, "-A", "workers.celery_app", "beat", "--loglevel", "INFO", "-s", str(tmp_path / "beat")],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "Scheduler: Sending due task" not in log.read_text() and "Schedule changed" not in (
                log.read_text()
            ):
                assert beat.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                time.sleep(0.2)
        finally:
            stop(beat)
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
