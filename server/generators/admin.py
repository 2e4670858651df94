from __future__ import annotations

from django.contrib import admin

from server.generators.models import Generator, GeneratorVersion, ImageAsset, Sample


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
    raw_id_fields = ["prompt", "version", "job", "image"]
    readonly_fields = ["text_hash"]

    @admin.display(description="text")
    def short_text(self, sample: Sample) -> str:
        return f"[image {sample.image_id}]" if sample.image_id else sample.text[:80]


@admin.register(ImageAsset)
class ImageAssetAdmin(admin.ModelAdmin):
    """Read-only: an asset is named by its bytes' hash, so editing a row would break it."""

    list_display = ["id", "sha256", "format", "width", "height", "byte_size", "created_at"]
    list_filter = ["format"]
    search_fields = ["sha256"]

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
