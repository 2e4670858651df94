from __future__ import annotations

from django.contrib import admin

from server.evaluations.models import Evaluation, LeaderboardSnapshot


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "version", "job", "created_at"]
    list_filter = ["study", "version__generator"]
    raw_id_fields = ["version", "job"]


@admin.register(LeaderboardSnapshot)
class LeaderboardSnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "judgment_count", "job", "created_at"]
    list_filter = ["study"]
    raw_id_fields = ["job"]
