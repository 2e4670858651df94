# One image for web, workers and beat; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LOVELACE_VAR_DIR=/var/lib/lovelace
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server server
COPY workers workers
COPY evaluation evaluation
COPY manage.py ./
# CPU builds by default; a GPU image installs the CUDA wheel of the same torch version instead.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch==2.13.0 --index-url ${TORCH_INDEX} \
 && pip install --no-cache-dir ".[ml]"
RUN DJANGO_DEBUG=false DJANGO_SECRET_KEY=build-only-build-only-build-only-build-only-build-only \
    DJANGO_ALLOWED_HOSTS=build python manage.py collectstatic --noinput
EXPOSE 8000
