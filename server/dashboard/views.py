"""The staff dashboard: pages that read through selectors, and POST actions that call one service
each and redirect back (a refusal re-renders the page with the message next to its form)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from server.api.services import api_token_issue
from server.core import prometheus
from server.core.exceptions import ApplicationError, NotFound
from server.dashboard import forms, selectors
from server.dashboard.insights import study_insights
from server.dashboard.metrics import metrics_collect
from server.evaluations.services import evaluation_start, leaderboard_recompute_start
from server.generators.services import (
    generate_start,
    generator_version_register,
    image_generator_build_for_study,
    samples_import_file,
)
from server.jobs.services import job_cancel
from server.judges.selectors import machine_judges_overview
from server.judges.services import machine_judge_start
from server.ratings import services as rating_services
from server.ratings.gold_import import gold_pairs_import_file
from server.ratings.pair_selection import pair_selection_start
from server.studies.models import Modality, Study
from server.training.exports import export_file_path, export_start
from server.training.services import (
    policy_train_start,
    reward_model_train_start,
    snapshot_start,
    training_job_resume,
)


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous visitors go to the login page; signed-in non-staff get 403."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("The dashboard is for staff.")
        try:
            return view(request, *args, **kwargs)
        except NotFound as error:
            raise Http404(error.message) from None

    return wrapper


IMAGE_HASHES_SHOWN = 50  # an image import's SHA-256 listed in the success message (64 characters each)


@dataclass(frozen=True)
class Action:
    slug: str
    title: str
    description: str
    form: type[forms.StudyForm]
    service: Callable[..., Any]
    button: str
    # Shows the study's training-data warning (too few pairs) next to the button, before a start.
    warns_of_few_pairs: bool = False
    # The form of an image study, where its settings differ from a text study's (None: the same).
    image_form: type[forms.StudyForm] | None = None
    # The only modality it applies to (None: both); the page shows it for those studies only.
    modality: str | None = None

    def applies_to(self, study: Study) -> bool:
        return self.modality is None or self.modality == study.modality

    def form_for(self, study: Study) -> type[forms.StudyForm]:
        return self.image_form if self.image_form and study.modality == Modality.IMAGE else self.form


ACTIONS = {
    action.slug: action
    for action in [
        Action(
            "generate",
            "Generate samples",
            "k samples per prompt per model version (GPU queue).",
            forms.GenerateForm,
            generate_start,
            "Start generation",
        ),
        Action(
            "build-image-generator",
            "Build an image generator",
            "A class-conditional VAE or DCGAN trained on the procedural shapes (CPU queue); the new "
            "version is enrolled in the study when it is built.",
            forms.ImageBuildForm,
            image_generator_build_for_study,
            "Start the build",
            modality=Modality.IMAGE,
        ),
        Action(
            "select-pairs",
            "Select pairs",
            "New comparisons from the samples, with gold checks at the study's rate.",
            forms.PairSelectionForm,
            pair_selection_start,
            "Select pairs",
        ),
        Action(
            "snapshot",
            "Take a snapshot",
            "Freeze the trusted judgments that prefer a side into a preference snapshot (split by "
            "prompt into training and validation): what a reward model or DPO trains on.",
            forms.SnapshotForm,
            snapshot_start,
            "Take a snapshot",
        ),
        Action(
            "train-reward-model",
            "Train a reward model",
            "An ensemble on a preference snapshot; accuracy is reported against the human ceiling.",
            forms.RewardModelForm,
            reward_model_train_start,
            "Start training",
            warns_of_few_pairs=True,
            image_form=forms.ImageRewardModelForm,
        ),
        Action(
            "train-policy",
            "Train a policy",
            "A child version of a model: DPO on a snapshot, or RLOO / GRPO against a reward model; "
            "saved as a LoRA adapter on its parent unless you merge it.",
            forms.PolicyForm,
            policy_train_start,
            "Start training",
            warns_of_few_pairs=True,
            image_form=forms.ImagePolicyForm,
        ),
        Action(
            "evaluate",
            "Evaluate a version",
            "Novelty, diversity, surprise and value on the holdout prompts.",
            forms.EvaluationForm,
            evaluation_start,
            "Start evaluation",
        ),
        Action(
            "recompute-leaderboard",
            "Recompute the leaderboard",
            "Bradley–Terry ratings with bootstrap intervals from the current judgments.",
            forms.LeaderboardForm,
            leaderboard_recompute_start,
            "Recompute",
        ),
        Action(
            "machine-judge",
            "Judge with a machine",
            "A reward model or an endpoint model judges the pairs; its verdicts are kept apart from "
            "people's and shown with its agreement under Machine judges.",
            forms.MachineJudgeForm,
            machine_judge_start,
            "Start judging",
        ),
        Action(
            "export",
            "Export",
            "Files appear under Exports when the job has finished.",
            forms.ExportForm,
            export_start,
            "Start export",
        ),
    ]
}


def _study_url(study: Study, anchor: str = "") -> str:
    return reverse("dashboard:study", kwargs={"slug": study.slug}) + (f"#{anchor}" if anchor else "")


def _redirect(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303  # after a POST, the browser GETs the page
    return response


def _human_ranks(leaderboard: dict[str, Any] | None) -> dict[int, int]:
    """Version id → rank on the latest human leaderboard (the one the page shows), beside each
    machine judge's."""
    return {row["version_id"]: row["rank"] for row in leaderboard["rows"]} if leaderboard else {}


