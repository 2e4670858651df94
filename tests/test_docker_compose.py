"""docker-compose.yml describes the production topology, and docker compose accepts it."""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from tests.integration.worker_process import environment, stop

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_of_the_production_topology() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker-gpu", "worker-cpu", "beat"}
    assert "gunicorn" in services["web"]["command"]
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]  # only the proxy on this host reaches it
    gpu = services["worker-gpu"]
    assert gpu["command"][gpu["command"].index("-Q") + 1] == "gpu"
    assert gpu["command"][gpu["command"].index("--prefetch-multiplier") + 1] == "1"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    cpu = services["worker-cpu"]
    assert cpu["command"][cpu["command"].index("-Q") + 1] == "cpu,default"
    assert "beat" in services["beat"]["command"]
    for name in ("postgres", "redis", "web", "worker-gpu", "worker-cpu"):
        assert "healthcheck" in services[name], name
    assert set(compose()["volumes"]) == {"postgres-data", "redis-data", "lovelace-data"}


def _compose_command() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text() + "\nPOSTGRES_PASSWORD=secret\n")
    completed = subprocess.run(
        [*command, "config", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr


# --- The web service's health check against gunicorn in production mode ---------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _database_url(tmp_path: Path) -> str:
    """The test database, for another process (an in-memory SQLite one cannot be shared)."""
    from django.db import connection

    database = connection.settings_dict
    if connection.vendor != "postgresql":
        return f"sqlite:///{tmp_path / 'health.sqlite3'}"
    credentials = quote(database["USER"]) + (
        f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else ""
    )
    return f"postgres://{credentials}@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}"


def _ask(port: int, path: str, **headers: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.mark.integration
@pytest.mark.django_db
def test_the_web_health_check_passes_against_gunicorn_in_production_mode(tmp_path: Path) -> None:
    web = compose()["services"]["web"]
    port = _free_port()
    # docker-compose.yml's own gunicorn command, on a free port of this machine with one worker.
    command = list(web["command"])
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    command[command.index("--workers") + 1] = "1"
    # The production environment of docker-compose.yml and .env.example's required variables.
    app = compose()["x-app"]["environment"]
    assert app["DJANGO_DEBUG"] == "false"
    env = environment(
        DJANGO_DEBUG=app["DJANGO_DEBUG"],
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="lovelace.example.org",
        DATABASE_URL=_database_url(tmp_path),
        LOVELACE_VAR_DIR=str(tmp_path),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # python, gunicorn
    )
    for name in ("LOVELACE_TRUSTED_PROXY_COUNT", "DJANGO_SECURE_SSL_REDIRECT", "LOVELACE_ALLOW_MTURK_IFRAME"):
        env.pop(name, None)  # their production defaults
    # The health check exactly as written, but for the port.
    kind, *check = web["healthcheck"]["test"]
    assert kind == "CMD"
    probe = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in check]
    assert probe != check
    seconds = int(str(web["healthcheck"]["timeout"]).removesuffix("s"))

    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
            time.sleep(0.1)

        checked = subprocess.run(
            probe, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 30
        )

        assert checked.returncode == 0, checked.stderr
        # The exemption is the health path's alone: any other path still checks the host and
        # redirects to https unless the proxy says the request came over https.
        health = _ask(port, "/healthz", Host="not-allowed.example")
        assert health.status == 200
        assert _ask(port, "/readyz", Host="not-allowed.example").status == 200
        assert _ask(port, "/api/studies/", Host=f"127.0.0.1:{port}").status == 400
        plain = _ask(port, "/api/studies/", Host="lovelace.example.org")
        assert (plain.status, plain.getheader("Location")) == (
            301,
            "https://lovelace.example.org/api/studies/",
        )
        proxied = _ask(port, "/api/studies/", Host="lovelace.example.org", **{"X-Forwarded-Proto": "https"})
        assert proxied.status == 401  # past the redirect: the one proxy's header is trusted
    finally:
        stop(server)  # type: ignore[arg-type]
