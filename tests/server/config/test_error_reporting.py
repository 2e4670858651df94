"""Error reporting: inert without SENTRY_DSN; with it, errors reach the server the DSN names."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import json, logging, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.config.settings")
import django
django.setup()
from django.conf import settings
report = {"enabled": settings.SENTRY_ENABLED, "imported": "sentry_sdk" in sys.modules}
if settings.SENTRY_ENABLED:
    import sentry_sdk
    report["integrations"] = sorted(sentry_sdk.get_client().integrations)
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("server.probe").exception("a job failed: /boom/")
    sentry_sdk.flush(timeout=10)
print(json.dumps(report))
"""


def probe(**env: str) -> dict[str, object]:
    from tests.integration.worker_process import environment

    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment(DJANGO_DEBUG="true", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_a_dsn_nothing_is_started_or_imported() -> None:
    assert probe(SENTRY_DSN="") == {"enabled": False, "imported": False}


def test_with_a_dsn_errors_reach_the_server_it_names_with_django_and_celery_hooked() -> None:
    # A logged error is sent (the logging integration); request and task exceptions go through
    # the Django and Celery integrations, which the report shows installed.
    received: list[tuple[str, bytes]] = []

    class Sentry(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append((self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Sentry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        report = probe(SENTRY_DSN=f"http://publickey@127.0.0.1:{server.server_address[1]}/42")
    finally:
        server.shutdown()

    assert report["enabled"] is True
    assert {"django", "celery"} <= set(report["integrations"])  # type: ignore[arg-type]
    events = [body for path, body in received if path == "/api/42/envelope/"]
    assert len(events) == 1
    envelope = events[0].decode()
    assert "ZeroDivisionError" in envelope and "a job failed: /boom/" in envelope
    assert '"environment":"development"' in envelope.replace(" ", "")
