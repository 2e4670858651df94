"""The REST API: each view parses its input, calls one service or selector, and shapes the output.

Permissions (see ``permissions.py``): staff operate everything; a rater sees the studies it rates
in and, within them, only its own assignments and votes. A pair is shown to a rater as texts only:
no generator, version or sample identity, before or after the vote.
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any

from django.db import transaction
from django.http import FileResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from server.api import selectors
from server.api import serializers as s
from server.api.parsers import JSONParser
from server.api.permissions import IsStaff, StudyAccess, is_staff
from server.core.exceptions import NotFound
from server.dashboard.insights import study_agreement
from server.evaluations.selectors import leaderboard_latest
from server.evaluations.services import evaluation_start, leaderboard_recompute_start
from server.generators.services import (
    generate_start,
    generator_version_register,
    image_generator_build_for_study,
    samples_import_file,
)
from server.jobs.services import job_cancel
from server.judges.models import MachineJudge
from server.judges.selectors import machine_judges_overview
from server.judges.services import machine_judge_create, machine_judging_start
from server.ratings import onboarding as rating_onboarding
from server.ratings import services as rating_services
from server.ratings.gold_import import gold_pairs_import, gold_pairs_import_file, gold_rows_from_records
from server.ratings.models import Judgment
from server.ratings.pair_selection import pair_selection_start
from server.studies.models import Study
from server.studies.selectors import CriterionView, study_criterion
from server.studies.services import PromptInput, prompt_bulk_create, study_create
from server.training.exports import export_file_path, export_start
from server.training.services import policy_train_start, reward_model_train_start, training_job_resume
from server.training.snapshots import snapshot_create

IMPORT_ROWS_FILENAME = "rows.jsonl"


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- Base classes -----------------------------------------------------------------------------------


class StaffAPI(APIView):
    permission_classes = [IsAuthenticated, IsStaff]


class StudyAPI(APIView):
    """A view under ``/api/studies/<slug>/``; ``self.study`` is set by the permission check."""

    permission_classes = [IsAuthenticated, StudyAccess]
    staff_only = True
    study: Study


class StudyListAPI(generics.ListAPIView):
    """A paginated list under ``/api/studies/<slug>/``."""

    permission_classes = [IsAuthenticated, StudyAccess]
    staff_only = True
    study: Study


# --- Studies ------------------------------------------------------------------------------------------


class StudyListCreateApi(generics.ListAPIView):
    schema_tag = "studies"
    serializer_class = s.StudySerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.study_list_for_user(user=self.request.user, staff=is_staff(self.request.user))

    @extend_schema(summary="Studies you can see (staff: all; raters: the ones they rate in)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a study (staff)", request=s.StudyCreateSerializer, responses={201: s.StudySerializer}
    )
    def post(self, request: Request) -> Response:
        if not is_staff(request.user):
            self.permission_denied(request, message="Only staff can create studies.")
        data = _valid(s.StudyCreateSerializer, request.data)
        study = study_create(created_by_id=request.user.id, **data)
        return Response(s.StudySerializer(study).data, status=status.HTTP_201_CREATED)


class StudyDetailApi(StudyAPI):
    schema_tag = "studies"
    staff_only = False

    @extend_schema(summary="One study (staff, or a rater of it)", responses=s.StudySerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(s.StudySerializer(self.study).data)


# --- Prompts, versions, samples ---------------------------------------------------------------------


class PromptListCreateApi(StudyListAPI):
    schema_tag = "data"
    serializer_class = s.PromptSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.prompt_list(study=self.study)

    @extend_schema(summary="The study's prompts (staff)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Add prompts in bulk, all or none (staff); duplicates are skipped and reported",
        request=s.PromptBulkCreateSerializer,
        responses={201: s.PromptBulkResultSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.PromptBulkCreateSerializer, request.data)
        result = prompt_bulk_create(
            study=self.study, prompts=[PromptInput(**item) for item in data["prompts"]]
        )
        body = {
            "created": s.PromptSerializer(result.created, many=True).data,
            "duplicates": result.duplicates,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class VersionListCreateApi(StudyListAPI):
    schema_tag = "data"
    serializer_class = s.VersionSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.version_list(study=self.study)

    @extend_schema(summary="Generator versions enrolled in the study (staff)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Register a base, external or endpoint version (or find it) and enrol it (staff)",
        request=s.VersionRegisterSerializer,
        responses={201: s.VersionSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.VersionRegisterSerializer, request.data)
        version = generator_version_register(
            generator_name=data["generator"],
            label=data["label"],
            kind=data["kind"],
            model_path=data["model_path"],
            model_revision=data["model_revision"],
            decoding=data["decoding"],
            reference_corpus_path=data["reference_corpus_path"],
            endpoint=data["endpoint"],
            study=self.study,
        )
        return Response(s.VersionSerializer(version).data, status=status.HTTP_201_CREATED)


class SampleFilterSerializer(s.QueryFilterSerializer):
    version_id = s.QueryIdentifier(required=False)
    prompt_id = s.QueryIdentifier(required=False)


@extend_schema(parameters=[SampleFilterSerializer])
class SampleListApi(StudyListAPI):
    schema_tag = "data"
    serializer_class = s.SampleSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        filters = _valid(SampleFilterSerializer, self.request.query_params)
        return selectors.sample_list(study=self.study, **filters)

    @extend_schema(summary="The study's samples (staff), filtered by version or prompt")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class SampleImportApi(StudyAPI):
    schema_tag = "data"
    throttle_scope = "import"
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        summary="Import samples of external generators (staff): JSON rows or a JSONL/CSV file",
        description=(
            'Either a JSON body `{"rows": [...]}` (a row has the fields of a JSONL line; errors name '
            "the row as its 1-based line) or a multipart upload of a `.jsonl` / `.csv` file; for an image "
            "study, a `.zip` of PNG/JPEG files with `manifest.jsonl` or `manifest.csv` at its top level "
            "(`prompt` or `condition`, `file`, `generator`, optional `version`, `split`, `prompt_id`, "
            "`metadata`), each image validated and re-encoded without metadata; errors name the manifest "
            "line and the image file. Any error imports nothing."
        ),
        request={
            "application/json": s.SampleImportRowsSerializer,
            "multipart/form-data": s.SampleImportFileSerializer,
        },
        responses={201: s.ImportResultSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        if request.content_type.startswith("multipart/"):
            data = _valid(s.SampleImportFileSerializer, request.data)
            upload = data["file"]
            content, filename, declared = upload.read(), upload.name or "upload", data.get("format")
        else:
            data = _valid(s.SampleImportRowsSerializer, request.data)
            # ASCII-escaped, so no character inside a text (U+2028, say) can split a JSONL line.
            content = "\n".join(json.dumps(dict(row), ensure_ascii=True) for row in data["rows"]).encode()
            filename, declared = IMPORT_ROWS_FILENAME, "jsonl"
        result = samples_import_file(
            study_slug=self.study.slug, data=content, filename=filename, declared_format=declared
        )
        return Response(s.ImportResultSerializer(result).data, status=status.HTTP_201_CREATED)


class GoldImportApi(StudyAPI):
    schema_tag = "data"
    throttle_scope = "import"
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        summary="Add gold checks with their expected answers (staff): JSON pairs or a JSONL/CSV file",
        description=(
            'Either a JSON body `{"pairs": [...]}` (a pair has the fields of a JSONL line: `prompt`, '
            "`text_a`, `text_b`, `expected` = A, B or tie, optional `split`; an image study's pair has "
            "`image_a`, `image_b` instead: the SHA-256 of images of the study; errors name the pair as its "
            "1-based line) or a multipart upload of a `.jsonl` / `.csv` file. Any error imports nothing; "
            "checks the study already has are skipped and listed."
        ),
        request={
            "application/json": s.GoldImportRowsSerializer,
            "multipart/form-data": s.GoldImportFileSerializer,
        },
        responses={201: s.GoldImportResultSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        if request.content_type.startswith("multipart/"):
            data = _valid(s.GoldImportFileSerializer, request.data)
            upload = data["file"]
            result = gold_pairs_import_file(
                study=self.study,
                data=upload.read(),
                filename=upload.name or "upload",
                declared_format=data.get("format"),
            )
        else:
            data = _valid(s.GoldImportRowsSerializer, request.data)
            rows = gold_rows_from_records(data["pairs"], modality=self.study.modality)
            result = gold_pairs_import(study=self.study, rows=rows)
        return Response(s.GoldImportResultSerializer(result).data, status=status.HTTP_201_CREATED)


# --- Rating (programmatic raters) -------------------------------------------------------------------


class RaterStudyAPI(StudyAPI):
    """A rater's own work in a study. Staff are enrolled as raters on their first request."""

    schema_tag = "rating"
    staff_only = False
    throttle_scope = "rating"

    def rater(self, request: Request):  # type: ignore[no-untyped-def]
        return rating_services.rater_for_account(study=self.study, user=request.user)