def _render_study(
    request: HttpRequest,
    study: Study,
    *,
    bound: dict[str, forms.StudyForm] | None = None,
    import_form: forms.ImportForm | None = None,
    import_errors: list[dict[str, Any]] | None = None,
    gold_form: forms.GoldImportForm | None = None,
    gold_errors: list[dict[str, Any]] | None = None,
    endpoint_form: forms.EndpointVersionForm | None = None,
    status: int = 200,
) -> HttpResponse:
    bound = bound or {}
    data = selectors.study_dashboard(
        study=study,
        raters_page=_page_number(request.GET.get("raters_page")),
        criterion=request.GET.get("criterion"),
    )
    actions = [
        {
            "action": action,
            "form": bound.get(slug) or action.form_for(study)(study=study),
            "open": slug in bound,
        }
        for slug, action in ACTIONS.items()
        if action.applies_to(study)
    ]
    context = {
        "data": data,
        "actions": actions,
        "import_form": import_form or forms.ImportForm(),
        "import_errors": import_errors or [],
        "gold_form": gold_form or forms.GoldImportForm(),
        "gold_errors": gold_errors or [],
        "endpoint_form": endpoint_form or forms.EndpointVersionForm(),
        "machine_judges": machine_judges_overview(study=study),
        "human_ranks": _human_ranks(data.leaderboard),
        "insights": study_insights(
            study=study, criterion=next(c for c in data.criteria if c.key == data.criterion)
        ),
    }
    return render(request, "dashboard/study.html", context, status=status)


def _page_number(value: str | None) -> int:
    """A page number from the query; anything else is page 1 (the selector clamps it to the last)."""
    return int(value) if value and value.isdigit() and len(value) < 7 else 1


@require_GET
@staff_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/home.html", {"studies": selectors.study_summaries()})


@require_GET
@staff_required
def study_page(request: HttpRequest, slug: str) -> HttpResponse:
    return _render_study(request, selectors.study_get(slug=slug))


@require_GET
@staff_required
def study_jobs_json(request: HttpRequest, slug: str) -> JsonResponse:
    """Polled by the page every few seconds: the recent jobs with progress and metric curves."""
    return JsonResponse({"jobs": selectors.study_jobs(study=selectors.study_get(slug=slug))})


