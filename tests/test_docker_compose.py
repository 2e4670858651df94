"""docker-compose.yml describes the production topology, and docker compose accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_of_the_production_topology() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker-gpu", "worker-cpu", "beat"}
    assert "gunicorn" in services["web"]["command"]
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
