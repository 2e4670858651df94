"""The rating interface: pages for people, small JSON endpoints for the page's script.

Blindness: nothing sent to the browser before the vote names a generator, a version or a sample.
A pair is addressed by its assignment's token (128 random bits: nothing in it counts pairs or can
be guessed; a token of another rater's pair is refused), and the payload holds only texts, each
stripped of surrounding whitespace so that no side differs from another by its margins.

Identity: the session maps a study's slug to the rater id. Crowd participants (invite links,
Prolific, MTurk) have nothing but that session; account holders have a session that is also a
login, and the API checks that the login still matches the rater. A crowd rater is bound to the
browser session that created it: the session keeps the rater's binding secret, and a session
without it does not act as the rater, whatever participant id its link names. Every crowd entry
gets a new session key.

Floods: crowd joins and the first pair of a rater with no vote are limited per client address
and per study link (``services``); the page load reserves nothing, and a crowd rater's first pair
waits for the person to press Start.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from server.core.exceptions import ApplicationError
from server.core.http import client_address
from server.core.untrusted_json import UntrustedJSONError, json_loads_untrusted
from server.generators.images import image_storage
from server.ratings import onboarding, selectors, services, sql
from server.ratings.forms import SkipForm, UndoForm, VoteInput
from server.ratings.models import Assignment, Platform, Rater, RaterStatus
from server.studies.models import Study
from server.studies.selectors import study_criteria

logger = logging.getLogger(__name__)

SESSION_RATERS = "ratings.raters"  # {study slug: rater id}
SESSION_BINDINGS = "ratings.bindings"  # {rater id as text: that rater's session_binding}
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
MTURK_FRAME_ANCESTORS = "frame-ancestors https://www.mturk.com https://workersandbox.mturk.com"


# --- Session identity -----------------------------------------------------------------------------


def _remember_rater(request: HttpRequest, rater: Rater, binding: str = "") -> None:
    raters = dict(request.session.get(SESSION_RATERS, {}))
    if raters.get(rater.study.slug) != rater.id:
        raters[rater.study.slug] = rater.id
        request.session[SESSION_RATERS] = raters
    if binding:
        bindings = dict(request.session.get(SESSION_BINDINGS, {}))
        if bindings.get(str(rater.id)) != binding:
            bindings[str(rater.id)] = binding
            request.session[SESSION_BINDINGS] = bindings


def _session_rater(request: HttpRequest, slug: str, *, for_api: bool = False) -> Rater | None:
    rater_id = request.session.get(SESSION_RATERS, {}).get(slug)
    if rater_id is None:
        return None
    if for_api:  # only the columns the endpoints use, in one cheap query
        rater = sql.rater_with_study(rater_id=rater_id, study_slug=slug)
    else:
        rater = selectors.rater_get(rater_id=rater_id, study_slug=slug)
    if rater is None:
        return None
    if rater.user_id is not None and rater.user_id != request.user.id:
        return None  # the login changed under this session
    if rater.session_binding:
        held = request.session.get(SESSION_BINDINGS, {}).get(str(rater.id), "")
        if not secrets.compare_digest(held.encode(), rater.session_binding.encode()):
            return None  # staff released the participant and another browser owns it now
    return rater


def _enter(request: HttpRequest, entry: services.CrowdEntry) -> Rater:
    # A new session key at every crowd entry: a key planted in the browser beforehand (session
    # fixation) or read before the entry is worth nothing afterwards.
    request.session.cycle_key()
    _remember_rater(request, entry.rater, entry.binding)
    return entry.rater


def _frameable_for_mturk(response: HttpResponse) -> HttpResponse:
    # MTurk shows an external task inside an iframe on its own site.
    response.xframe_options_exempt = True  # type: ignore[attr-defined]
    response["Content-Security-Policy"] = MTURK_FRAME_ANCESTORS
    return response


# --- Pages ------------------------------------------------------------------------------------------


ERROR_TITLES = {
    409: "Already taking part in another browser",
    429: "Too many people at once",
}


def _message_page(
    request: HttpRequest, study: Study | None, title: str, message: str, status: int
) -> HttpResponse:
    return render(
        request, "ratings/message.html", {"study": study, "title": title, "message": message}, status=status
    )


def _error_page(
    request: HttpRequest, study: Study | None, title: str, error: ApplicationError
) -> HttpResponse:
    response = _message_page(
        request, study, ERROR_TITLES.get(error.status, title), error.message, error.status
    )
    if "retry_after" in error.extra:
        response["Retry-After"] = str(error.extra["retry_after"])
    return response


def _check_crowd_link(study: Study, token: str) -> None:
    """Crowd platforms open the study URL with the participant's id in the query; that id is no
    secret, so the URL given to the platform carries the study's invite token as ``t`` too:
    ``/rate/<slug>/?t=<invite token>&PROLIFIC_PID={{%PROLIFIC_PID%}}&…``. Rotating the invite
    token closes the study to old links."""
    if not secrets.compare_digest(token.encode(), study.invite_token.encode()):
        raise ApplicationError(
            "This study link is not valid: ask the study's staff for the current link.", status=404
        )


def _crowd_entry(request: HttpRequest, study: Study) -> services.CrowdEntry | None:
    """The crowd participant a link with platform parameters names, bound to this session."""
    query = request.GET
    if not (query.get("PROLIFIC_PID") or query.get("workerId")):
        return None
    _check_crowd_link(study, query.get("t", ""))
    if query.get("PROLIFIC_PID"):
        platform, external_id = Platform.PROLIFIC, query["PROLIFIC_PID"]
        session_info = {"study_id": query.get("STUDY_ID", ""), "session_id": query.get("SESSION_ID", "")}
    elif query.get("assignmentId"):
        platform, external_id = Platform.MTURK, query["workerId"]
        session_info = {
            "assignment_id": query["assignmentId"],
            "hit_id": query.get("hitId", ""),
            "turk_submit_to": query.get("turkSubmitTo", ""),
        }
    else:
        return None
    return services.rater_join_platform(
        study=study,
        platform=platform,
        external_id=external_id,
        session_info=session_info,
        held_bindings=request.session.get(SESSION_BINDINGS, {}),
        client_address=client_address(request),
    )


def _rater_from_entry(request: HttpRequest, study: Study) -> Rater | None:
    """The rater a page request arrives as: crowd-platform parameters first, then the session,
    then the login."""
    entry = _crowd_entry(request, study)
    if entry is not None:
        return _enter(request, entry)
    rater = _session_rater(request, study.slug)
    if rater is None and request.user.is_authenticated:
        rater = services.rater_for_account(study=study, user=request.user)
    return rater


@require_GET
def rate_page(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        study = selectors.study_get_by_slug(slug=slug)
    except ApplicationError as error:
        return _message_page(request, None, "Study not found", error.message, error.status)
    if request.GET.get("assignmentId") == MTURK_PREVIEW:
        # MTurk's preview before a worker accepts the HIT: show what the task is, record nothing.
        try:
            _check_crowd_link(study, request.GET.get("t", ""))
        except ApplicationError as error:
            return _message_page(request, study, "You cannot rate in this study", error.message, error.status)
        return _frameable_for_mturk(render(request, "ratings/preview.html", {"study": study}))
    try:
        rater = _rater_from_entry(request, study)
    except ApplicationError as error:
        return _error_page(request, study, "You cannot rate in this study", error)
    if rater is None:
        return redirect_to_login(request.get_full_path())
    _remember_rater(request, rater)
    if rater.status == RaterStatus.FINISHED:
        return HttpResponseRedirect(reverse("ratings:done", args=[study.slug]))
    criteria = study_criteria(study=study)
    config = {
        "nextUrl": reverse("ratings:api-next", args=[slug]),
        "voteUrl": reverse("ratings:api-vote", args=[slug]),
        "undoUrl": reverse("ratings:api-undo", args=[slug]),
        "skipUrl": reverse("ratings:api-skip", args=[slug]),
        "acknowledgeUrl": reverse("ratings:api-acknowledge", args=[slug]),
        "doneUrl": reverse("ratings:done", args=[slug]),
        "csrfToken": get_token(request),
        "undoSeconds": services.UNDO_WINDOW_SECONDS,
        "showProgress": study.show_progress,
        # The questions a vote answers, in order (one unless the study has further criteria), each
        # with the words of its four answer buttons.
        "questions": [{"key": c.key, "question": c.question, "labels": c.choice_labels} for c in criteria],
    }
    response = render(
        request,
        "ratings/rate.html",
        {
            "study": study,
            "rater": rater,
            "config": config,
            "closed": not study.is_active,
            "criteria": criteria if len(criteria) > 1 else [],
            "labels": criteria[0].choice_labels,  # the first question's, until the script moves on
        },
    )
    return _frameable_for_mturk(response) if rater.platform == Platform.MTURK else response


@require_GET
def join(request: HttpRequest, slug: str, invite_token: str) -> HttpResponse:
    """The study's invite link: a session-only participant, no account needed."""
    try:
        study = selectors.study_get_by_slug(slug=slug)
        rater = _session_rater(request, slug)
        if rater is None:
            _enter(
                request,
                services.rater_join_invite(
                    study=study, invite_token=invite_token, client_address=client_address(request)
                ),
            )
        else:
            request.session.cycle_key()
    except ApplicationError as error:
        return _error_page(request, None, "This link does not work", error)
    return HttpResponseRedirect(reverse("ratings:page", args=[slug]))


