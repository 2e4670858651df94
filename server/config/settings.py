"""Lovelace settings, read from environment variables only.

The defaults give the embedded single-machine topology: SQLite under ``var/`` (WAL mode), Celery
on kombu's filesystem transport under ``var/broker`` (no server), models and checkpoints under
``var/``, debug on. Production sets ``DATABASE_URL`` (PostgreSQL) and ``CELERY_BROKER_URL``
(Redis); then debug is off unless ``DJANGO_DEBUG`` says otherwise, which makes
``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS`` mandatory.
Every variable is listed in ``.env.example`` and in the README.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from server.config.environment import Environment, ImproperlyConfigured
from server.config.error_reporting import error_reporting_start
from server.core.log_context import logging_config

BASE_DIR = Path(__file__).resolve().parents[2]
env = Environment()

VAR_DIR = Path(env.string("LOVELACE_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
DATABASES = {
    "default": env.database(
        "DATABASE_URL",
        sqlite_path=VAR_DIR / "lovelace.sqlite3",
        # On by default (workers, commands); the web process turns it off, see wsgi.py.
        health_checks=env.boolean("LOVELACE_DB_HEALTH_CHECKS", default=True),
    )
}
CELERY_BROKER_URL = env.broker("CELERY_BROKER_URL", default="filesystem://")

# Debug is the default only for the embedded topology (SQLite and the filesystem broker: one
# machine, nobody else reaching it). A server database or broker means a deployment, where a
# forgotten DJANGO_DEBUG must not leave debug pages, a known secret key and any Host open.
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
_FILESYSTEM_BROKER = urlsplit(CELERY_BROKER_URL).scheme.lower() == "filesystem"
EMBEDDED_TOPOLOGY = _SQLITE and _FILESYSTEM_BROKER
DEBUG = env.boolean("DJANGO_DEBUG", default=EMBEDDED_TOPOLOGY)


def _why_production_mode() -> str:
    """What start-up says after naming a missing variable: why production mode is on."""
    if env.string("DJANGO_DEBUG"):
        return "They are required because DJANGO_DEBUG is off (production mode)."
    topology = {"DATABASE_URL": _SQLITE, "CELERY_BROKER_URL": _FILESYSTEM_BROKER}
    servers = " and ".join(f"{name} names a server" for name, embedded in topology.items() if not embedded)
    return (
        f"They are required in production mode, which is on because {servers} and DJANGO_DEBUG is "
        "not set (it defaults to true only in the embedded topology: SQLite and the filesystem "
        "broker). On a development machine, set DJANGO_DEBUG=true."
    )


if DEBUG:
    # A fixed key is fine for the embedded demo: sessions never leave this machine.
    SECRET_KEY = env.string("DJANGO_SECRET_KEY", default="lovelace-embedded-insecure-development-key")
    ALLOWED_HOSTS = env.string_list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
else:
    SECRET_KEY = env.string("DJANGO_SECRET_KEY")
    ALLOWED_HOSTS = env.string_list("DJANGO_ALLOWED_HOSTS")
    _problems = []
    if not SECRET_KEY:
        _problems.append("DJANGO_SECRET_KEY must be set (50 or more random characters).")
    elif len(SECRET_KEY) < 50:
        _problems.append("DJANGO_SECRET_KEY must be at least 50 characters when DJANGO_DEBUG is off.")
    if not ALLOWED_HOSTS:
        _problems.append(
            "DJANGO_ALLOWED_HOSTS must be set (comma-separated host names, e.g. lovelace.example.org)."
        )
    if _problems:
        raise ImproperlyConfigured(" ".join([*_problems, _why_production_mode()]))

CSRF_TRUSTED_ORIGINS = env.string_list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "server.core",
    "server.jobs",
    "server.studies",
    "server.generators",
    "server.ratings",
    "server.training",
    "server.evaluations",
    "server.judges",
    "server.dashboard",
]

MIDDLEWARE = [
    # First: /healthz answers before anything checks the Host header or redirects to https, so a
    # health check on 127.0.0.1 over plain HTTP passes (see the middleware).
    "server.core.middleware.HealthCheckMiddleware",
    # An id per request (the client's X-Request-ID when it sends a sane one) in every log line
    # and in the answer's X-Request-ID.
    "server.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Outside sessions and CSRF: it edits the cookies they set (LOVELACE_ALLOW_MTURK_IFRAME).
    "server.core.middleware.RatingPageCookiesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "server.config.urls"
WSGI_APPLICATION = "server.config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "server" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Collected static files. Images collect them at build time outside the var volume, so that a new
# image serves its own files rather than the copy an older image left in the volume.
STATIC_ROOT = Path(env.string("LOVELACE_STATIC_ROOT", default=str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "server" / "static"]


def _image_storage() -> dict[str, object]:
    """Where image samples' bytes go: a folder under the var dir by default; in production any
    Django storage class with its options, e.g. django-storages' S3 backend (installed separately)
    with ``LOVELACE_IMAGE_STORAGE_OPTIONS={"bucket_name": "lovelace-images", ...}``."""
    backend = env.string(
        "LOVELACE_IMAGE_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"
    )
    raw = env.string("LOVELACE_IMAGE_STORAGE_OPTIONS")
    try:
        options = json.loads(raw) if raw else {}
    except ValueError:
        raise ImproperlyConfigured("LOVELACE_IMAGE_STORAGE_OPTIONS must be a JSON object.") from None
    if not isinstance(options, dict):
        raise ImproperlyConfigured("LOVELACE_IMAGE_STORAGE_OPTIONS must be a JSON object.")
    if backend == "django.core.files.storage.FileSystemStorage":
        # Served only through the rating views (never a public URL): no base_url.
        options.setdefault("location", str(VAR_DIR / "images"))
    return {"BACKEND": backend, "OPTIONS": options}


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "images": _image_storage(),
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# In debug, whitenoise serves straight from the app folders so no collectstatic is needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
# The cache holds rate-limit counters (crowd entry, REST API throttles). They must be shared by
# every web process: unset, it is a table in the database (embedded: no server to run); production
# points CACHE_URL at Redis, whose atomic INCR keeps the counts exact under concurrency.
CACHES = {"default": env.cache("CACHE_URL", production=not DEBUG)}

# Database sessions: an in-process session cache (cached_db) would save a query per request but
# let a logged-out session live on in other gunicorn workers' caches; it needs a shared cache first.
# Ours is Django's database backend with its per-request read in plain SQL (see the module).
SESSION_ENGINE = "server.core.sessions"

# Uploads: the import form refuses larger files with a message; Django refuses larger bodies.
LOVELACE_MAX_UPLOAD_BYTES = env.integer("LOVELACE_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = LOVELACE_MAX_UPLOAD_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Image samples (see server/generators/images.py): each image's limits, and an import archive's
# (a zip of images and a manifest; its entries are counted and sized before anything is unpacked).
LOVELACE_IMAGE_MAX_BYTES = env.integer("LOVELACE_IMAGE_MAX_BYTES", default=10 * 1024 * 1024, minimum=1)
LOVELACE_IMAGE_MIN_SIDE = env.integer("LOVELACE_IMAGE_MIN_SIDE", default=8, minimum=1)
LOVELACE_IMAGE_MAX_SIDE = env.integer("LOVELACE_IMAGE_MAX_SIDE", default=4096, minimum=1)
LOVELACE_IMAGE_MAX_PIXELS = env.integer("LOVELACE_IMAGE_MAX_PIXELS", default=4096 * 4096, minimum=1)
LOVELACE_IMAGE_ARCHIVE_MAX_BYTES = env.integer(
    "LOVELACE_IMAGE_ARCHIVE_MAX_BYTES", default=100 * 1024 * 1024, minimum=1
)
LOVELACE_IMAGE_ARCHIVE_MAX_UNCOMPRESSED = env.integer(
    "LOVELACE_IMAGE_ARCHIVE_MAX_UNCOMPRESSED", default=200 * 1024 * 1024, minimum=1
)
LOVELACE_IMAGE_ARCHIVE_MAX_ENTRIES = env.integer(
    "LOVELACE_IMAGE_ARCHIVE_MAX_ENTRIES", default=5000, minimum=1
)

# Jobs: a running job whose heartbeat is older than this is failed or re-queued by the reaper.
LOVELACE_JOB_HEARTBEAT_TIMEOUT = env.integer("LOVELACE_JOB_HEARTBEAT_TIMEOUT", default=300)  # seconds
# Seconds between reaper runs (beat); tests shorten it to watch beat drive the reaper.
LOVELACE_REAPER_INTERVAL = env.integer("LOVELACE_REAPER_INTERVAL", default=60, minimum=1)
LOVELACE_JOB_MAX_ATTEMPTS = env.integer("LOVELACE_JOB_MAX_ATTEMPTS", default=3)
# A queued job whose task message was sent this long ago is sent again by the reaper: a broker
# restart or a crash between commit and send must not leave it queued forever. The wait doubles
# with each resend (up to an hour), so a job waiting behind a long one collects few duplicates;
# the claim makes every duplicate a no-op.
LOVELACE_JOB_RESEND_AFTER = env.integer("LOVELACE_JOB_RESEND_AFTER", default=120, minimum=1)  # seconds
# Days a failed or cancelled training job keeps its checkpoints (for a resume) before the
# scheduler deletes them: a real model's optimizer state is gigabytes.
LOVELACE_CHECKPOINT_RETENTION_DAYS = env.integer("LOVELACE_CHECKPOINT_RETENTION_DAYS", default=7, minimum=0)

# Prometheus' scrape of ``GET /metrics``: a bearer token (unset = staff sessions only). A secret
# like the key: long enough that guessing it through the endpoint is hopeless.
LOVELACE_METRICS_TOKEN = env.string("LOVELACE_METRICS_TOKEN")
if LOVELACE_METRICS_TOKEN and len(LOVELACE_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured(
        f"LOVELACE_METRICS_TOKEN must be at least 32 characters, got {len(LOVELACE_METRICS_TOKEN)} "
        "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')."
    )

# Files and folders that jobs may read or write, when a path comes from staff (API, dashboard,
# ``manage.py job start``): the var folder always, the shipped corpus (data) and the shipped
# sentence-embedding model (models) always, plus these absolute folders (``:``-separated). See
# ``server/core/paths.py``.
LOVELACE_MODEL_ROOTS = env.path_list("LOVELACE_MODEL_ROOTS")
LOVELACE_DATA_ROOTS = env.path_list("LOVELACE_DATA_ROOTS")
# Hugging Face hub ids as model paths. Off by default: the product runs offline, and a hub id makes
# a worker download and run whatever the hub serves under that name.
LOVELACE_ALLOW_HUB = env.boolean("LOVELACE_ALLOW_HUB", default=False)

# --- Crowd entry limits ---------------------------------------------------------------------------
# A crowd link (Prolific, MTurk, the invite link) is public once shared, and the participant id in
# it is no secret: each limit caps what one client address, or everyone on one study's link
# together, can do in a fixed window. "Join" = a new crowd rater; "first pair" = a pair reserved
# for a crowd rater who has no vote yet (a rater holds one reservation at a time; it expires after
# the study's reservation time and can then be reserved again). A refused join answers 429; a
# refused first pair answers "no pairs right now" with a time to ask again. Votes are never limited.
# Per address: a lab or a campus behind one NAT address sends many people at once.
LOVELACE_CROWD_JOINS_PER_ADDRESS = env.rate("LOVELACE_CROWD_JOINS_PER_ADDRESS", default="30/hour")
LOVELACE_CROWD_FIRST_PAIRS_PER_ADDRESS = env.rate("LOVELACE_CROWD_FIRST_PAIRS_PER_ADDRESS", default="30/hour")
# Per link: sized for a busy Prolific launch; raise it for a larger study.
LOVELACE_CROWD_JOINS_PER_LINK = env.rate("LOVELACE_CROWD_JOINS_PER_LINK", default="600/hour")
LOVELACE_CROWD_FIRST_PAIRS_PER_LINK = env.rate("LOVELACE_CROWD_FIRST_PAIRS_PER_LINK", default="600/hour")

# --- REST API -----------------------------------------------------------------------------------
# Programs authenticate with a token (``manage.py api_token USERNAME`` or the dashboard), pages with
# the session. The token authenticator comes first so an anonymous request gets 401, not 403.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "server.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "server.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "server.api.exception_handler.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON bodies only, read as untrusted (depth, NUL, lone surrogates, NaN: see server/api/parsers.py);
    # the sample import also takes a multipart file upload (it says so itself).
    "DEFAULT_PARSER_CLASSES": ["server.api.parsers.JSONParser"],
    # Every API view names a scope; the rates are per user (per IP when anonymous). The counters live
    # in the shared cache (CACHES above).
    "DEFAULT_THROTTLE_CLASSES": ["server.api.throttling.ScopedThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "read": "600/minute",  # listing and polling
        "write": "120/minute",  # creating studies, prompts, versions; pausing raters
        "rating": "240/minute",  # programmatic raters: next pair, vote, undo, skip (a vote a quarter second)
        "import": "20/minute",  # sample imports: each may carry a 20 MB file
        "jobs": "30/minute",  # starting and cancelling jobs (GPU time is the scarce thing)
        "download": "30/minute",
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lovelace API",
    "DESCRIPTION": (
        "Studies, prompts, generator versions and samples; blind pairwise rating for programmatic "
        "raters; leaderboards, evaluations, jobs and exports. Authenticate with "
        '`Authorization: Token <key>`. Errors are `{"error": message, "details": {...}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "server.jobs.models.JobStatus",
        "JobKindEnum": "server.jobs.models.JobKind",
        "AssignmentStatusEnum": "server.ratings.models.AssignmentStatus",
        "RaterStatusEnum": "server.ratings.models.RaterStatus",
        "VersionKindEnum": "server.generators.models.VersionKind",
        "RegistrableVersionKindEnum": "server.api.schema.REGISTRABLE_VERSION_KINDS",
        "PromptSplitEnum": "server.studies.models.PromptSplit",
        "GenerateSplitEnum": "server.api.schema.GENERATE_SPLITS",
        "PairSelectionEnum": "server.studies.models.PairSelection",
        "ExportKindEnum": "server.api.schema.EXPORT_KIND_CHOICES",
    },
    # Row ids in paths (server/core/converters.py): 64-bit integers from 1.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1}
    },
    # The docs page loads Swagger UI from the app's own static files (vendored), never a CDN.
    "SWAGGER_UI_DIST": f"/{STATIC_URL}vendor/swagger-ui",
    "SWAGGER_UI_FAVICON_HREF": f"/{STATIC_URL}vendor/swagger-ui/favicon-32x32.png",
}

# --- Celery -------------------------------------------------------------------------------------
# CELERY_BROKER_URL is read at the top (it decides the topology).
CELERY_BROKER_FOLDER = VAR_DIR / "broker"
CELERY_TASK_ALWAYS_EAGER = False
CELERY_GPU_TIME_LIMIT = env.integer("LOVELACE_GPU_TIME_LIMIT", default=6 * 3600)  # seconds

# --- Proxies ---------------------------------------------------------------------------------------
# How many reverse proxies stand between the clients and gunicorn. X-Forwarded-Proto is trusted
# (https behind a TLS proxy) and the client address taken from X-Forwarded-For (the API's
# per-address rate limits) only when it is above 0; each proxy must set X-Forwarded-Proto itself
# and append to X-Forwarded-For. 0 in debug: the embedded setup has no proxy, and a header any
# client can send is then trusted from no one. 1 in production: the documented deployment is one
# TLS-terminating proxy in front of gunicorn, whose port docker-compose.yml publishes on the
# host's loopback only, so that proxy is the only client able to set those headers.
LOVELACE_TRUSTED_PROXY_COUNT = env.integer("LOVELACE_TRUSTED_PROXY_COUNT", default=0 if DEBUG else 1)
if LOVELACE_TRUSTED_PROXY_COUNT > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Django REST framework: 0 = the connection's address; N = the N-th address from the right.
REST_FRAMEWORK["NUM_PROXIES"] = LOVELACE_TRUSTED_PROXY_COUNT

# --- Security in production mode ------------------------------------------------------------------
# MTurk shows the rating page inside an iframe on its own site, where the browser sends the
# session and CSRF cookies only if they are SameSite=None (which requires Secure: production
# only). RatingPageCookiesMiddleware gives that attribute to the cookies that rating pages set for
# participants without an account; every other cookie (staff, dashboard, admin) stays Lax, so no
# other page is reachable with its cookies from another site. CSRF tokens still protect every vote.
LOVELACE_ALLOW_MTURK_IFRAME = env.boolean("LOVELACE_ALLOW_MTURK_IFRAME", default=False) and not DEBUG
if not DEBUG:
    SECURE_SSL_REDIRECT = env.boolean("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.integer("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"

# Every line carries time, level, logger and the request or job it belongs to; JSON lines for a
# log collector with LOVELACE_LOG_JSON (server/core/log_context.py).
LOGGING = logging_config(
    level=env.string("LOVELACE_LOG_LEVEL", default="INFO"),
    json_lines=env.boolean("LOVELACE_LOG_JSON", default=False),
)

# Optional error reporting (server/config/error_reporting.py): inert when SENTRY_DSN is unset.
SENTRY_DSN = env.string("SENTRY_DSN", default="")
SENTRY_ENABLED = error_reporting_start(
    dsn=SENTRY_DSN,
    environment=env.string("SENTRY_ENVIRONMENT", default="development" if DEBUG else "production"),
    release=env.string("SENTRY_RELEASE", default="lovelace@0.1.0"),
    traces_sample_rate=env.fraction("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
)
