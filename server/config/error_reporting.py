"""Optional error reporting to Sentry (or any server that speaks its protocol, e.g. GlitchTip).

Inert unless ``SENTRY_DSN`` is set: then uncaught errors of requests (Django) and of tasks
(Celery) are sent with their stack traces, without personal data (no cookies, user or client
address), tagged with the environment and the release.
"""

from __future__ import annotations


def error_reporting_start(*, dsn: str, environment: str, release: str, traces_sample_rate: float) -> bool:
    """Start the Sentry client when ``dsn`` is given; whether it was started."""
    if not dsn:
        return False
    import sentry_sdk  # only when configured: the web process stays light otherwise
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,  # raters are research participants: nothing that identifies them
        traces_sample_rate=traces_sample_rate,
    )
    return True
