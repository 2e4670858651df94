from __future__ import annotations

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from server.core.triggers import Trigger


class Platform(models.TextChoices):
    ACCOUNT = "account"  # a staff-created user account
    INVITE = "invite"  # arrived through the study's invite link
    PROLIFIC = "prolific"
    MTURK = "mturk"


class RaterStatus(models.TextChoices):
    ACTIVE = "active"
    PAUSED = "paused"  # by a quality threshold or by staff; judgments kept and flagged
    FINISHED = "finished"  # quota done (crowd participants)
    # Failed the study's qualification: gets no pairs, and is told why (``paused_reason``).
    UNQUALIFIED = "unqualified"


class Rater(models.Model):
    """A person rating in one study: an account holder or an external participant."""

    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="raters")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="raters"
    )
    platform = models.CharField(max_length=16, choices=Platform.choices, default=Platform.ACCOUNT)
    external_id = models.CharField(max_length=200, blank=True)
    session_info = models.JSONField(default=dict, blank=True)  # e.g. Prolific STUDY_ID / SESSION_ID
    # Crowd participants: a random secret that the browser session owning this participant holds
    # too. A crowd link names a participant by an id that is no secret, so only the session holding
    # this value acts as the participant. Empty: not bound to a session (an account; a participant
    # created before binding existed, or released by staff): the next crowd entry claims it.
    session_binding = models.CharField(max_length=64, blank=True, default="")

    status = models.CharField(max_length=16, choices=RaterStatus.choices, default=RaterStatus.ACTIVE)
    # Why the rater gets no pairs: a quality test, staff, or a failed qualification (in plain words).
    paused_reason = models.CharField(max_length=300, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    quality = models.JSONField(default=dict, blank=True)  # latest quality signals
    # Onboarding: when the rater pressed "I have read the guidelines", and when it passed the
    # study's qualification (None: not yet, or the study asks for none).
    guidelines_acknowledged_at = models.DateTimeField(null=True, blank=True)
    qualified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "user"], condition=Q(user__isnull=False), name="rater_one_per_user_and_study"
            ),
            models.UniqueConstraint(
                fields=["study", "platform", "external_id"],
                condition=~Q(external_id=""),
                name="rater_one_per_external_id_and_study",
            ),
            models.CheckConstraint(
                condition=Q(user__isnull=False) | ~Q(external_id=""), name="rater_has_identity"
            ),
            models.CheckConstraint(
                condition=~Q(status=RaterStatus.PAUSED) | ~Q(paused_reason=""), name="paused_rater_has_reason"
            ),
            models.CheckConstraint(
                condition=~Q(status=RaterStatus.UNQUALIFIED) | ~Q(paused_reason=""),
                name="unqualified_rater_has_reason",
            ),
        ]

    def __str__(self) -> str:
        who = self.user.get_username() if self.user_id else f"{self.platform}:{self.external_id}"
        return f"{who} in {self.study_id}"

    @property
    def is_paused(self) -> bool:
        return self.status == RaterStatus.PAUSED


class RaterEntryConflict(models.Model):
    """A crowd link opened with the id of a participant whose rater another browser session owns.

    The entry is refused; this row is what the study's staff see: a genuine participant on a new
    device (staff can release the rater to the next browser that opens its link) or someone using
    another participant's id.
    """

    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="entry_conflicts")
    client_address = models.CharField(max_length=64, blank=True)
    session_info = models.JSONField(default=dict, blank=True)  # what the refused link carried
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"entry conflict {self.pk} on rater {self.rater_id}"


class ComparisonKind(models.TextChoices):
    REGULAR = "regular"
    # The answer is known: a real sample against a real sample of another prompt (generated), or
    # a pair with its expected answer supplied by staff.
    GOLD = "gold"
    REPEAT = "repeat"  # the same pair again, sides swapped, for self-consistency


class GoldAnswer(models.TextChoices):
    """The expected outcome of a gold check, in the outcome's own terms (see ``Outcome``)."""

    A = "A"
    B = "B"
    TIE = "tie"  # staff's checks only: two texts that should be judged equal


COMPARISON_PROMPT_TRIGGER = Trigger(
    name="ratings_comparison_same_prompt",
    table="ratings_comparison",
    events="INSERT OR UPDATE",
    condition_sql=(
        "((SELECT prompt_id FROM generators_sample WHERE id = NEW.sample_a_id) <> NEW.prompt_id"
        " OR (SELECT prompt_id FROM generators_sample WHERE id = NEW.sample_b_id) <> NEW.prompt_id)"
    ),
    message="a comparison needs two samples of its own prompt",
)