@require_POST
@staff_required
def study_action(request: HttpRequest, slug: str, action: str) -> HttpResponse:
    spec = ACTIONS.get(action)
    if spec is None:
        raise Http404("No such action.")
    study = selectors.study_get(slug=slug)
    if not spec.applies_to(study):
        messages.error(
            request,
            f"{spec.title}: this is a {study.modality} study; the action is for {spec.modality} "
            "studies only.",
        )
        return _render_study(request, study, status=400)
    form = spec.form_for(study)(request.POST, study=study)
    if form.is_valid():
        try:
            with transaction.atomic():
                job = spec.service(study=study, created_by_id=request.user.id, **form.arguments())
        except ApplicationError as error:
            # Next to the field the service names (an option of a training form, a snapshot...).
            form.add_error(form.field_of_error(error.extra.get("field")), error.message)
        else:
            messages.success(request, f"{spec.title}: job #{job.id} is queued.")
            for warning in (job.params or {}).get("warnings", []):
                messages.warning(request, f"{spec.title}, job #{job.id}: {warning}")
            return _redirect(_study_url(study, "jobs"))
    return _render_study(request, study, bound={action: form}, status=400)


@require_POST
@staff_required
def study_import(request: HttpRequest, slug: str) -> HttpResponse:
    study = selectors.study_get(slug=slug)
    form = forms.ImportForm(request.POST, request.FILES)
    errors: list[dict[str, Any]] = []
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            result = samples_import_file(
                study_slug=study.slug,
                data=upload.read(),
                filename=upload.name or "upload",
                declared_format=form.cleaned_data["format"] or None,
            )
        except ApplicationError as error:
            form.add_error(None, error.message)
            errors = list(error.extra.get("errors", []))
        else:
            skipped = (
                f"; duplicates skipped on lines {', '.join(map(str, result.duplicates[:20]))}"
                if result.duplicates
                else ""
            )
            # An image import's hashes are what a gold pair names its images by (``gold_import``).
            shown = result.images[:IMAGE_HASHES_SHOWN]
            hashes = (
                "; SHA-256 by manifest line (for gold checks): "
                + ", ".join(f"{entry['line']}: {entry['sha256']}" for entry in shown)
                + (
                    f" (first {len(shown)} of {len(result.images)}; the API's import lists all)"
                    if len(result.images) > len(shown)
                    else ""
                )
                if shown
                else ""
            )
            messages.success(
                request,
                f"Imported {result.created} samples and {result.prompts_created} new prompts "
                f"({', '.join(result.versions)}){skipped}{hashes}.",
            )
            return _redirect(_study_url(study, "import"))
    return _render_study(request, study, import_form=form, import_errors=errors, status=400)


@require_POST
@staff_required
def study_endpoint_version(request: HttpRequest, slug: str) -> HttpResponse:
    study = selectors.study_get(slug=slug)
    form = forms.EndpointVersionForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                version = generator_version_register(study=study, **form.arguments())
        except ApplicationError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, f"{version} is registered and enrolled; generate its samples below.")
            return _redirect(_study_url(study, "actions"))
    return _render_study(request, study, endpoint_form=form, status=400)


@require_POST
@staff_required
def study_gold_import(request: HttpRequest, slug: str) -> HttpResponse:
    study = selectors.study_get(slug=slug)
    form = forms.GoldImportForm(request.POST, request.FILES)
    errors: list[dict[str, Any]] = []
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            result = gold_pairs_import_file(
                study=study,
                data=upload.read(),
                filename=upload.name or "upload",
                declared_format=form.cleaned_data["format"] or None,
            )
        except ApplicationError as error:
            form.add_error(None, error.message)
            errors = list(error.extra.get("errors", []))
        else:
            skipped = (
                f"; already there, skipped: lines {', '.join(map(str, result.duplicates[:20]))}"
                if result.duplicates
                else ""
            )
            messages.success(
                request,
                f"Added {result.created} gold checks and {result.prompts_created} new prompts{skipped}.",
            )
            return _redirect(_study_url(study, "gold"))
    return _render_study(request, study, gold_form=form, gold_errors=errors, status=400)


@require_POST
@staff_required
def rater_pause(request: HttpRequest, slug: str, rater_id: int) -> HttpResponse:
    study = selectors.study_get(slug=slug)
    form = forms.PauseForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    if rating_services.rater_pause(rater_id=_rater_of(study, rater_id), reason=reason or "Paused by staff."):
        messages.success(request, "The rater is paused; its judgments are flagged and left out.")
    else:
        messages.warning(request, "The rater was not active, so nothing changed.")
    return _redirect(_study_url(study, "raters"))