@require_GET
def done(request: HttpRequest, slug: str) -> HttpResponse:
    """The completion page of a participant whose quota is done: its code, and where to go with it."""
    rater = _session_rater(request, slug)
    if rater is None or rater.status != RaterStatus.FINISHED:
        return HttpResponseRedirect(reverse("ratings:page", args=[slug]))
    completion = selectors.completion_for_rater(rater=rater)
    response = render(request, "ratings/done.html", {"study": rater.study, "completion": completion})
    return _frameable_for_mturk(response) if rater.platform == Platform.MTURK else response


# --- JSON endpoints -------------------------------------------------------------------------------


def _json_body(request: HttpRequest) -> Any:
    """The request's JSON, refused whole when it is not JSON or holds what cannot be stored
    (see ``json_loads_untrusted``); a bad value is a field error of the top-level field it is in."""
    try:
        return json_loads_untrusted((request.body or b"{}").decode("utf-8"))
    except UnicodeDecodeError:
        raise ApplicationError("The request body is not JSON: it is not UTF-8 text.") from None
    except UntrustedJSONError as error:
        field = error.path.split(".")[0].split("[")[0]
        if not field:
            raise ApplicationError(f"The request body {error.message}.") from None
        raise ApplicationError(
            "Some fields are not valid.", extra={"fields": {field: f"This value {error.message}."}}
        ) from None


