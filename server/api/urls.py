"""URL map of the REST API (mounted at ``/api/``)."""

from __future__ import annotations

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from server.api import apis
from server.core import converters  # noqa: F401  (registers <id:...>)

app_name = "api"

study = "studies/<slug:slug>/"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("studies/", apis.StudyListCreateApi.as_view(), name="studies"),
    path(study, apis.StudyDetailApi.as_view(), name="study"),
    path(f"{study}prompts/", apis.PromptListCreateApi.as_view(), name="prompts"),
    path(f"{study}versions/", apis.VersionListCreateApi.as_view(), name="versions"),
    path(f"{study}samples/", apis.SampleListApi.as_view(), name="samples"),
    path(f"{study}samples/import/", apis.SampleImportApi.as_view(), name="samples-import"),
    path(f"{study}gold/import/", apis.GoldImportApi.as_view(), name="gold-import"),
    # Rating, for programmatic raters
    path(f"{study}assignments/", apis.AssignmentListApi.as_view(), name="assignments"),
    path(f"{study}assignments/next/", apis.NextAssignmentApi.as_view(), name="assignment-next"),
    path(
        f"{study}guidelines/acknowledge/",
        apis.GuidelinesAcknowledgeApi.as_view(),
        name="guidelines-acknowledge",
    ),
    path(
        f"{study}assignments/<str:token>/judgment/",
        apis.JudgmentSubmitApi.as_view(),
        name="judgment-submit",
    ),
    path(
        f"{study}assignments/<str:token>/skip/",
        apis.AssignmentSkipApi.as_view(),
        name="assignment-skip",
    ),
    path(f"{study}judgments/undo/", apis.JudgmentUndoApi.as_view(), name="judgment-undo"),
    # Raters and results
    path(f"{study}raters/", apis.RaterListApi.as_view(), name="raters"),
    path(f"{study}raters/<id:rater_id>/pause/", apis.RaterPauseApi.as_view(), name="rater-pause"),
    path(f"{study}raters/<id:rater_id>/resume/", apis.RaterResumeApi.as_view(), name="rater-resume"),
    path(f"{study}leaderboard/", apis.LeaderboardApi.as_view(), name="leaderboard"),
    path(f"{study}agreement/", apis.AgreementApi.as_view(), name="agreement"),
    path(f"{study}evaluations/", apis.EvaluationListApi.as_view(), name="evaluations"),
    path(f"{study}evaluations/<id:evaluation_id>/", apis.EvaluationDetailApi.as_view(), name="evaluation"),
    path(f"{study}snapshots/", apis.SnapshotListCreateApi.as_view(), name="snapshots"),
    path(f"{study}reward-models/", apis.RewardModelListApi.as_view(), name="reward-models"),
    # Jobs
    path(f"{study}jobs/generate/", apis.GenerateStartApi.as_view(), name="start-generate"),
    path(f"{study}jobs/build-image-generator/", apis.ImageBuildStartApi.as_view(), name="start-image-build"),
    path(f"{study}jobs/select-pairs/", apis.PairSelectionStartApi.as_view(), name="start-select-pairs"),
    path(f"{study}jobs/train-reward-model/", apis.RewardModelStartApi.as_view(), name="start-reward-model"),
    path(f"{study}jobs/train-policy/", apis.PolicyStartApi.as_view(), name="start-policy"),
    path(f"{study}jobs/evaluate/", apis.EvaluationStartApi.as_view(), name="start-evaluation"),
    path(
        f"{study}jobs/recompute-leaderboard/",
        apis.LeaderboardRecomputeApi.as_view(),
        name="start-leaderboard",
    ),
    path(f"{study}exports/", apis.ExportStartApi.as_view(), name="start-export"),
    path(f"{study}judges/", apis.MachineJudgeListCreateApi.as_view(), name="machine-judges"),
    path(
        f"{study}judges/<id:judge_id>/run/", apis.MachineJudgingStartApi.as_view(), name="start-machine-judge"
    ),
    path("jobs/", apis.JobListApi.as_view(), name="jobs"),
    path("jobs/<id:job_id>/", apis.JobDetailApi.as_view(), name="job"),
    path("jobs/<id:job_id>/cancel/", apis.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<id:job_id>/resume/", apis.JobResumeApi.as_view(), name="job-resume"),
    path("exports/<id:job_id>/", apis.ExportDetailApi.as_view(), name="export"),
    path("exports/<id:job_id>/files/<str:name>", apis.ExportFileApi.as_view(), name="export-file"),
    # Last: whatever did not match (a malformed id or slug included) is a JSON 404.
    re_path(r"^(?P<unmatched>[\s\S]*)$", apis.not_found, name="not-found"),
]
