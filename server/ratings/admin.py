from __future__ import annotations

from django.contrib import admin

from server.ratings.models import Assignment, Comparison, Judgment, Rater


@admin.register(Rater)
class RaterAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "user", "platform", "external_id", "status", "paused_reason", "created_at"]
    list_filter = ["status", "platform", "study"]
    search_fields = ["user__username", "external_id", "paused_reason"]
    raw_id_fields = ["user"]


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
    search_fields = ["rater__user__username", "rater__external_id", "skip_reason"]
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