def json_endpoint(view: Callable[..., dict[str, Any]]) -> Callable[..., JsonResponse]:
    """POST only (CSRF-checked by the middleware), a JSON body, the session's rater; maps
    ApplicationError to a JSON error with its status and message."""

    @require_POST
    @functools.wraps(view)
    def wrapper(request: HttpRequest, slug: str) -> JsonResponse:
        try:
            rater = _session_rater(request, slug, for_api=True)
            if rater is None:
                raise ApplicationError(
                    "Your rating session has ended. Reload the page to continue.", status=401
                )
            payload = _json_body(request)
            if not isinstance(payload, dict):
                raise ApplicationError("The request body must be a JSON object.")
            return JsonResponse(view(request, rater, payload))
        except ApplicationError as error:
            return JsonResponse({"error": error.message, **error.extra}, status=error.status)

    return wrapper


def _form(form_class: type, payload: dict[str, Any]):  # type: ignore[no-untyped-def]
    form = form_class(data=payload)
    if not form.is_valid():
        fields = {name: " ".join(messages) for name, messages in form.errors.items()}
        raise ApplicationError("Some fields are not valid.", extra={"fields": fields})
    return form


def _progress(rater: Rater, judged: int, quota: int | None) -> dict[str, Any] | None:
    return {"judged": judged, "quota": quota} if rater.study.show_progress else None


def _pair(
    assignment: Assignment, slug: str, qualification: onboarding.QualificationProgress | None = None
) -> dict[str, Any]:
    pair: dict[str, Any] = {"token": assignment.token, **selectors.assignment_texts(assignment=assignment)}
    images = selectors.assignment_images(assignment=assignment)
    if images != (None, None):
        # Addressed by content hash only: the URL names neither the sample nor its source.
        pair["images"] = {
            side: None
            if image is None
            else {
                "url": reverse("ratings:image", args=[slug, image.sha256]),
                "width": image.width,
                "height": image.height,
            }
            for side, image in zip(("left", "right"), images, strict=True)
        }
    if qualification is not None:
        # The rater knows it is being qualified (the page says so), so this tells it nothing new.
        pair["qualification"] = {"number": qualification.number, "total": qualification.total}
    return pair


