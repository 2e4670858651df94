from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from server.ratings.models import (
    Assignment,
    Comparison,
    Judgment,
    Platform,
    Rater,
    RaterEntryConflict,
    RaterStatus,
)
from server.ratings.services import rater_quality_update, rater_release, rater_resume


def _percent(value: object) -> str:
    return "–" if value is None else f"{float(value):.0%}"  # type: ignore[arg-type]


class EntryConflictInline(admin.TabularInline):
    model = RaterEntryConflict
    extra = 0
    can_delete = False
    fields = ["created_at", "client_address", "session_info"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


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
        "entry_conflicts",
        "created_at",
    ]
    list_filter = ["status", "platform", "study"]
    search_fields = ["user__username", "external_id", "paused_reason"]
    raw_id_fields = ["user"]
    # The binding secret is the participant's credential: never shown, only released.
    exclude = ["session_binding"]
    readonly_fields = ["quality", "paused_at", "guidelines_acknowledged_at", "qualified_at"]
    inlines = [EntryConflictInline]
    actions = ["resume_raters", "recompute_quality", "release_raters"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Rater]:
        return super().get_queryset(request).annotate(entry_conflict_count=Count("entry_conflicts"))

    @admin.display(description="refused entries", ordering="entry_conflict_count")
    def entry_conflicts(self, rater: Rater) -> int:
        return rater.entry_conflict_count  # type: ignore[attr-defined]

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

    @admin.action(
        description="Release the selected crowd participants to the next browser that opens their link"
    )
    def release_raters(self, request: HttpRequest, queryset: QuerySet[Rater]) -> None:
        rater_ids = list(
            queryset.filter(platform__in=[Platform.PROLIFIC, Platform.MTURK]).values_list("id", flat=True)
        )
        for rater_id in rater_ids:
            rater_release(rater_id=rater_id)
        self.message_user(
            request,
            f"Released {len(rater_ids)} participant(s): the next browser that opens each one's link "
            "continues as it.",
        )

    @admin.action(description="Recompute quality signals")
    def recompute_quality(self, request: HttpRequest, queryset: QuerySet[Rater]) -> None:
        rater_ids = list(queryset.values_list("id", flat=True))
        for rater_id in rater_ids:
            rater_quality_update(rater_id=rater_id)
        self.message_user(request, f"Recomputed quality of {len(rater_ids)} rater(s).")


@admin.register(RaterEntryConflict)
class RaterEntryConflictAdmin(admin.ModelAdmin):
    """Crowd links opened with a participant id that another browser session owns (refused)."""

    list_display = ["id", "rater", "created_at", "client_address", "session_info"]
    list_filter = ["rater__study"]
    search_fields = ["rater__external_id", "client_address"]
    raw_id_fields = ["rater"]
    readonly_fields = ["rater", "created_at", "client_address", "session_info"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


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
