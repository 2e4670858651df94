"""URL map of the staff dashboard (mounted at ``/dashboard/``)."""

from __future__ import annotations

from django.urls import path

from server.core import converters  # noqa: F401  (registers <id:...>)
from server.dashboard import insight_views, views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("token/", views.api_token, name="token"),
    path("studies/<slug:slug>/", views.study_page, name="study"),
    path("studies/<slug:slug>/jobs.json", views.study_jobs_json, name="study-jobs"),
    path("studies/<slug:slug>/rationales/", insight_views.rationales, name="rationales"),
    path("studies/<slug:slug>/actions/<slug:action>/", views.study_action, name="action"),
    path("studies/<slug:slug>/import/", views.study_import, name="import"),
    path("studies/<slug:slug>/gold/", views.study_gold_import, name="gold-import"),
    path("studies/<slug:slug>/endpoint-versions/", views.study_endpoint_version, name="endpoint-version"),
    path("studies/<slug:slug>/raters/<id:rater_id>/pause/", views.rater_pause, name="rater-pause"),
    path("studies/<slug:slug>/raters/<id:rater_id>/resume/", views.rater_resume, name="rater-resume"),
    path("studies/<slug:slug>/raters/<id:rater_id>/release/", views.rater_release, name="rater-release"),
    path("jobs/<id:job_id>/cancel/", views.job_cancel_view, name="job-cancel"),
    path("jobs/<id:job_id>/resume/", views.job_resume_view, name="job-resume"),
    path("exports/<id:job_id>/files/<str:name>", views.export_download, name="export-file"),
]
