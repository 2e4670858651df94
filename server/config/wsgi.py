from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.config.settings")
# The web process skips the connection health check before each request: it is one more round
# trip on every request (6 % of a rating request's time on the load bench). After a database
# restart a web worker's first request fails once (the rating page retries it; votes are
# idempotent) and Django drops the broken connection at the end of that request. Celery workers
# keep the check: a task that failed on a dead connection would leave its job queued.
os.environ.setdefault("LOVELACE_DB_HEALTH_CHECKS", "false")
application = get_wsgi_application()
