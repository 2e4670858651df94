from __future__ import annotations

from django.contrib import admin

from server.generators.models import Generator, GeneratorVersion, Sample


@admin.register(Generator)
class GeneratorAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name", "description"]


@admin.register(GeneratorVersion)
class GeneratorVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "generator", "label", "kind", "parent", "model_path", "training_job", "created_at"]
    list_filter = ["kind", "generator"]
    search_fields = ["label", "generator__name", "model_path"]
    raw_id_fields = ["parent", "training_job", "snapshot", "reward_model"]


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "version",
        "prompt",
        "seed",
        "token_count",
        "latency_seconds",
        "short_text",
        "created_at",
    ]
    list_filter = ["version__generator", "version"]
    search_fields = ["text"]
    raw_id_fields = ["prompt", "version", "job"]
    readonly_fields = ["text_hash"]

    @admin.display(description="text")
    def short_text(self, sample: Sample) -> str:
        return sample.text[:80]