EMPTY_RETRY_SECONDS = 10  # how soon the page asks again after "no pairs right now"
QUALIFICATION_RETRY_SECONDS = 60  # staff must import gold checks first: not soon
NO_WORK_MESSAGES = {
    services.NoWork.EMPTY: "There are no pairs for you right now. Thank you! Check back later.",
    services.NoWork.QUOTA: "You have judged all the pairs this study asks of one person. Thank you!",
    services.NoWork.CLOSED: "This study is closed.",
}


THROTTLED_MESSAGE = (
    "Many people are starting this study right now. Your first pair comes shortly: keep this page open."
)


def _next_answer(rater: Rater, *, started: bool = True, address: str = "") -> dict[str, Any]:
    result = services.assignment_next_for_rater(rater=rater, started=started, client_address=address)
    progress = _progress(rater, result.judged, result.quota)
    if result.assignment is not None:
        return {
            "status": "pair",
            "pair": _pair(result.assignment, rater.study.slug, result.qualification),
            "progress": progress,
        }
    if result.no_work == services.NoWork.START:
        return {"status": "start"}  # the page shows its Start button and asks again on a press
    if result.no_work == services.NoWork.GUIDELINES:
        return {"status": "guidelines"}  # the page shows the guidelines and asks for an acknowledgement
    if result.no_work == services.NoWork.UNQUALIFIED:
        return {"status": "unqualified", "message": rater.paused_reason}
    if result.no_work == services.NoWork.QUALIFICATION_UNAVAILABLE:
        return {
            "status": "empty",
            "message": onboarding.UNAVAILABLE_MESSAGE,
            "retry_seconds": QUALIFICATION_RETRY_SECONDS,
        }
    if result.no_work == services.NoWork.THROTTLED:
        return {"status": "empty", "message": THROTTLED_MESSAGE, "retry_seconds": result.retry_seconds}
    if result.no_work == services.NoWork.PAUSED:
        return {"status": "paused", "message": rater.paused_reason}
    if result.no_work == services.NoWork.FINISHED:
        return {"status": "done", "redirect": reverse("ratings:done", args=[rater.study.slug])}
    answer = {"status": "empty", "message": NO_WORK_MESSAGES[result.no_work or services.NoWork.EMPTY]}
    if result.no_work == services.NoWork.EMPTY:
        answer["retry_seconds"] = EMPTY_RETRY_SECONDS  # pairs come back as reservations expire
    return answer


@json_endpoint
def api_next(request: HttpRequest, rater: Rater, payload: dict[str, Any]) -> dict[str, Any]:
    """The rater's pair. ``"start": true`` says that the person asked for it (the page's Start
    button): a crowd rater's first pair is reserved only then."""
    return _next_answer(rater, started=payload.get("start") is True, address=client_address(request))


@json_endpoint
def api_vote(request: HttpRequest, rater: Rater, payload: dict[str, Any]) -> dict[str, Any]:
    """Store a vote; with ``"next": true`` the answer carries the rater's next pair as ``next``
    (what ``api/next`` would answer), so the page needs one request per judgment."""
    vote, errors = VoteInput.parse(payload)
    if vote is None:
        raise ApplicationError("Some fields are not valid.", extra={"fields": errors})
    submission = services.judgment_submit(
        rater=rater,
        token=vote.token,
        choice=vote.choice,
        idempotency_key=vote.idempotency_key,
        strength=vote.strength,
        rationale=vote.rationale,
        shown_at=vote.client_time("shown_at"),
        first_input_at=vote.client_time("first_input_at"),
        active_seconds=vote.active_seconds,
        answers=vote.answers,
    )
    answer = {
        "status": "saved",
        "created": submission.created,
        "key": submission.judgment.idempotency_key,
        "progress": _progress(rater, submission.judged, submission.quota),
        "rater": {"status": submission.rater_status, "message": submission.paused_reason},
        "undoable": submission.undoable,
    }
    if submission.qualification is not None:
        answer["qualification"] = {
            "passed": submission.qualification.passed,
            "message": submission.qualification.message,
        }
    if vote.next:
        # The vote is committed: a failure to find the next pair must not read as a failed vote
        # (the page then asks api/next on its own).
        try:
            answer["next"] = _next_answer(rater)
        except ApplicationError as error:
            answer["next"] = {"status": "error", "message": error.message}
        except Exception:
            logger.exception("rater %s: vote saved, next pair failed", rater.id)
            answer["next"] = {"status": "error", "message": "The next pair could not be loaded."}
    return answer