@require_POST
@staff_required
def rater_resume(request: HttpRequest, slug: str, rater_id: int) -> HttpResponse:
    study = selectors.study_get(slug=slug)
    try:
        rating_services.rater_resume(rater_id=_rater_of(study, rater_id))
    except ApplicationError as error:
        messages.warning(request, error.message)
    else:
        messages.success(request, "The rater is active again; its judgments count again.")
    return _redirect(_study_url(study, "raters"))


@require_POST
@staff_required
def rater_release(request: HttpRequest, slug: str, rater_id: int) -> HttpResponse:
    study = selectors.study_get(slug=slug)
    try:
        rating_services.rater_release(rater_id=_rater_of(study, rater_id))
    except ApplicationError as error:
        messages.warning(request, error.message)
    else:
        messages.success(
            request, "Released: the next browser that opens this participant's link continues as it."
        )
    return _redirect(_study_url(study, "raters"))


def _rater_of(study: Study, rater_id: int) -> int:
    if not study.raters.filter(id=rater_id).exists():
        raise Http404("The study has no such rater.")
    return rater_id


@require_POST
@staff_required
def job_cancel_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_get(job_id=job_id)
    try:
        job_cancel(job_id=job.id)
    except ApplicationError as error:
        messages.warning(request, error.message)
    else:
        messages.success(request, f"Job #{job.id}: cancel requested.")
    return _redirect(_study_url(job.study, "jobs") if job.study else reverse("dashboard:home"))


@require_POST
@staff_required
def job_resume_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_get(job_id=job_id)
    try:
        resumed = training_job_resume(job_id=job.id, created_by_id=request.user.id)
    except ApplicationError as error:
        messages.warning(request, error.message)
    else:
        messages.success(request, f"Job #{job.id}: resumed from its newest checkpoint as job #{resumed.id}.")
    return _redirect(_study_url(job.study, "jobs") if job.study else reverse("dashboard:home"))


@require_GET
@staff_required
def export_download(request: HttpRequest, job_id: int, name: str) -> FileResponse:
    try:
        path = export_file_path(job=selectors.export_job_get(job_id=job_id), name=name)
    except ApplicationError as error:
        raise Http404(error.message) from None
    return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)


@require_http_methods(["GET", "POST"])
@staff_required
def api_token(request: HttpRequest) -> HttpResponse:
    """Staff create (or rotate) their own API token for programs."""
    token = None
    if request.method == "POST":
        token = api_token_issue(user=request.user, rotate=request.POST.get("rotate") == "1")
    has_token = token is not None or selectors.user_has_token(user=request.user)
    return render(request, "dashboard/token.html", {"token": token, "has_token": has_token})


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape: a staff session, or ``Authorization: Bearer <LOVELACE_METRICS_TOKEN>``.

    A request that offers a token is judged by the token alone (a wrong one is refused even with a
    staff session beside it, so a scraper's misconfiguration shows); anonymous → 401, signed-in
    non-staff → 403. Refusals carry no data."""
    refusal = _metrics_refusal(request)
    if refusal is not None:
        return refusal
    from workers.celery_app import app  # light: no ML imports

    with app.connection_for_read() as broker:
        families = metrics_collect(broker=broker)
    return HttpResponse(prometheus.render(families), content_type=prometheus.CONTENT_TYPE)


def _metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        expected = settings.LOVELACE_METRICS_TOKEN
        # Compared as bytes: compare_digest refuses non-ASCII strings, and a header may hold them.
        if expected and hmac.compare_digest(offered.strip().encode(), expected.encode()):
            return None
        return _unauthorized("The metrics token is wrong, or no LOVELACE_METRICS_TOKEN is set.")
    if not request.user.is_authenticated:
        return _unauthorized("Metrics need a staff session or a bearer token.")
    if not (request.user.is_active and request.user.is_staff):
        return HttpResponseForbidden("Metrics are for staff.", content_type="text/plain; charset=utf-8")
    return None


def _unauthorized(message: str) -> HttpResponse:
    response = HttpResponse(message, status=401, content_type="text/plain; charset=utf-8")
    response["WWW-Authenticate"] = 'Bearer realm="lovelace-metrics"'
    return response
