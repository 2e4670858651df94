"""Input and output shapes of the API. Input serializers check types and ranges only; the rules
live in the services. Output serializers are read-only views of rows and service results."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from server.core.untrusted_json import json_value_problem
from server.evaluations.models import Evaluation, LeaderboardSnapshot
from server.generators.models import GeneratorVersion, Sample, VersionKind
from server.jobs.models import Job, JobStatus
from server.ratings.models import Assignment, Rater
from server.ratings.selectors import assignment_images, assignment_texts
from server.ratings.services import CHOICES, NoWork
from server.studies.models import (
    ANSWER_PHRASE_MAX,
    MAX_CRITERIA,
    BootstrapClusters,
    Modality,
    PairSelection,
    Prompt,
    PromptSplit,
    Study,
)
from server.studies.services import CriterionInput
from server.training.exports import EXPORT_KINDS
from server.training.models import PreferenceSnapshot, RewardModel

MAX_ID = 2**63 - 1  # ids are 64-bit: a larger number can match nothing
MAX_BULK = 10_000  # prompts or sample rows in one request


def _check_json_value(value: Any) -> None:
    """Refuse what the database cannot store (a NUL character or a lone surrogate in any string,
    a non-finite number, nesting too deep). JSON bodies were checked by the parser already; this
    also covers values that arrive another way (form data, a direct call)."""
    problem = json_value_problem(value)
    if problem is not None:
        path, message = problem
        raise serializers.ValidationError(f"{path + ' ' if path else 'This value '}{message}.")


class Text(serializers.CharField):
    """Text in a JSON body: a JSON string only (no number read as its digits), and text the
    database can store (no NUL character, no lone surrogate)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if self.max_length is not None and len(data) > self.max_length:  # before trimming, as documented
            self.fail("max_length", max_length=self.max_length, length=len(data))
        value = super().to_internal_value(data)
        _check_json_value(value)
        return value


