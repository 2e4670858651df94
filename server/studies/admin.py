from __future__ import annotations

from django.contrib import admin

from server.studies.models import Prompt, Study, StudyVersion


class StudyVersionInline(admin.TabularInline):
    model = StudyVersion
    extra = 0
    raw_id_fields = ["version", "enrolled_by_job"]


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "modality",
        "is_active",
        "overlap",
        "gold_rate",
        "repeat_rate",
        "pair_selection",
        "created_at",
    ]
    list_filter = ["is_active", "modality", "pair_selection"]
    search_fields = ["name", "slug", "question"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [StudyVersionInline]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "split", "short_text", "external_id", "created_at"]
    list_filter = ["split", "study"]
    search_fields = ["text", "external_id"]
    readonly_fields = ["text_hash"]

    @admin.display(description="text")
    def short_text(self, prompt: Prompt) -> str:
        return prompt.text[:80]
