# syntax=docker/dockerfile:1.7
# Two images from one file; docker-compose.yml picks the target:
#   web     gunicorn, beat and migrations: Django and friends, no torch (requirements/web.lock)
#   worker  Celery workers with torch: the CPU build by default, CUDA with --build-arg VARIANT=cuda
# Dependencies install from the hash-locked files before any source is copied, through BuildKit's
# cache, so a code change rebuilds only the last, small layers. Both run as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app LOVELACE_VAR_DIR=/var/lib/lovelace LOVELACE_STATIC_ROOT=/app/static
# The var folder belongs to the app user: a new named volume mounted there takes this ownership.
RUN useradd --create-home --uid 10001 --user-group lovelace \
 && install -d -o lovelace -g lovelace /var/lib/lovelace
WORKDIR /app

FROM base AS web-dependencies
COPY requirements/web.lock requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps --require-hashes -r requirements/web.lock && pip check

FROM base AS worker-dependencies
# cpu: torch's CPU build from PyTorch's index (pinned by version; it is not on PyPI), the rest
# hash-locked; cuda: PyPI's CUDA build, hash-locked with its CUDA libraries.
ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
COPY requirements/worker-cpu.lock requirements/worker-cuda.lock requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    case "$VARIANT" in \
      cpu) pip install --no-deps "torch==${TORCH_VERSION}" --index-url "$TORCH_CPU_INDEX" \
           && pip install --no-deps --require-hashes -r requirements/worker-cpu.lock ;; \
      cuda) pip install --no-deps --require-hashes -r requirements/worker-cuda.lock ;; \
      *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 1 ;; \
    esac && pip check

# The source: root-owned and read-only to the app user, which writes only under /var/lib/lovelace.
FROM web-dependencies AS web
COPY manage.py ./
COPY evaluation evaluation
COPY workers workers
COPY server server
RUN DJANGO_DEBUG=false DJANGO_SECRET_KEY=build-only-build-only-build-only-build-only-build-only \
    DJANGO_ALLOWED_HOSTS=build python manage.py collectstatic --noinput
USER lovelace
EXPOSE 8000
# Inside its container gunicorn listens on all interfaces; compose publishes the port on the host's
# loopback only, for the TLS proxy there (docker-compose.yml).
CMD ["gunicorn", "server.config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", \
     "--access-logfile", "-"]

FROM worker-dependencies AS worker
COPY manage.py ./
COPY evaluation evaluation
COPY workers workers
COPY server server
USER lovelace
CMD ["celery", "-A", "workers.celery_app", "worker", "-Q", "cpu,default", "--loglevel", "INFO"]