class Slug(serializers.SlugField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Integer(serializers.IntegerField):
    """A JSON integer only: neither "3" nor 3.0 nor true."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class Number(serializers.FloatField):
    """A JSON number only: not "0.5", not true."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class JsonObject(serializers.DictField):
    """A JSON object whose every string the database can store."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        _check_json_value(value)
        return value


class Identifier(Integer):
    """A row id in a JSON body."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


class QueryIdentifier(serializers.IntegerField):
    """A row id in the query string (where every value arrives as text)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


# --- Errors (documentation only) -----------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, for a person.")
    details = serializers.DictField(help_text="Field names, line numbers, limits: what the error is about.")


# --- Studies --------------------------------------------------------------------------------------


ANSWER_PHRASE_API_HELP = (
    "What completes the rating page's buttons: “Left is <phrase>” (e.g. “more original”); empty: plain "
    "“Left” / “Right”. Omitted: the phrase a question shaped “Which … is <phrase>?” implies, else empty."
)


class CriterionSerializer(serializers.Serializer):
    key = Slug(max_length=40, help_text="How votes, leaderboards and snapshots name this question.")
    question = Text(max_length=500)
    guidelines = Text(required=False, allow_blank=True, max_length=50_000, default="")
    answer_phrase = Text(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=ANSWER_PHRASE_MAX,
        help_text=ANSWER_PHRASE_API_HELP,
    )


class StudySerializer(serializers.ModelSerializer):
    criteria = serializers.SerializerMethodField(
        help_text="The questions a vote answers, in order; the first is the study's own question."
    )

    @extend_schema_field(CriterionSerializer(many=True))
    def get_criteria(self, study: Study) -> list[dict[str, str]]:
        questions = [study, *sorted(study.criteria.all(), key=lambda criterion: criterion.position)]
        return [
            {
                "key": study.criterion_key if question is study else question.key,
                "question": question.question,
                "guidelines": question.guidelines,
                "answer_phrase": question.answer_phrase,
            }
            for question in questions
        ]

    class Meta:
        model = Study
        fields = [
            "id",
            "slug",
            "name",
            "question",
            "guidelines",
            "answer_phrase",
            "modality",
            "is_active",
            "overlap",
            "gold_rate",
            "repeat_rate",
            "per_rater_cap",
            "reservation_seconds",
            "pair_selection",
            "min_gold_accuracy",
            "min_self_consistency",
            "max_position_bias",
            "min_quality_judgments",
            "quality_alpha",
            "quality_min_checks",
            "target_ci_width",
            "bootstrap_clusters",
            "auto_train_min_judgments",
            "auto_train_policy",
            "auto_reward_model_config",
            "auto_policy_config",
            "min_training_pairs",
            "require_guidelines_ack",
            "qualification_pairs",
            "qualification_min_correct",
            "criteria",
            "created_at",
        ]
        read_only_fields = fields


class StudyCreateSerializer(serializers.Serializer):
    name = Text(max_length=200)
    slug = Slug(max_length=80)
    question = Text(
        max_length=500,
        required=False,
        help_text="The one question of the study (or give criteria / a template).",
    )
    criteria = CriterionSerializer(
        many=True,
        required=False,
        min_length=1,
        max_length=MAX_CRITERIA,
        help_text="1 to 4 questions asked about each pair, answered in this order in one vote.",
    )
    template = serializers.ChoiceField(
        choices=[("creativity", "creativity: 'Which is more original?' and 'Which is better?'")],
        required=False,
        help_text="A ready set of criteria.",
    )
    guidelines = Text(required=False, allow_blank=True, max_length=50_000)
    answer_phrase = Text(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=ANSWER_PHRASE_MAX,
        help_text="With question only (criteria carry their own). " + ANSWER_PHRASE_API_HELP,
    )
    modality = serializers.ChoiceField(choices=Modality.choices, required=False)
    overlap = Integer(min_value=1, max_value=100, required=False)
    gold_rate = Number(min_value=0.0, max_value=0.5, required=False)
    repeat_rate = Number(min_value=0.0, max_value=0.5, required=False)
    per_rater_cap = Integer(min_value=1, max_value=1_000_000, required=False, allow_null=True)
    reservation_seconds = Integer(min_value=10, max_value=86_400, required=False)
    pair_selection = serializers.ChoiceField(choices=PairSelection.choices, required=False)
    # Rater quality: each threshold is the null hypothesis of a binomial test at quality_alpha.
    min_gold_accuracy = Number(min_value=0.0, max_value=1.0, required=False)
    min_self_consistency = Number(min_value=0.0, max_value=1.0, required=False)
    max_position_bias = Number(min_value=0.5, max_value=1.0, required=False)
    min_quality_judgments = Integer(min_value=0, max_value=1_000_000, required=False)
    quality_alpha = Number(min_value=0.0001, max_value=0.2, required=False)
    quality_min_checks = Integer(min_value=2, max_value=1_000_000, required=False)
    target_ci_width = Number(min_value=0.0, max_value=10_000.0, required=False)
    # What the leaderboard's bootstrap resamples whole (prompts by default).
    bootstrap_clusters = serializers.ChoiceField(choices=BootstrapClusters.choices, required=False)
    auto_train_min_judgments = Integer(min_value=1, max_value=1_000_000, required=False, allow_null=True)
    # The loop's policy method and the options of its reward-model and policy jobs, as the training
    # endpoints take them (checked the same way when the study is created).
    auto_train_policy = serializers.ChoiceField(
        choices=Study._meta.get_field("auto_train_policy").choices, required=False
    )
    auto_reward_model_config = serializers.DictField(
        required=False,
        help_text='Options of the loop\'s reward models, e.g. {"kind": "sequence_classification", '
        '"backbone_path": "/models/base", "lora": {"rank": 16}}; {} for the defaults.',
    )
    auto_policy_config = serializers.DictField(
        required=False,
        help_text="Options of the loop's policy jobs (of auto_train_policy's method); {} for the defaults.",
    )
    # Fewer training pairs than this: a reward model still trains, with a warning.
    min_training_pairs = Integer(min_value=1, max_value=1_000_000, required=False)
    # Onboarding: the guidelines acknowledged before the first pair; a qualification of N staff
    # gold checks (0 = none) of which at least qualification_min_correct must match the expected answer.
    require_guidelines_ack = serializers.BooleanField(required=False)
    qualification_pairs = Integer(min_value=0, max_value=50, required=False)
    qualification_min_correct = Integer(min_value=0, max_value=50, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in ("question", "criteria", "template") if attrs.get(name)]
        if len(given) != 1:
            raise serializers.ValidationError(
                {
                    "question": "Give exactly one of question, criteria or template (this has "
                    f"{', '.join(given) or 'none'})."
                }
            )
        if attrs.get("criteria"):
            attrs["criteria"] = [CriterionInput(**criterion) for criterion in attrs["criteria"]]
        return attrs


# --- Prompts, versions, samples ---------------------------------------------------------------------


class PromptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prompt
        fields = ["id", "text", "split", "external_id", "created_at"]
        read_only_fields = fields


class PromptInputSerializer(serializers.Serializer):
    text = Text(max_length=100_000, trim_whitespace=False)
    split = serializers.ChoiceField(choices=PromptSplit.choices, default=PromptSplit.TRAIN)
    external_id = Text(max_length=200, required=False, allow_blank=True, default="")


class PromptBulkCreateSerializer(serializers.Serializer):
    prompts = PromptInputSerializer(many=True, min_length=1, max_length=MAX_BULK)


class PromptBulkResultSerializer(serializers.Serializer):
    created = PromptSerializer(many=True)
    duplicates = serializers.ListField(
        child=serializers.IntegerField(), help_text="0-based positions of prompts the study already had."
    )


class VersionSerializer(serializers.ModelSerializer):
    generator = serializers.CharField(source="generator.name", read_only=True)

    class Meta:
        model = GeneratorVersion
        fields = [
            "id",
            "generator",
            "label",
            "kind",
            "model_path",
            "model_revision",
            "decoding",
            "endpoint",
            "reference_corpus_path",
            "parent_id",
            "training_job_id",
            "created_at",
        ]
        read_only_fields = fields


class VersionRegisterSerializer(serializers.Serializer):
    generator = Text(max_length=200)
    label = Text(max_length=120)
    kind = serializers.ChoiceField(
        choices=[
            (VersionKind.BASE, "base"),
            (VersionKind.EXTERNAL, "external"),
            (VersionKind.ENDPOINT, "endpoint"),
        ],
        help_text="Trained versions are made by training jobs, not registered.",
    )
    model_path = Text(max_length=500, required=False, allow_blank=True, default="")
    model_revision = Text(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="A hub model's branch, tag or commit to pin; empty = its default branch.",
    )
    decoding = JsonObject(required=False, default=dict)
    endpoint = JsonObject(
        required=False,
        default=dict,
        help_text=(
            'An endpoint version\'s settings: {"base_url": "http://localhost:8000/v1", "model": "...", '
            '"mode": "completions" | "chat", "api_key_env": "OPENAI_API_KEY", "concurrency": 4, '
            '"timeout_seconds": 60, "max_retries": 4, "backoff_seconds": 1}. api_key_env is the NAME '
            "of the workers' environment variable that holds the key; the key is never sent here."
        ),
    )
    reference_corpus_path = Text(max_length=500, required=False, allow_blank=True, default="")


class SampleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Sample
        fields = [
            "id",
            "prompt_id",
            "version_id",
            "text",
            "seed",
            "decoding",
            "token_count",
            "logprob_sum",
            "latency_seconds",
            "metadata",
            "job_id",
            "created_at",
        ]
        read_only_fields = fields


class SampleRowSerializer(serializers.Serializer):
    """One sample to import; the same fields as a line of a JSONL import file."""

    prompt = Text(max_length=100_000, trim_whitespace=False)
    text = Text(max_length=100_000, trim_whitespace=False)
    generator = Text(max_length=200)
    version = Text(max_length=120, required=False)
    split = serializers.ChoiceField(choices=PromptSplit.choices, required=False)
    prompt_id = Text(max_length=200, required=False, allow_blank=True)
    metadata = JsonObject(required=False)


class SampleImportRowsSerializer(serializers.Serializer):
    rows = SampleRowSerializer(many=True, min_length=1, max_length=MAX_BULK)


class SampleImportFileSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="A .jsonl or .csv file (UTF-8) with one sample a line; for an image study, a .zip of "
        "PNG/JPEG files with a manifest.jsonl or manifest.csv (prompt or condition, file, generator, "
        "version, …) at its top level."
    )
    format = serializers.ChoiceField(
        choices=[("jsonl", "jsonl"), ("csv", "csv"), ("zip", "zip")],
        required=False,
        help_text="Default: from the file name.",
    )


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.ListField(
        child=serializers.IntegerField(), help_text="Line numbers (1-based rows) of samples already present."
    )
    prompts_created = serializers.IntegerField()
    versions = serializers.ListField(child=serializers.CharField())
    images = serializers.ListField(
        child=JsonObject(),
        required=False,
        help_text="An image import's images, one {line, sha256} per manifest line: the SHA-256 of the "
        "stored image, by which a gold pair names it (image_a, image_b). Empty for a text import.",
    )


class GoldImportRowsSerializer(serializers.Serializer):
    pairs = serializers.ListField(
        child=JsonObject(),
        min_length=1,
        max_length=MAX_BULK,
        help_text="Objects with prompt, text_a, text_b, expected (A, B or tie) and optionally split "
        "(an image study: image_a, image_b, the SHA-256 of images of the study, instead of the texts); "
        "errors name the pair as its 1-based line.",
    )


class GoldImportFileSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .jsonl or .csv file (UTF-8) with one gold pair a line.")
    format = serializers.ChoiceField(
        choices=[("jsonl", "jsonl"), ("csv", "csv")], required=False, help_text="Default: from the file name."
    )


class GoldImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Gold checks added.")
    duplicates = serializers.ListField(
        child=serializers.IntegerField(), help_text="Lines of checks the study already has (skipped)."
    )
    prompts_created = serializers.IntegerField()


# --- Rating ----------------------------------------------------------------------------------------


class AssignmentSerializer(serializers.ModelSerializer):
    """A pair as a rater sees it: texts only (as the rating page shows them). Nothing names a
    generator, version or sample, the comparison's kind (regular, gold check, repeat) is not
    revealed either, and the pair is addressed by a random token, not a sequential id."""

    token = serializers.CharField(read_only=True, help_text="Addresses the pair in vote and skip.")
    prompt = serializers.SerializerMethodField()
    left = serializers.SerializerMethodField()
    right = serializers.SerializerMethodField()
    images = serializers.SerializerMethodField(
        help_text="An image pair's images (null for a text pair): for each side null or "
        "{url, width, height}; the URL is the image's content hash, fetched with the same credentials."
    )

    class Meta:
        model = Assignment
        fields = ["token", "status", "prompt", "left", "right", "images", "reserved_at", "expires_at"]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {
                side: {
                    "type": "object",
                    "nullable": True,
                    "properties": {
                        "url": {"type": "string"},
                        "width": {"type": "integer"},
                        "height": {"type": "integer"},
                    },
                }
                for side in ("left", "right")
            },
        }
    )
    def get_images(self, assignment: Assignment) -> dict[str, Any] | None:
        images = assignment_images(assignment=assignment)
        if images == (None, None):
            return None
        slug = self.context.get("study_slug") or assignment.comparison.study.slug
        return {
            side: None
            if image is None
            else {
                "url": reverse("ratings:image", args=[slug, image.sha256]),
                "width": image.width,
                "height": image.height,
            }
            for side, image in zip(("left", "right"), images, strict=True)
        }

    def get_prompt(self, assignment: Assignment) -> str:
        return assignment_texts(assignment=assignment)["prompt"]

    def get_left(self, assignment: Assignment) -> str:
        return assignment_texts(assignment=assignment)["left"]

    def get_right(self, assignment: Assignment) -> str:
        return assignment_texts(assignment=assignment)["right"]


class NextAssignmentSerializer(serializers.Serializer):
    assignment = AssignmentSerializer(allow_null=True)
    judged = serializers.IntegerField(help_text="Pairs this rater has judged in the study.")
    quota = serializers.IntegerField(allow_null=True, help_text="The study's per-rater cap, if any.")
    no_work = serializers.ChoiceField(
        choices=[(reason.value, reason.value) for reason in NoWork],
        allow_null=True,
        help_text="Why there is no pair (null when there is one).",
    )


class JudgmentSubmitSerializer(serializers.Serializer):
    choice = serializers.ChoiceField(
        choices=[(choice, choice) for choice in CHOICES], help_text="The answer to the study's own question."
    )
    answers = serializers.DictField(
        child=serializers.ChoiceField(choices=[(choice, choice) for choice in CHOICES]),
        required=False,
        default=dict,
        help_text="The answers to the study's further questions, by criterion key (required for each "
        "of them when the study has several).",
    )
    idempotency_key = Text(
        min_length=8, max_length=64, help_text="Unique per vote; sending it again returns the stored vote."
    )
    strength = Integer(min_value=1, max_value=3, required=False, allow_null=True)
    rationale = Text(max_length=5000, required=False, allow_blank=True, default="")
    active_seconds = Number(min_value=0.0, max_value=86_400.0, required=False, allow_null=True)


class JudgmentResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    assignment = serializers.CharField(help_text="The token of the pair voted on.")
    choice = serializers.ChoiceField(choices=[(choice, choice) for choice in CHOICES])
    strength = serializers.IntegerField(allow_null=True)
    rationale = serializers.CharField(allow_blank=True)
    idempotency_key = serializers.CharField()
    answers = serializers.DictField(
        child=serializers.CharField(), help_text="The answers to the study's further questions, by key."
    )
    submitted_at = serializers.DateTimeField()
    created = serializers.BooleanField(help_text="False when this key was seen before (a retried vote).")
    judged = serializers.IntegerField()
    quota = serializers.IntegerField(allow_null=True)
    rater_status = serializers.CharField()
    paused_reason = serializers.CharField(allow_blank=True)


class SkipSerializer(serializers.Serializer):
    reason = Text(max_length=300)


class UndoSerializer(serializers.Serializer):
    idempotency_key = Text(min_length=8, max_length=64)


# --- Raters ----------------------------------------------------------------------------------------


class RaterSerializer(serializers.ModelSerializer):
    username = serializers.SerializerMethodField()
    judgments = serializers.IntegerField(read_only=True, help_text="Live judgments.")
    flagged = serializers.IntegerField(read_only=True, help_text="Live judgments that are flagged.")

    class Meta:
        model = Rater
        fields = [
            "id",
            "username",
            "platform",
            "external_id",
            "status",
            "paused_reason",
            "paused_at",
            "quality",
            "judgments",
            "flagged",
            "guidelines_acknowledged_at",
            "qualified_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_username(self, rater: Rater) -> str | None:
        return rater.user.get_username() if rater.user_id else None


class PauseSerializer(serializers.Serializer):
    reason = Text(max_length=300, required=False, allow_blank=True, default="")


# --- Results ---------------------------------------------------------------------------------------


class LengthControlledRowSerializer(serializers.Serializer):
    version_id = serializers.IntegerField()
    label = serializers.CharField()
    rating = serializers.FloatField(allow_null=True)
    lower = serializers.FloatField(allow_null=True)
    upper = serializers.FloatField(allow_null=True)
    rank = serializers.IntegerField()
    battles = serializers.IntegerField()


class LeaderboardRowSerializer(LengthControlledRowSerializer):
    win_rate = serializers.FloatField(allow_null=True)
    # The win rate's bootstrap interval (the rating's resamples); null in older snapshots.
    win_rate_lower = serializers.FloatField(allow_null=True)
    win_rate_upper = serializers.FloatField(allow_null=True)


CRITERION_HELP = "The key of the criterion (further question) it is about; null: the study's own question."


class LengthControlledSerializer(serializers.Serializer):
    length_coefficient = serializers.FloatField(
        allow_null=True, help_text="γ: the change in the log-odds of winning per unit of the covariate."
    )
    length_coefficient_interval = serializers.ListField(child=serializers.FloatField(allow_null=True))
    covariate = serializers.CharField()
    rounds = serializers.IntegerField()
    rows = LengthControlledRowSerializer(many=True)


class LeaderboardSerializer(serializers.ModelSerializer):
    rows = LeaderboardRowSerializer(many=True, read_only=True)
    criterion = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True, help_text=CRITERION_HELP
    )
    matrices = serializers.DictField(
        read_only=True, help_text='{"version_ids", "labels", "win_rate": [[...]], "battles": [[...]]}'
    )
    length_controlled = serializers.SerializerMethodField(
        help_text="The same criterion's ratings net of the length covariate, with bootstrap intervals and "
        "ranks (null when some sample has no token count, or the board predates them)."
    )

    class Meta:
        model = LeaderboardSnapshot
        fields = [
            "id",
            "criterion",
            "created_at",
            "judgment_count",
            "params",
            "rows",
            "length_controlled",
            "matrices",
            "job_id",
        ]
        read_only_fields = fields

    @extend_schema_field(LengthControlledSerializer(allow_null=True))
    def get_length_controlled(self, board: LeaderboardSnapshot) -> dict[str, Any] | None:
        style = ((board.matrices or {}).get("diagnostics") or {}).get("style_control")
        if not isinstance(style, dict) or not style.get("rows"):
            return None
        return LengthControlledSerializer(style).data


class AlphaSerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=["ordinal", "nominal"])
    scale = serializers.CharField()
    alpha = serializers.FloatField(allow_null=True, help_text="Krippendorff's α; null when undefined.")
    lower = serializers.FloatField(allow_null=True)
    upper = serializers.FloatField(allow_null=True)
    units = serializers.IntegerField(help_text="Comparisons judged by two or more raters.")
    values = serializers.IntegerField(help_text="Judgments on those comparisons.")
    rounds = serializers.IntegerField(help_text="Bootstrap rounds in which α was defined.")


class KappaSerializer(serializers.Serializer):
    first = serializers.CharField()
    second = serializers.CharField()
    kappa = serializers.FloatField(allow_null=True)
    lower = serializers.FloatField(allow_null=True)
    upper = serializers.FloatField(allow_null=True)
    items = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True)


class AgreementSerializer(serializers.Serializer):
    criterion = serializers.CharField(help_text="The key of the criterion whose answers these are.")
    question = serializers.CharField()
    judgments = serializers.IntegerField()
    raters = serializers.IntegerField()
    alpha = AlphaSerializer(many=True, source="rows")
    kappas = KappaSerializer(many=True)
    kappa_pairs_considered = serializers.IntegerField()
    empty_reason = serializers.CharField(help_text="Why α cannot be computed; empty when it can.")


class EvaluationSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="version.__str__", read_only=True)

    class Meta:
        model = Evaluation
        fields = ["id", "version_id", "version", "protocol", "metrics", "job_id", "created_at"]
        read_only_fields = fields


class SnapshotSerializer(serializers.ModelSerializer):
    criterion = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True, help_text=CRITERION_HELP
    )

    class Meta:
        model = PreferenceSnapshot
        fields = [
            "id",
            "criterion",
            "content_hash",
            "rule",
            "validation_fraction",
            "train_count",
            "validation_count",
            "last_judgment_id",
            "job_id",
            "created_at",
        ]
        read_only_fields = fields


class SnapshotCreateSerializer(serializers.Serializer):
    validation_fraction = Number(min_value=0.0, max_value=0.95, default=0.2)


class RewardModelSerializer(serializers.ModelSerializer):
    criterion = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True, help_text=CRITERION_HELP
    )

    class Meta:
        model = RewardModel
        fields = [
            "id",
            "criterion",
            "snapshot_id",
            "backbone",
            "ensemble_size",
            "validation_accuracy",
            "human_agreement_ceiling",
            "expected_calibration_error",
            "metrics",
            "job_id",
            "created_at",
        ]
        read_only_fields = fields


# --- Jobs -----------------------------------------------------------------------------------------


class JobSummarySerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    progress_fraction = serializers.FloatField(read_only=True, allow_null=True)
    steps_per_second = serializers.FloatField(read_only=True, allow_null=True)
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "study",
            "queue",
            "parent_id",
            "progress_step",
            "progress_total",
            "progress_fraction",
            "steps_per_second",
            "eta_seconds",
            "progress_message",
            "error",
            "attempts",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class JobSerializer(JobSummarySerializer):
    metrics = serializers.ListField(
        child=serializers.DictField(), read_only=True, help_text='[{"step", "time", <name>: value}]'
    )
    warnings = serializers.SerializerMethodField(
        help_text="What the start found questionable but allowed (e.g. fewer training pairs than the "
        "study's minimum); empty when nothing."
    )

    class Meta(JobSummarySerializer.Meta):
        fields = [
            *JobSummarySerializer.Meta.fields,
            "warnings",
            "params",
            "result",
            "metrics",
            "log_tail",
            "worker",
            "heartbeat_at",
        ]
        read_only_fields = fields

    def get_warnings(self, job: Job) -> list[str]:
        warnings = (job.params or {}).get("warnings", [])
        return [str(warning) for warning in warnings] if isinstance(warnings, list) else []


class QueryFilterSerializer(serializers.Serializer):
    """Query-string filters: a filter given empty (``?status=``) is refused, not read as absent."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        blank = [name for name in self.fields if name in data and data.get(name) == ""]
        if blank:
            raise serializers.ValidationError({name: ["This filter may not be empty."] for name in blank})
        return super().to_internal_value(data)


class JobFilterSerializer(QueryFilterSerializer):
    study = serializers.SlugField(required=False)
    kind = serializers.ChoiceField(choices=Job._meta.get_field("kind").choices, required=False)
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)


