from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from server.ratings.models import Assignment, Comparison, Judgment, Rater, RaterStatus
from server.ratings.services import rater_quality_update, rater_resume


def _percent(value: object) -> str:
    return "–" if value is None else f"{float(value):.0%}"  # type: ignore[arg-type]


@admin.register(Rater)
class RaterAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "study",
        "user",
        "platform",
        "external_id",
        "status",
        "paused_reason",
        "judgments",
        "gold_accuracy",
        "majority_agreement",
        "left_rate",
        "self_consistency",
        "median_active_seconds",
        "created_at",
    ]
    list_filter = ["status", "platform", "study"]
    search_fields = ["user__username", "external_id", "paused_reason"]
    raw_id_fields = ["user"]
    readonly_fields = ["quality", "paused_at"]
    actions = ["resume_raters", "recompute_quality"]

    @admin.display(description="judgments")
    def judgments(self, rater: Rater) -> object:
        return rater.quality.get("judgments", "–")

    @admin.display(description="gold")
    def gold_accuracy(self, rater: Rater) -> str:
        return f"{_percent(rater.quality.get('gold_accuracy'))} of {rater.quality.get('gold_checks', 0)}"

    @admin.display(description="agrees with majority")
    def majority_agreement(self, rater: Rater) -> str:
        return _percent(rater.quality.get("majority_agreement"))

    @admin.display(description="left rate")
    def left_rate(self, rater: Rater) -> str:
        return _percent(rater.quality.get("left_rate"))

    @admin.display(description="self-consistency")
    def self_consistency(self, rater: Rater) -> str:
        return _percent(rater.quality.get("self_consistency"))

    @admin.display(description="median active s")
    def median_active_seconds(self, rater: Rater) -> str:
        seconds = rater.quality.get("median_active_seconds")
        return "–" if seconds is None else f"{seconds:.1f}"

    @admin.action(description="Resume the selected paused raters")
    def resume_raters(self, request: HttpRequest, queryset: QuerySet[Rater]) -> None:
        resumed = 0
        for rater_id in queryset.filter(status=RaterStatus.PAUSED).values_list("id", flat=True):
            rater_resume(rater_id=rater_id)
            resumed += 1
        self.message_user(
            request, f"Resumed {resumed} rater(s); their judgments are no longer flagged as paused."
        )

    @admin.action(description="Recompute quality signals")
    def recompute_quality(self, request: HttpRequest, queryset: QuerySet[Rater]) -> None:
        rater_ids = list(queryset.values_list("id", flat=True))
        for rater_id in rater_ids:
            rater_quality_update(rater_id=rater_id)
        self.message_user(request, f"Recomputed quality of {len(rater_ids)} rater(s).")


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "study",
        "prompt",
        "sample_a",
        "sample_b",
        "kind",
        "gold_answer",
        "active_assignments",
        "completed_assignments",
        "created_at",
    ]
    list_filter = ["kind", "study"]
    raw_id_fields = ["prompt", "sample_a", "sample_b", "repeat_of", "selected_by_job"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "comparison",
        "rater",
        "left_is_a",
        "status",
        "reserved_at",
        "expires_at",
        "skip_reason",
    ]
    list_filter = ["status", "comparison__study"]
    search_fields = ["=token", "rater__user__username", "rater__external_id", "skip_reason"]
    raw_id_fields = ["comparison", "rater"]


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "assignment",
        "outcome",
        "strength",
        "active_seconds",
        "is_flagged",
        "revoked_reason",
        "submitted_at",
    ]
    list_filter = ["outcome", "is_flagged", "revoked_reason", "assignment__comparison__study"]
    search_fields = ["rationale", "idempotency_key"]
    raw_id_fields = ["assignment", "replaces"]
    readonly_fields = ["idempotency_key", "submitted_at", "revoked_at", "revoked_reason", "replaces"]