class NextAssignmentApi(RaterStudyAPI):
    @extend_schema(
        summary="Your next pair: the open one, or a newly reserved one",
        request=None,
        responses=s.NextAssignmentSerializer,
    )
    def post(self, request: Request, slug: str) -> Response:
        result = rating_services.assignment_next_for_rater(rater=self.rater(request))
        return Response(s.NextAssignmentSerializer(result, context={"study_slug": self.study.slug}).data)


class GuidelinesAcknowledgeApi(RaterStudyAPI):
    @extend_schema(
        summary="Say that you have read the study's guidelines; answers your next pair",
        description="A study that requires it (``require_guidelines_ack``) gives no pair before this "
        "(``no_work`` = ``guidelines``).",
        request=None,
        responses=s.NextAssignmentSerializer,
    )
    def post(self, request: Request, slug: str) -> Response:
        rater = rating_onboarding.rater_guidelines_acknowledge(rater=self.rater(request))
        result = rating_services.assignment_next_for_rater(rater=rater)
        return Response(s.NextAssignmentSerializer(result, context={"study_slug": self.study.slug}).data)


class AssignmentListApi(StudyListAPI):
    schema_tag = "rating"
    staff_only = False
    throttle_scope = "rating"
    serializer_class = s.AssignmentSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.assignment_list_for_user(study=self.study, user=self.request.user)

    @extend_schema(summary="Your own assignments in the study, newest first")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