class Comparison(models.Model):
    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey("studies.Prompt", on_delete=models.CASCADE, related_name="comparisons")
    sample_a = models.ForeignKey("generators.Sample", on_delete=models.CASCADE, related_name="+")
    sample_b = models.ForeignKey("generators.Sample", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=ComparisonKind.choices, default=ComparisonKind.REGULAR)
    gold_answer = models.CharField(max_length=3, choices=GoldAnswer.choices, blank=True)
    repeat_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="repeats"
    )
    # Denormalised counter kept by the assignment service under a row lock: the number of live
    # (reserved or completed) assignments. It makes "has room for one more rater" an index scan.
    active_assignments = models.PositiveIntegerField(default=0)
    completed_assignments = models.PositiveIntegerField(default=0)
    selected_by_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["study", "kind", "active_assignments"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(sample_a=F("sample_b")), name="comparison_two_different_samples"
            ),
            models.CheckConstraint(condition=Q(kind__in=ComparisonKind.values), name="comparison_kind_valid"),
            models.CheckConstraint(
                condition=(Q(kind=ComparisonKind.GOLD) & Q(gold_answer__in=GoldAnswer.values))
                | (~Q(kind=ComparisonKind.GOLD) & Q(gold_answer="")),
                name="gold_comparison_has_answer",
            ),
            models.CheckConstraint(
                condition=(Q(kind=ComparisonKind.REPEAT) & Q(repeat_of__isnull=False))
                | (~Q(kind=ComparisonKind.REPEAT) & Q(repeat_of__isnull=True)),
                name="repeat_comparison_has_original",
            ),
            models.UniqueConstraint(
                fields=["sample_a", "sample_b"],
                condition=Q(kind=ComparisonKind.REGULAR),
                name="comparison_regular_pair_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"comparison {self.pk} ({self.kind})"

    def clean(self) -> None:
        if self.sample_a_id and self.sample_a_id == self.sample_b_id:
            raise ValidationError("A comparison needs two different samples.")
        if (
            self.sample_a_id
            and self.sample_b_id
            and (self.sample_a.prompt_id != self.prompt_id or self.sample_b.prompt_id != self.prompt_id)
        ):
            raise ValidationError("Both samples of a comparison must answer the comparison's prompt.")


class AssignmentStatus(models.TextChoices):
    RESERVED = "reserved"
    COMPLETED = "completed"
    EXPIRED = "expired"
    SKIPPED = "skipped"


def assignment_token_new() -> str:
    """128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


class Assignment(models.Model):
    """A comparison given to one rater, with the side each sample is shown on."""

    # How the rater's page and programs address the pair. Random, not derived from the id: an id
    # (even signed) tells its holder how many pairs were handed out before and between its own.
    token = models.CharField(max_length=32, unique=True, default=assignment_token_new, editable=False)
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="assignments")
    left_is_a = models.BooleanField()
    status = models.CharField(
        max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.RESERVED
    )
    reserved_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    skip_reason = models.CharField(max_length=300, blank=True)
    # One of the rater's qualification pairs (a staff gold check asked before regular work): its
    # judgment is flagged, never undone, and decides the qualification instead of quality signals.
    is_qualification = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "expires_at"]), models.Index(fields=["rater", "status"])]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "rater"], name="assignment_once_per_rater"),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("reserved_at")), name="assignment_expires_after_reserve"
            ),
            models.CheckConstraint(
                condition=~Q(status=AssignmentStatus.SKIPPED) | ~Q(skip_reason=""),
                name="skipped_assignment_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk} ({self.status})"


class Outcome(models.TextChoices):
    A = "A"
    B = "B"
    TIE = "tie"
    BOTH_BAD = "both_bad"


class Judgment(models.Model):
    """A rater's vote on an assignment. Never overwritten: undo and correction revoke it."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="judgments")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)  # in comparison terms, not sides
    chose_left = models.BooleanField(null=True)  # what was clicked; None for tie / both bad
    strength = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(3)]
    )
    rationale = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=64, unique=True)
    shown_at = models.DateTimeField(null=True, blank=True)
    first_input_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField()
    active_seconds = models.FloatField(null=True, blank=True)

    is_flagged = models.BooleanField(default=False)
    flag_reasons = models.JSONField(default=list, blank=True)  # e.g. ["fast", "rater_paused"]

    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(
        max_length=16, blank=True, choices=[("undo", "undo"), ("correction", "correction")]
    )
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by"
    )

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["submitted_at"])]
        constraints = [
            # One live judgment per assignment; revoked ones stay as the record of what happened.
            models.UniqueConstraint(
                fields=["assignment"],
                condition=Q(revoked_at__isnull=True),
                name="one_live_judgment_per_assignment",
            ),
            models.CheckConstraint(condition=Q(outcome__in=Outcome.values), name="judgment_outcome_valid"),
            models.CheckConstraint(
                condition=Q(strength__isnull=True) | Q(strength__gte=1, strength__lte=3),
                name="judgment_strength_range",
            ),
            models.CheckConstraint(
                condition=(Q(revoked_at__isnull=True) & Q(revoked_reason=""))
                | (Q(revoked_at__isnull=False) & ~Q(revoked_reason="")),
                name="judgment_revocation_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(active_seconds__isnull=True) | Q(active_seconds__gte=0),
                name="judgment_active_time_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"judgment {self.pk}: {self.outcome}"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None


class JudgmentAnswer(models.Model):
    """A judgment's answer to one of the study's further criteria (``studies.Criterion``).

    The judgment itself is the answer to the study's first criterion and the record of the vote
    (timings, flags, undo and correction); the answers to the other questions of the same vote
    hang off it, so they are live, flagged, undone and corrected with it. Quality signals (gold,
    repeats, agreement) stay on the first criterion: gold answers and repeats are defined for it.
    """

    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="answers")
    criterion = models.ForeignKey("studies.Criterion", on_delete=models.CASCADE, related_name="answers")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)  # in comparison terms
    chose_left = models.BooleanField(null=True)  # None for tie / both bad

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["judgment", "criterion"], name="one_answer_per_judgment_and_criterion"
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=Outcome.values), name="judgment_answer_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"answer {self.pk}: {self.outcome}"
