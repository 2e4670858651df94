from __future__ import annotations

import hashlib
import re
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q


def _new_invite_token() -> str:
    return secrets.token_urlsafe(18)


ANSWER_PHRASE_MAX = 60
# "Which is more original?" → "more original"; "Which poem is better?" → "better". Only this
# shape is read: "Left is <phrase>" is then grammatical by construction.
_WHICH_IS = re.compile(r"^\s*which(?:\s+[\w-]+)?\s+is\s+([^?,;:\n]{1,60}?)\s*\?\s*$", re.IGNORECASE)
ANSWER_PHRASE_HELP = (
    "How the rating page's buttons answer the question: “Left is <phrase>” / “Right is <phrase>” "
    "(e.g. “more original”). Blank: plain “Left” / “Right”."
)


def answer_phrase_from_question(question: str) -> str:
    """The phrase that completes "Left is …" for a question shaped "Which [thing] is …?"
    ("Which is more original?" → "more original"); "" (plain Left / Right) for any other, and
    for a phrase that ``answer_phrase_problem`` refuses ("Which one is is better?", a tab)."""
    match = _WHICH_IS.match(question or "")
    phrase = match.group(1).strip() if match else ""
    return "" if answer_phrase_problem(phrase) else phrase


def answer_phrase_follow_question(row: Study | Criterion) -> None:
    """Before saving ``row`` (a study or a criterion): when its question changed since it was
    loaded and its phrase is still the one the old question implied, the phrase the new question
    implies, so "Which is more original?" edited to "Which poem do you prefer?" stops showing
    "Left is more original". A phrase someone wrote (not the derived one) is kept."""
    loaded = getattr(row, "_loaded_question", None)
    if loaded is None or loaded == row.question:
        return
    if row.answer_phrase == answer_phrase_from_question(loaded.strip()):
        row.answer_phrase = answer_phrase_from_question(row.question.strip())


class _RemembersQuestion(models.Model):
    """Remembers the question a row was loaded with (for ``answer_phrase_follow_question``)."""

    question: str
    answer_phrase: str
    _loaded_question: str | None = None

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        answer_phrase_follow_question(self)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "question" in update_fields:
            kwargs["update_fields"] = {*update_fields, "answer_phrase"}
        super().save(*args, **kwargs)
        self._loaded_question = self.__dict__.get("question")  # None when deferred

    @classmethod
    def from_db(cls, db, field_names, values):  # type: ignore[no-untyped-def]
        row = super().from_db(db, field_names, values)
        row._loaded_question = row.__dict__.get("question")
        return row


def answer_phrase_problem(phrase: str, *, check_length: bool = True) -> str | None:
    """Why ``phrase`` cannot complete "Left is …" on a button; None when it can."""
    if check_length and len(phrase) > ANSWER_PHRASE_MAX:
        return f"Use at most {ANSWER_PHRASE_MAX} characters (buttons read “Left is <phrase>”)."
    if phrase != phrase.strip() or any(not character.isprintable() for character in phrase):
        return "Use one line without leading or trailing spaces."
    if phrase.lower().startswith("is ") or phrase.endswith("?"):
        return (
            "Give only what follows “Left is”, without “is” and without a question mark "
            "(e.g. “more original”)."
        )
    return None


def validate_answer_phrase(phrase: str) -> None:
    """The model field's validator (its ``max_length`` checks the length)."""
    problem = answer_phrase_problem(phrase, check_length=False)
    if problem:
        raise ValidationError(problem)


class Modality(models.TextChoices):
    TEXT = "text"
    IMAGE = "image"


class PairSelection(models.TextChoices):
    RANDOM = "random"
    ACTIVE = "active"  # most uncertain under the reward-model ensemble
    THOMPSON = "thompson"  # double Thompson sampling from the reward-model ensemble
    MARGIN = "margin"  # the pairs whose winner the reward-model ensemble is surest of