def _choice_of(judgment: Judgment) -> str:
    if judgment.chose_left is None:
        return str(judgment.outcome)  # "tie" or "both_bad"
    return "left" if judgment.chose_left else "right"


class JudgmentSubmitApi(RaterStudyAPI):
    @extend_schema(
        summary="Vote on your pair (left, right, tie, both_bad); idempotent by key",
        request=s.JudgmentSubmitSerializer,
        responses={201: s.JudgmentResultSerializer, 200: s.JudgmentResultSerializer},
    )
    def post(self, request: Request, slug: str, token: str) -> Response:
        data = _valid(s.JudgmentSubmitSerializer, request.data)
        submission = rating_services.judgment_submit(rater=self.rater(request), token=token, **data)
        judgment = submission.judgment
        body = {
            "id": judgment.id,
            "assignment": token,
            "choice": _choice_of(judgment),
            "strength": judgment.strength,
            "rationale": judgment.rationale,
            "idempotency_key": judgment.idempotency_key,
            "answers": {
                key: ("left" if left else "right") if left is not None else outcome
                for key, outcome, left in judgment.answers.values_list(
                    "criterion__key", "outcome", "chose_left"
                )
            },
            "submitted_at": judgment.submitted_at,
            "created": submission.created,
            "judged": submission.judged,
            "quota": submission.quota,
            "rater_status": submission.rater_status,
            "paused_reason": submission.paused_reason,
        }
        return Response(
            s.JudgmentResultSerializer(body).data,
            status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
        )