class GenerateStartSerializer(serializers.Serializer):
    version_ids = serializers.ListField(child=Identifier(), min_length=1, max_length=100)
    split = serializers.ChoiceField(choices=[*PromptSplit.choices, ("all", "all")], default=PromptSplit.TRAIN)
    samples_per_prompt = Integer(min_value=1, max_value=64, default=2)
    decoding = JsonObject(required=False, default=dict)


class ImageBuildStartSerializer(serializers.Serializer):
    architecture = serializers.ChoiceField(choices=[("vae", "vae"), ("dcgan", "dcgan")])
    generator = Text(max_length=200, help_text="Name of the generator to register.")
    label = Text(max_length=120, default="base")
    size = serializers.ChoiceField(
        choices=[("demo", "demo"), ("tiny", "tiny")],
        default="demo",
        help_text="demo: the demo model (minutes on a CPU); tiny: seconds (tests).",
    )
    config = JsonObject(
        required=False,
        default=dict,
        help_text="Overrides of the architecture's settings by name (latent_dim, width, steps, "
        "batch_size, learning_rate, seed, images_per_class...; vae also kl_weight, pixel_precision).",
    )


class PairSelectionStartSerializer(serializers.Serializer):
    strategy = serializers.ChoiceField(choices=PairSelection.choices, required=False, allow_null=True)
    pairs_per_prompt = Integer(min_value=1, max_value=100, default=2)
    seed = Integer(min_value=0, max_value=2**31 - 1, default=0)


