from django.contrib import admin

from server.judges.models import MachineJudge, MachineJudgment


@admin.register(MachineJudge)
class MachineJudgeAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "study", "created_at")
    list_filter = ("kind",)
    readonly_fields = ("leaderboard",)


@admin.register(MachineJudgment)
class MachineJudgmentAdmin(admin.ModelAdmin):
    list_display = ("judge", "comparison", "outcome", "a_first", "b_first", "score_a", "score_b")
    list_filter = ("judge",)
    raw_id_fields = ("comparison",)