class AssignmentSkipApi(RaterStudyAPI):
    @extend_schema(
        summary="Pass on your pair, saying why", request=s.SkipSerializer, responses=s.AssignmentSerializer
    )
    def post(self, request: Request, slug: str, token: str) -> Response:
        data = _valid(s.SkipSerializer, request.data)
        assignment = rating_services.assignment_skip(
            rater=self.rater(request), token=token, reason=data["reason"]
        )
        return Response(s.AssignmentSerializer(assignment, context={"study_slug": self.study.slug}).data)


class JudgmentUndoApi(RaterStudyAPI):
    @extend_schema(
        summary="Take back your vote within the undo window; the pair is yours again",
        request=s.UndoSerializer,
        responses=s.AssignmentSerializer,
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.UndoSerializer, request.data)
        assignment = rating_services.judgment_undo(
            rater=self.rater(request), idempotency_key=data["idempotency_key"]
        )
        return Response(s.AssignmentSerializer(assignment, context={"study_slug": self.study.slug}).data)


# --- Raters (staff) ----------------------------------------------------------------------------------


class RaterListApi(StudyListAPI):
    schema_tag = "raters"
    serializer_class = s.RaterSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.rater_table(study=self.study)

    @extend_schema(summary="Raters with their quality signals (staff)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class RaterPauseApi(StudyAPI):
    schema_tag = "raters"

    @extend_schema(
        summary="Pause a rater (staff); its judgments are flagged",
        request=s.PauseSerializer,
        responses=s.RaterSerializer,
    )
    def post(self, request: Request, slug: str, rater_id: int) -> Response:
        data = _valid(s.PauseSerializer, request.data)
        rater = selectors.rater_in_study(study=self.study, rater_id=rater_id)
        rating_services.rater_pause(rater_id=rater.id, reason=data["reason"])
        return Response(s.RaterSerializer(selectors.rater_table(study=self.study).get(id=rater.id)).data)


class RaterResumeApi(StudyAPI):
    schema_tag = "raters"

    @extend_schema(summary="Resume a paused rater (staff)", request=None, responses=s.RaterSerializer)
    def post(self, request: Request, slug: str, rater_id: int) -> Response:
        rater = selectors.rater_in_study(study=self.study, rater_id=rater_id)
        rating_services.rater_resume(rater_id=rater.id)
        return Response(s.RaterSerializer(selectors.rater_table(study=self.study).get(id=rater.id)).data)


# --- Results (staff) ------------------------------------------------------------------------------------


CRITERION_PARAMETER = OpenApiParameter(
    "criterion", str, description="A criterion key: its answers (default: the study's own question)."
)


def _criterion(study: Study, request: Request) -> CriterionView:
    try:
        return study_criterion(study=study, key=request.query_params.get("criterion"))
    except LookupError as error:
        raise NotFound(str(error), extra={"field": "criterion"}) from None


class LeaderboardApi(StudyAPI):
    schema_tag = "results"

    @extend_schema(
        summary="The study's latest leaderboard of a criterion, plain and length-controlled (staff)",
        responses=s.LeaderboardSerializer,
        parameters=[CRITERION_PARAMETER],
    )
    def get(self, request: Request, slug: str) -> Response:
        criterion = _criterion(self.study, request)
        board = leaderboard_latest(study=self.study, criterion_id=criterion.id)
        if board is None:
            raise NotFound(
                "The study has no leaderboard yet."
                if criterion.is_primary
                else f"The study has no leaderboard of {criterion.key!r} yet."
            )
        return Response(s.LeaderboardSerializer(board).data)


class AgreementApi(StudyAPI):
    schema_tag = "results"

    @extend_schema(
        summary="Agreement between raters on a criterion: Krippendorff's α with bootstrap intervals, "
        "Cohen's κ per rater pair (staff)",
        responses=s.AgreementSerializer,
        parameters=[CRITERION_PARAMETER],
    )
    def get(self, request: Request, slug: str) -> Response:
        criterion = _criterion(self.study, request)
        return Response(s.AgreementSerializer(study_agreement(study=self.study, criterion=criterion)).data)


class EvaluationListApi(StudyListAPI):
    schema_tag = "results"
    serializer_class = s.EvaluationSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.evaluation_list(study=self.study)

    @extend_schema(summary="Creativity evaluations of the study's versions, newest first (staff)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class EvaluationDetailApi(StudyAPI):
    schema_tag = "results"

    @extend_schema(summary="One evaluation (staff)", responses=s.EvaluationSerializer)
    def get(self, request: Request, slug: str, evaluation_id: int) -> Response:
        evaluation = selectors.evaluation_get(study=self.study, evaluation_id=evaluation_id)
        return Response(s.EvaluationSerializer(evaluation).data)


class SnapshotListCreateApi(StudyListAPI):
    schema_tag = "results"
    serializer_class = s.SnapshotSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.snapshot_list(study=self.study)

    @extend_schema(summary="Preference snapshots of the study (staff)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Freeze the eligible judgments into a snapshot (staff); the same judgments give the same one",
        request=s.SnapshotCreateSerializer,
        responses={201: s.SnapshotSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.SnapshotCreateSerializer, request.data)
        snapshot = snapshot_create(study=self.study, validation_fraction=data["validation_fraction"])
        return Response(s.SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


class RewardModelListApi(StudyListAPI):
    schema_tag = "results"
    serializer_class = s.RewardModelSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.reward_model_list(study=self.study)

    @extend_schema(summary="Reward models of the study, with accuracy and the human ceiling (staff)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


# --- Jobs (staff) -----------------------------------------------------------------------------------------


@extend_schema(parameters=[s.JobFilterSerializer])
class JobListApi(generics.ListAPIView):
    schema_tag = "jobs"
    permission_classes = [IsAuthenticated, IsStaff]
    serializer_class = s.JobSummarySerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        filters = _valid(s.JobFilterSerializer, self.request.query_params)
        return selectors.job_list(
            study_slug=filters.get("study"), kind=filters.get("kind"), status=filters.get("status")
        )

    @extend_schema(summary="Jobs, newest first (staff)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class JobDetailApi(StaffAPI):
    schema_tag = "jobs"

    @extend_schema(
        summary="A job with its progress, metrics timeline and log tail (staff)", responses=s.JobSerializer
    )
    def get(self, request: Request, job_id: int) -> Response:
        return Response(s.JobSerializer(selectors.job_get(job_id=job_id)).data)


class JobCancelApi(StaffAPI):
    schema_tag = "jobs"
    throttle_scope = "jobs"

    @extend_schema(
        summary="Cancel a job (staff): a queued one at once, a running one at its next progress report",
        request=None,
        responses=s.JobSerializer,
    )
    def post(self, request: Request, job_id: int) -> Response:
        return Response(s.JobSerializer(job_cancel(job_id=job_id)).data)


class JobResumeApi(StaffAPI):
    schema_tag = "jobs"
    throttle_scope = "jobs"

    @extend_schema(
        summary="Resume a failed or cancelled training job from its newest checkpoint (staff): a new "
        "job with the same options, recorded as the first one's next step",
        request=None,
        responses={202: s.JobSerializer},
    )
    def post(self, request: Request, job_id: int) -> Response:
        job = training_job_resume(job_id=job_id, created_by_id=request.user.id)
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobStartAPI(StudyAPI):
    schema_tag = "jobs"
    throttle_scope = "jobs"

    def accepted(self, job: Any) -> Response:
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class GenerateStartApi(JobStartAPI):
    @extend_schema(
        summary="Start generating samples (staff)",
        request=s.GenerateStartSerializer,
        responses={202: s.JobSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.GenerateStartSerializer, request.data)
        with transaction.atomic():
            job = generate_start(study=self.study, created_by_id=request.user.id, **data)
        return self.accepted(job)


class ImageBuildStartApi(JobStartAPI):
    @extend_schema(
        summary="Start building an image generator for an image study (staff)",
        description="A class-conditional VAE or DCGAN trained on the procedural shapes; the version "
        "is registered and enrolled in the study when the job finishes. A text study answers 400.",
        request=s.ImageBuildStartSerializer,
        responses={202: s.JobSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.ImageBuildStartSerializer, request.data)
        with transaction.atomic():
            job = image_generator_build_for_study(
                study=self.study,
                architecture=data["architecture"],
                generator_name=data["generator"],
                label=data["label"],
                size=data["size"],
                config=data["config"],
                created_by_id=request.user.id,
            )
        return self.accepted(job)


class PairSelectionStartApi(JobStartAPI):
    @extend_schema(
        summary="Start pair selection (staff)",
        request=s.PairSelectionStartSerializer,
        responses={202: s.JobSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.PairSelectionStartSerializer, request.data)
        with transaction.atomic():
            job = pair_selection_start(study=self.study, created_by_id=request.user.id, **data)
        return self.accepted(job)


class RewardModelStartApi(JobStartAPI):
    @extend_schema(
        summary="Start reward-model training (staff)",
        request=s.RewardModelStartSerializer,
        responses={202: s.JobSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.RewardModelStartSerializer, request.data)
        with transaction.atomic():
            job = reward_model_train_start(study=self.study, created_by_id=request.user.id, **data)
        return self.accepted(job)


class PolicyStartApi(JobStartAPI):
    @extend_schema(
        summary="Start policy training: DPO, RLOO or GRPO; image_reward in an image study (staff)",
        request=s.PolicyStartSerializer,
        responses={202: s.JobSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.PolicyStartSerializer, request.data)
        with transaction.atomic():
            job = policy_train_start(
                study=self.study,
                parent_version_id=data.get("parent_version_id"),
                method=data["method"],
                snapshot_id=data.get("snapshot_id"),
                reward_model_id=data.get("reward_model_id"),
                config=data["config"],
                created_by_id=request.user.id,
            )
        return self.accepted(job)


class EvaluationStartApi(JobStartAPI):
    @extend_schema(
        summary="Start the creativity evaluation of a version (staff)",
        request=s.EvaluationStartSerializer,
        responses={202: s.JobSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.EvaluationStartSerializer, request.data)
        with transaction.atomic():
            job = evaluation_start(
                study=self.study, version_id=data["version_id"], created_by_id=request.user.id
            )
        return self.accepted(job)


class LeaderboardRecomputeApi(JobStartAPI):
    @extend_schema(
        summary="Recompute the leaderboard (staff)",
        request=s.LeaderboardRecomputeSerializer,
        responses={202: s.JobSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.LeaderboardRecomputeSerializer, request.data)
        with transaction.atomic():
            job = leaderboard_recompute_start(study=self.study, created_by_id=request.user.id, **data)
        return self.accepted(job)


# --- Exports (staff) --------------------------------------------------------------------------------------


def _export_body(request: Request, job: Any) -> dict[str, Any]:
    files = []
    if job.status == "succeeded":
        for name in sorted((job.result or {}).get("files", {})):
            try:
                size = export_file_path(job=job, name=name).stat().st_size
            except NotFound:
                continue  # a folder (the saved dataset) or a file cleaned up since
            url = reverse("api:export-file", kwargs={"job_id": job.id, "name": name})
            files.append({"name": name, "size": size, "url": request.build_absolute_uri(url)})
    return {"job": job, "files": files}


class MachineJudgeListCreateApi(StudyAPI):
    schema_tag = "machine judges"

    @extend_schema(
        summary="The study's machine judges with their agreement with people (staff)",
        responses=s.MachineJudgeSerializer(many=True),
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(s.MachineJudgeSerializer(machine_judges_overview(study=self.study), many=True).data)

    @extend_schema(
        summary="Register a machine judge: the study's reward model or an endpoint model (staff)",
        request=s.MachineJudgeCreateSerializer,
        responses={201: s.MachineJudgeSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.MachineJudgeCreateSerializer, request.data)
        judge = machine_judge_create(study=self.study, **data)
        row = next(row for row in machine_judges_overview(study=self.study) if row["judge"].id == judge.id)
        return Response(s.MachineJudgeSerializer(row).data, status=status.HTTP_201_CREATED)


class MachineJudgingStartApi(JobStartAPI):
    @extend_schema(
        summary="Start a machine judge on the comparisons it has not judged yet (staff)",
        request=s.MachineJudgingStartSerializer,
        responses={202: s.JobSerializer},
    )
    def post(self, request: Request, slug: str, judge_id: int) -> Response:
        data = _valid(s.MachineJudgingStartSerializer, request.data)
        judge = MachineJudge.objects.filter(study=self.study, id=judge_id).first()
        if judge is None:
            raise NotFound(f"The study has no machine judge {judge_id}.")
        with transaction.atomic():
            job = machine_judging_start(judge=judge, scope=data["scope"], created_by_id=request.user.id)
        return self.accepted(job)


class ExportStartApi(JobStartAPI):
    schema_tag = "exports"

    @extend_schema(
        summary="Start an export (staff): preferences (JSONL + datasets), judgments (JSONL + Parquet), "
        "leaderboard CSV, evaluation report",
        request=s.ExportStartSerializer,
        responses={202: s.ExportSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(s.ExportStartSerializer, request.data)
        with transaction.atomic():
            job = export_start(
                study=self.study,
                kind=data["kind"],
                snapshot_id=data.get("snapshot_id"),
                hub_repo=data["hub_repo"],
                created_by_id=request.user.id,
            )
        return Response(s.ExportSerializer(_export_body(request, job)).data, status=status.HTTP_202_ACCEPTED)


class ExportDetailApi(StaffAPI):
    schema_tag = "exports"

    @extend_schema(
        summary="An export's job and, once it succeeded, its files (staff)", responses=s.ExportSerializer
    )
    def get(self, request: Request, job_id: int) -> Response:
        job = selectors.export_job_get(job_id=job_id)
        return Response(s.ExportSerializer(_export_body(request, job)).data)


class FileNegotiation(BaseContentNegotiation):
    """A download answers with the file's own type whatever the Accept header says; the only
    thing rendered through DRF is an error, and that is always JSON."""

    def select_renderer(
        self, request: Request, renderers: list[Any], format_suffix: str | None = None
    ) -> Any:
        return renderers[0], renderers[0].media_type

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None


DOWNLOAD_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv",
    ".html": "text/html",
    ".zip": "application/zip",
}


class ExportFileApi(StaffAPI):
    schema_tag = "exports"
    throttle_scope = "download"
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FileNegotiation

    @extend_schema(
        summary="Download one file of a finished export (staff)",
        responses={
            (200, media_type): OpenApiResponse(response=OpenApiTypes.BINARY, description="The file.")
            for media_type in DOWNLOAD_TYPES.values()
        },
    )
    def get(self, request: Request, job_id: int, name: str) -> FileResponse:
        path = export_file_path(job=selectors.export_job_get(job_id=job_id), name=name)
        content_type = DOWNLOAD_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        return FileResponse(
            open(path, "rb"),
            as_attachment=True,
            filename=path.name,
            content_type=content_type or "application/octet-stream",
        )


@csrf_exempt  # nothing happens here, whatever the method: no cross-site request to protect against
def not_found(request: Any, unmatched: str = "") -> JsonResponse:
    """Any other path under /api/: a JSON 404 like every other API error, never an HTML page."""
    return JsonResponse(
        {"error": "There is no such API endpoint.", "details": {"path": request.path}}, status=404
    )