class RewardModelStartSerializer(serializers.Serializer):
    snapshot_id = Identifier(required=False, allow_null=True)
    criterion = Slug(
        max_length=40,
        required=False,
        allow_null=True,
        help_text="Without snapshot_id: train on the latest snapshot of this criterion (default: the "
        "study's own question).",
    )
    config = JsonObject(required=False, default=dict)


class PolicyStartSerializer(serializers.Serializer):
    parent_version_id = Identifier(required=False, allow_null=True)
    method = serializers.ChoiceField(
        choices=[("dpo", "dpo"), ("rloo", "rloo"), ("grpo", "grpo"), ("image_reward", "image_reward")],
        help_text="dpo, rloo or grpo in a text study; image_reward (the generator climbs the study's "
        "image reward model) in an image study.",
    )
    snapshot_id = Identifier(required=False, allow_null=True)
    reward_model_id = Identifier(required=False, allow_null=True)
    config = JsonObject(required=False, default=dict)


class EvaluationStartSerializer(serializers.Serializer):
    version_id = Identifier()


class LeaderboardRecomputeSerializer(serializers.Serializer):
    rounds = Integer(min_value=0, max_value=10_000, required=False)
    bootstrap_clusters = serializers.ChoiceField(
        choices=BootstrapClusters.choices,
        required=False,
        help_text="What the bootstrap resamples whole; the study's setting (prompts by default) if absent.",
    )


class ExportStartSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[(kind, kind) for kind in EXPORT_KINDS])
    snapshot_id = Identifier(required=False, allow_null=True)
    hub_repo = Text(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="Preferences only: also push the dataset to this Hugging Face Hub repository "
        "(owner/name, private); needs HF_TOKEN on the server.",
    )


class ExportFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes.")
    url = serializers.CharField(help_text="Where to download it (same authentication).")


class ExportSerializer(serializers.Serializer):
    job = JobSummarySerializer()
    files = ExportFileSerializer(many=True)


# --- Machine judges -------------------------------------------------------------------------------


class MachineJudgeCreateSerializer(serializers.Serializer):
    name = Text(max_length=120)
    kind = serializers.ChoiceField(choices=[("reward_model", "reward_model"), ("endpoint", "endpoint")])
    reward_model_id = Identifier(
        required=False, allow_null=True, help_text="reward_model: which one (default: the study's latest)."
    )
    endpoint = JsonObject(
        required=False,
        default=dict,
        help_text="endpoint: base_url, model, mode (chat / completions), api_key_env (the variable's "
        "name, never the key), concurrency, timeout_seconds, max_retries, backoff_seconds.",
    )
    judging_prompt = Text(
        max_length=10_000,
        required=False,
        allow_blank=True,
        default="",
        help_text="endpoint: a template with {prompt}, {first}, {second} and optionally {question}; "
        "the judge must reply 1, 2 or tie (a default prompt when empty).",
    )


class MachineJudgingStartSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(
        choices=[("judged_by_people", "judged_by_people"), ("all", "all")],
        default="judged_by_people",
        help_text="Comparisons people judged (what agreement needs), or all regular comparisons.",
    )


class ProportionSerializer(serializers.Serializer):
    k = serializers.IntegerField()
    n = serializers.IntegerField()
    share = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="95 % Wilson interval")
    high = serializers.FloatField(allow_null=True)


class MachineJudgeSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="judge.id")
    name = serializers.CharField(source="judge.name")
    kind = serializers.CharField(source="judge.kind")
    reward_model_id = serializers.IntegerField(source="judge.reward_model_id", allow_null=True)
    endpoint = serializers.DictField(source="judge.endpoint")
    judging_prompt = serializers.CharField(source="judge.judging_prompt")
    verdicts = serializers.IntegerField()
    with_majority = ProportionSerializer(help_text="Agreement with the strict human majority.")
    ties = ProportionSerializer(help_text="Ties the judge called, of the comparisons with a majority.")
    judge_vs_rater = ProportionSerializer(help_text="Agreement with single raters' votes.")
    rater_vs_rater = ProportionSerializer(help_text="Raters' agreement with each other: the ceiling.")
    comparisons_with_two_votes = serializers.IntegerField()
    leaderboard = serializers.ListField(child=serializers.DictField())
