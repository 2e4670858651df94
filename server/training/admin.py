from __future__ import annotations

from django.contrib import admin

from server.training.models import PreferenceSnapshot, RewardModel, SnapshotPair


@admin.register(PreferenceSnapshot)
class PreferenceSnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "content_hash", "rule", "train_count", "validation_count", "created_at"]
    list_filter = ["study", "rule"]
    search_fields = ["content_hash"]
    readonly_fields = ["content_hash"]


@admin.register(SnapshotPair)
class SnapshotPairAdmin(admin.ModelAdmin):
    list_display = ["id", "snapshot", "judgment", "chosen", "rejected", "margin", "split"]
    list_filter = ["split", "snapshot__study"]
    raw_id_fields = ["snapshot", "judgment", "chosen", "rejected"]


@admin.register(RewardModel)
class RewardModelAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "study",
        "snapshot",
        "backbone",
        "ensemble_size",
        "validation_accuracy",
        "human_agreement_ceiling",
        "expected_calibration_error",
        "created_at",
    ]
    list_filter = ["study"]
    search_fields = ["backbone", "path"]
    raw_id_fields = ["snapshot", "job"]