@json_endpoint
def api_acknowledge(request: HttpRequest, rater: Rater, payload: dict[str, Any]) -> dict[str, Any]:
    """The rater has read the guidelines (pressed "I have read the guidelines"); the answer is
    what ``api/next`` answers then. The press is the person asking for a pair, as Start is."""
    onboarding.rater_guidelines_acknowledge(rater=rater)
    return _next_answer(rater, started=True, address=client_address(request))


@json_endpoint
def api_undo(request: HttpRequest, rater: Rater, payload: dict[str, Any]) -> dict[str, Any]:
    form = _form(UndoForm, payload)
    assignment = services.judgment_undo(rater=rater, idempotency_key=form.cleaned_data["idempotency_key"])
    return {"status": "pair", "pair": _pair(assignment, rater.study.slug)}


@json_endpoint
def api_skip(request: HttpRequest, rater: Rater, payload: dict[str, Any]) -> dict[str, Any]:
    form = _form(SkipForm, payload)
    services.assignment_skip(
        rater=rater,
        token=form.cleaned_data["token"],
        reason=form.cleaned_data["reason"],
    )
    return {"status": "skipped"}


def _token_user(request: HttpRequest) -> Any:
    """The account of an ``Authorization: Token …`` header (the REST API's credentials), if any:
    a program that rates through the API fetches a pair's images with the token it rates with."""
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.exceptions import AuthenticationFailed

    try:
        found = TokenAuthentication().authenticate(request)  # type: ignore[arg-type]
    except AuthenticationFailed:
        return None
    return None if found is None else found[0]


IMAGE_CACHE_SECONDS = 365 * 24 * 3600  # content-addressed: the bytes behind a URL never change
_SHA256 = re.compile(r"[0-9a-f]{64}")


@require_GET
def image_file(request: HttpRequest, slug: str, sha256: str) -> HttpResponse:
    """An image sample's bytes, for the study's raters (its session's rater) and staff only.

    The URL is the content hash: it names no sample, generator or version, and no file name is
    sent. The type comes from the stored format (the bytes were re-encoded on import), with
    ``nosniff`` and a sandboxing CSP so that no browser reads them as anything but an image."""
    rater = _session_rater(request, slug, for_api=True)
    user = request.user if request.user.is_authenticated else _token_user(request)
    if rater is not None:
        study_id = rater.study_id
    elif user is not None and user.is_active and user.is_staff:
        study_id = Study.objects.filter(slug=slug).values_list("id", flat=True).first()
    elif user is not None:  # a programmatic rater of the REST API (its token), or an account's rater
        study_id = (
            Rater.objects.filter(study__slug=slug, user=user).values_list("study_id", flat=True).first()
        )
        if study_id is None:
            return HttpResponse("You do not rate in this study.", status=403, content_type="text/plain")
    else:
        return HttpResponse("Sign in to see this image.", status=403, content_type="text/plain")
    asset = None
    if study_id is not None and _SHA256.fullmatch(sha256):
        asset = selectors.study_image_get(study_id=study_id, sha256=sha256)
    if asset is None:
        return HttpResponse("There is no such image.", status=404, content_type="text/plain")
    etag = f'"{asset.sha256}"'
    if etag in request.headers.get("If-None-Match", ""):
        response = HttpResponse(status=304)
    else:
        response = FileResponse(
            image_storage().open(asset.storage_name, "rb"), content_type=asset.content_type
        )
        del response["Content-Disposition"]  # FileResponse derives one from the storage's file name
    response["ETag"] = etag
    response["Cache-Control"] = f"private, max-age={IMAGE_CACHE_SECONDS}, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response