class BootstrapClusters(models.TextChoices):
    """What the leaderboard's bootstrap resamples as a whole (evaluation/bootstrap.py).

    The raters of one prompt judge the same two samples, so their votes are not independent:
    resampling judgments one by one (``none``) gives intervals that are too narrow (measured on
    simulated studies: ~76 % coverage for a nominal 95 %; bench/bootstrap_coverage.py).
    """

    PROMPT = "prompt", "prompts (default)"
    RATER = "rater", "raters"
    PROMPT_AND_RATER = "prompt_and_rater", "prompts and raters, crossed (conservative)"
    NONE = "none", "none: judgments independently (too narrow when prompts repeat)"


class Study(_RemembersQuestion):
    """One question asked of raters about one kind of artifact, with its rules."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    # The study's first criterion (its "primary" one): every study has it, and everything that
    # predates criteria (quality checks, onboarding, machine judges, the judgment's own outcome)
    # is about it. A study may ask up to MAX_CRITERIA - 1 further questions about the same pair
    # (``Criterion``), answered in the same vote.
    question = models.CharField(max_length=500)
    guidelines = models.TextField(blank=True)
    answer_phrase = models.CharField(
        max_length=ANSWER_PHRASE_MAX,
        blank=True,
        validators=[validate_answer_phrase],
        help_text=ANSWER_PHRASE_HELP,
    )
    criterion_key = models.SlugField(
        max_length=40,
        default="primary",
        help_text="How leaderboards, snapshots and the API name the study's first question.",
    )
    modality = models.CharField(max_length=16, choices=Modality.choices, default=Modality.TEXT)
    is_active = models.BooleanField(default=True)

    versions = models.ManyToManyField(
        "generators.GeneratorVersion", through="StudyVersion", related_name="studies", blank=True
    )

    # Assignment rules
    overlap = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    gold_rate = models.FloatField(default=0.1, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)])
    repeat_rate = models.FloatField(default=0.05, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)])
    per_rater_cap = models.PositiveIntegerField(null=True, blank=True)
    reservation_seconds = models.PositiveIntegerField(default=600, validators=[MinValueValidator(10)])
    pair_selection = models.CharField(
        max_length=16, choices=PairSelection.choices, default=PairSelection.RANDOM
    )
    show_progress = models.BooleanField(default=True)

    # Onboarding (server/ratings/onboarding.py). A rater reads the guidelines and says so before its
    # first pair; a study may also ask for a short qualification on staff-supplied gold checks: the
    # first ``qualification_pairs`` pairs of a rater are such checks, and a rater who answers fewer
    # than ``qualification_min_correct`` of them as expected gets no further pairs (told so in plain
    # words). Qualification answers are kept, flagged, and never counted in statistics or training.
    require_guidelines_ack = models.BooleanField(default=True)
    qualification_pairs = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(50)])
    qualification_min_correct = models.PositiveSmallIntegerField(default=0)

    # Quality control (server/ratings/quality.py): each threshold is the null hypothesis of an
    # exact binomial test; a rater is paused only when the test rejects it at ``quality_alpha``.
    min_gold_accuracy = models.FloatField(
        default=0.6, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    min_self_consistency = models.FloatField(
        default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    max_position_bias = models.FloatField(
        default=0.9, validators=[MinValueValidator(0.5), MaxValueValidator(1.0)]
    )
    # Votes for a side before position bias is tested.
    min_quality_judgments = models.PositiveIntegerField(default=10)
    # Significance level: the most often a rater who meets a threshold is paused anyway, per test.
    # 1 %: a clearly bad rater (1 of 8 gold checks right at 60 %: p = 0.009) is still paused. At most
    # 20 %: above that, pausing honest raters would be routine.
    quality_alpha = models.FloatField(
        default=0.01, validators=[MinValueValidator(0.0001), MaxValueValidator(0.2)]
    )
    # Checks of a kind (gold answers, repeated pairs) before that kind may pause. Six: the fewest at
    # which the default gold threshold can be rejected at the default level at all (0 of 6 right at
    # 60 %: p = 0.4^6 = 0.004; 0 of 5: 0.0102), so it never delays a pause the test supports, and it
    # keeps a study that loosens the level or raises a threshold from pausing on two or three
    # unlucky answers. Never fewer than two (quality.MIN_FAIR_CHECKS).
    quality_min_checks = models.PositiveIntegerField(default=6, validators=[MinValueValidator(2)])
    fast_judgment_seconds = models.FloatField(default=2.0, validators=[MinValueValidator(0.0)])

    # Crowd platforms
    invite_token = models.CharField(max_length=40, unique=True, default=_new_invite_token)
    completion_code = models.CharField(max_length=64, blank=True)
    completion_url = models.URLField(blank=True)

    # Automatic loop: snapshot → reward model → policy → generate when this many new judgments exist.
    auto_train_min_judgments = models.PositiveIntegerField(null=True, blank=True)
    # A reward model trained on fewer pairs than this still trains, with a warning: at 50 pairs a
    # validation accuracy of 80 % has a 95 % interval about ±20 points wide on its validation share.
    min_training_pairs = models.PositiveIntegerField(default=50)
    # The method of the loop's policy step: DPO on the snapshot, or RLOO / GRPO against the reward
    # model the loop has just trained.
    auto_train_policy = models.CharField(
        max_length=16, choices=[("dpo", "DPO"), ("rloo", "RLOO"), ("grpo", "GRPO")], default="dpo"
    )
    # The options of the loop's reward-model and policy jobs, as the training API takes them
    # (server/training/services.py; checked by ``clean``): e.g. {"kind": "sequence_classification",
    # "backbone_path": …, "lora": {"rank": 16}} for a reward model on the policy's own base.
    # Empty: the trainers' defaults (the cheap frozen-embedding heads; LoRA DPO).
    auto_reward_model_config = models.JSONField(default=dict, blank=True)
    auto_policy_config = models.JSONField(default=dict, blank=True)
    target_ci_width = models.FloatField(default=50.0, validators=[MinValueValidator(0.0)])  # rating points
    # What the leaderboard's bootstrap resamples whole: prompts by default (see BootstrapClusters).
    bootstrap_clusters = models.CharField(
        max_length=24, choices=BootstrapClusters.choices, default=BootstrapClusters.PROMPT
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="study_overlap_positive"),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0, gold_rate__lte=0.5), name="study_gold_rate_range"
            ),
            models.CheckConstraint(
                condition=Q(repeat_rate__gte=0, repeat_rate__lte=0.5), name="study_repeat_rate_range"
            ),
            models.CheckConstraint(condition=Q(reservation_seconds__gte=10), name="study_reservation_min"),
            models.CheckConstraint(
                condition=Q(quality_alpha__gte=0.0001, quality_alpha__lte=0.2),
                name="study_quality_alpha_range",
            ),
            models.CheckConstraint(condition=Q(quality_min_checks__gte=2), name="study_quality_min_checks"),
            models.CheckConstraint(
                condition=Q(auto_train_policy__in=["dpo", "rloo", "grpo"]),
                name="study_auto_train_policy_known",
            ),
            models.CheckConstraint(
                condition=Q(bootstrap_clusters__in=["prompt", "rater", "prompt_and_rater", "none"]),
                name="study_bootstrap_clusters_known",
            ),
            models.CheckConstraint(
                condition=Q(qualification_min_correct__lte=F("qualification_pairs")),
                name="study_qualification_threshold_reachable",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self._clean_loop_options()
        if self.qualification_min_correct > self.qualification_pairs:
            raise ValidationError(
                {
                    "qualification_min_correct": "A rater cannot answer more qualification pairs "
                    f"correctly than the {self.qualification_pairs} the qualification has."
                }
            )
        if self.qualification_pairs and not self.qualification_min_correct:
            raise ValidationError(
                {
                    "qualification_min_correct": "Say how many qualification pairs a rater must answer "
                    "as expected to pass (at least 1)."
                }
            )

    def _clean_loop_options(self) -> None:
        """The loop's job options, refused here as the training services would refuse them when the
        loop starts the jobs (by name, type, range and combination), naming the option."""
        from server.core.exceptions import ApplicationError
        from server.training.services import (
            IMAGE_POLICY_OPTIONS,
            IMAGE_REWARD_OPTIONS,
            POLICY_METHODS,
            image_options,
            policy_options,
            reward_model_options,
        )

        image = self.modality == Modality.IMAGE
        checks = {
            "auto_reward_model_config": lambda config: (
                image_options(config, IMAGE_REWARD_OPTIONS, "image reward model")
                if image
                else reward_model_options(config)
            ),
            "auto_policy_config": lambda config: (
                image_options(config, IMAGE_POLICY_OPTIONS, "image policy")
                if image
                else policy_options(self.auto_train_policy, config)
            ),
        }
        for field, check in checks.items():
            config = getattr(self, field)
            if not isinstance(config, dict):
                raise ValidationError({field: "Must be an object of options (or {} for the defaults)."})
            if self.auto_train_policy not in POLICY_METHODS and field == "auto_policy_config":
                continue  # the method itself is refused by its own field
            try:
                check(config)
            except ApplicationError as error:
                raise ValidationError({field: error.message}) from None


MAX_CRITERIA = 4  # the study's own question and up to three more


class Criterion(_RemembersQuestion):
    """A further question asked about the same pair as the study's own (``Study.question``, the
    first criterion), with its own guidelines; answered in the same vote, in ``position`` order.

    The first criterion has no row: it is the study itself (key ``Study.criterion_key``), so every
    study, old or new, has it without a data migration, and a row here is always an extra one.
    Positions run 1..MAX_CRITERIA-1 and are unique per study, so the database itself holds a
    study to at most MAX_CRITERIA criteria.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="criteria")
    key = models.SlugField(max_length=40)
    question = models.CharField(max_length=500)
    guidelines = models.TextField(blank=True)
    answer_phrase = models.CharField(
        max_length=ANSWER_PHRASE_MAX,
        blank=True,
        validators=[validate_answer_phrase],
        help_text=ANSWER_PHRASE_HELP,
    )
    position = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CRITERIA - 1)]
    )

    class Meta:
        ordering = ["study", "position"]
        verbose_name_plural = "criteria"
        constraints = [
            models.UniqueConstraint(fields=["study", "key"], name="criterion_key_unique_per_study"),
            models.UniqueConstraint(fields=["study", "position"], name="criterion_position_unique_per_study"),
            models.CheckConstraint(
                condition=Q(position__gte=1, position__lte=MAX_CRITERIA - 1), name="criterion_position_range"
            ),
            models.CheckConstraint(condition=~Q(question=""), name="criterion_question_not_empty"),
            models.CheckConstraint(condition=~Q(key=""), name="criterion_key_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.study_id})"

    def clean(self) -> None:
        if self.study_id and self.key == self.study.criterion_key:
            raise ValidationError({"key": f"The study's own question is called {self.key!r} already."})


class StudyVersion(models.Model):
    """A generator version taking part in a study."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE)
    version = models.ForeignKey("generators.GeneratorVersion", on_delete=models.CASCADE)
    enrolled_at = models.DateTimeField(auto_now_add=True)
    enrolled_by_job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "version"], name="study_version_unique")]

    def __str__(self) -> str:
        return f"{self.version} in {self.study}"


class PromptSplit(models.TextChoices):
    TRAIN = "train"
    HOLDOUT = "holdout"  # never used for training anything; evaluation reports on it


def prompt_text_hash(text: str) -> str:
    """Whitespace- and case-normalised hash, so a prompt pasted twice is caught as a duplicate."""
    normalised = " ".join(text.split()).casefold()
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


class Prompt(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="prompts")
    text = models.TextField()
    text_hash = models.CharField(max_length=64, editable=False)
    split = models.CharField(max_length=16, choices=PromptSplit.choices, default=PromptSplit.TRAIN)
    external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "text_hash"], name="prompt_unique_text_per_study"),
            models.CheckConstraint(condition=Q(split__in=PromptSplit.values), name="prompt_split_valid"),
            models.CheckConstraint(condition=~Q(text=""), name="prompt_text_not_empty"),
        ]

    def __str__(self) -> str:
        return self.text[:60]

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.text_hash = prompt_text_hash(self.text)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if not self.text.strip():
            raise ValidationError({"text": "A prompt needs some text."})
        self.text_hash = prompt_text_hash(self.text)
