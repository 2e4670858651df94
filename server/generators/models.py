from __future__ import annotations

import hashlib
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q


class Generator(models.Model):
    """A lineage of models (or an external system) under one name."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VersionKind(models.TextChoices):
    BASE = "base"  # a Hugging Face hub id or a local model directory
    EXTERNAL = "external"  # samples are imported; no weights here
    TRAINED = "trained"  # a child of another version, produced by a training run
    ENDPOINT = "endpoint"  # an OpenAI-compatible HTTP endpoint; no weights here


# Kinds whose samples are not drawn from weights this service loads.
KINDS_WITHOUT_WEIGHTS = (VersionKind.EXTERNAL, VersionKind.ENDPOINT)


class GeneratorVersion(models.Model):
    generator = models.ForeignKey(Generator, on_delete=models.CASCADE, related_name="versions")
    label = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=VersionKind.choices)
    model_path = models.CharField(max_length=500, blank=True, help_text="Hub id or local directory.")
    model_revision = models.CharField(
        max_length=200,
        blank=True,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
                "A revision is a branch, tag or commit name (letters, digits, '.', '_', '-', '/').",
            )
        ],
        help_text="A hub model's branch, tag or commit; empty = its default branch.",
    )
    decoding = models.JSONField(default=dict, blank=True, help_text="Default decoding parameters.")
    # An endpoint version's settings (see workers.ml.endpoint_client.EndpointConfig): base URL,
    # model name, mode, the *name* of the environment variable holding the API key (never the
    # key), concurrency, timeout, retries. Empty for every other kind.
    endpoint = models.JSONField(default=dict, blank=True)
    # Reference corpus for novelty: a locally built model's corpus is its training corpus.
    reference_corpus_path = models.CharField(max_length=500, blank=True)

    # Lineage of trained versions
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    training_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    snapshot = models.ForeignKey(
        "training.PreferenceSnapshot", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reward_model = models.ForeignKey(
        "training.RewardModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    training_config = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["generator__name", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["generator", "label"], name="version_label_unique_per_generator"),
            models.CheckConstraint(condition=Q(kind__in=VersionKind.values), name="version_kind_valid"),
            models.CheckConstraint(
                condition=~Q(kind=VersionKind.TRAINED)
                | (Q(parent__isnull=False) & Q(training_job__isnull=False)),
                name="trained_version_has_lineage",
            ),
            models.CheckConstraint(
                condition=Q(kind=VersionKind.TRAINED) | Q(parent__isnull=True),
                name="only_trained_versions_have_parent",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=KINDS_WITHOUT_WEIGHTS) | Q(model_path=""),
                name="version_without_weights_has_no_model_path",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=KINDS_WITHOUT_WEIGHTS) | ~Q(model_path=""),
                name="model_version_has_weights",
            ),
            models.CheckConstraint(
                condition=(Q(kind=VersionKind.ENDPOINT) & Q(endpoint__has_key="base_url"))
                | (~Q(kind=VersionKind.ENDPOINT) & Q(endpoint={})),
                name="endpoint_settings_only_on_endpoint_versions",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.generator.name}/{self.label}"

    def clean(self) -> None:
        if self.kind == VersionKind.TRAINED and self.parent_id is None:
            raise ValidationError({"parent": "A trained version needs its parent version."})
        if self.kind in KINDS_WITHOUT_WEIGHTS and self.model_path:
            raise ValidationError({"model_path": f"An {self.kind} version has no weights here."})
        if self.kind not in KINDS_WITHOUT_WEIGHTS and not self.model_path:
            raise ValidationError({"model_path": "Give a hub id or a local model directory."})
        if self.model_revision and Path(self.model_path).is_absolute():
            raise ValidationError({"model_revision": "A local model directory has no revision to pin."})
        if self.kind == VersionKind.ENDPOINT and not (self.endpoint or {}).get("base_url"):
            raise ValidationError({"endpoint": "An endpoint version needs its endpoint settings."})
        if self.kind != VersionKind.ENDPOINT and self.endpoint:
            raise ValidationError({"endpoint": "Only an endpoint version has endpoint settings."})


def sample_text_normalised(text: str) -> str:
    """A sample's text as it is stored, whatever made it (generation, an endpoint, an import).

    Surrounding whitespace goes: a generated continuation starts with the space that followed its
    prompt, typed and imported texts do not, and such a margin would tell sources apart. Line ends
    become ``\\n``; NUL, which PostgreSQL refuses in text and a byte-level tokenizer can emit,
    becomes U+FFFD so that the rest of the sample is kept.
    """
    return text.replace("\r\n", "\n").replace("\x00", "\ufffd").strip()


def sample_text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ImageFormat(models.TextChoices):
    PNG = "png", "PNG"
    JPEG = "jpeg", "JPEG"


class ImageAsset(models.Model):
    """One image, stored once by the SHA-256 of its re-encoded bytes (see ``server.generators.images``).

    The bytes live in the ``images`` storage (``settings.STORAGES``) under ``storage_name``, which
    is derived from the hash alone: no uploaded file name, no generator, nothing a rater could read
    a source from. Rows are only ever added; two samples with the same pixels share one asset.
    """

    sha256 = models.CharField(max_length=64, unique=True)
    storage_name = models.CharField(max_length=200)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8, choices=ImageFormat.choices)
    byte_size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(format__in=ImageFormat.values), name="image_format_valid"),
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="image_size_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.format} {self.width}x{self.height} {self.sha256[:12]}"

    @property
    def content_type(self) -> str:
        return "image/png" if self.format == ImageFormat.PNG else "image/jpeg"


class Sample(models.Model):
    """One artifact with full provenance."""

    prompt = models.ForeignKey("studies.Prompt", on_delete=models.CASCADE, related_name="samples")
    version = models.ForeignKey(GeneratorVersion, on_delete=models.CASCADE, related_name="samples")
    # A text sample has its text (possibly empty: a model can generate nothing); an image sample
    # has ``image`` and an empty text.
    text = models.TextField(blank=True)
    image = models.ForeignKey(
        ImageAsset, null=True, blank=True, on_delete=models.PROTECT, related_name="samples"
    )
    # The content's hash: the text's SHA-256, or for an image sample its image's (so that two
    # images of one prompt and version are two samples, and the same image imported twice is one).
    text_hash = models.CharField(max_length=64, editable=False)
    seed = models.BigIntegerField(null=True, blank=True)  # None for imported samples
    decoding = models.JSONField(default=dict, blank=True)
    token_count = models.PositiveIntegerField(null=True, blank=True)
    logprob_sum = models.FloatField(null=True, blank=True)
    latency_seconds = models.FloatField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["version", "prompt"])]
        constraints = [
            # A re-run of a crashed generate job adds nothing twice.
            models.UniqueConstraint(fields=["version", "prompt", "seed"], name="sample_unique_seed"),
            # An imported sample (no seed) is a duplicate when its text repeats.
            models.UniqueConstraint(
                fields=["version", "prompt", "text_hash"],
                condition=Q(seed__isnull=True),
                name="sample_unique_imported_text",
            ),
            models.CheckConstraint(
                condition=Q(latency_seconds__gte=0) | Q(latency_seconds__isnull=True),
                name="sample_latency_non_negative",
            ),
            # Text or image, never both.
            models.CheckConstraint(
                condition=Q(image__isnull=True) | Q(text=""), name="sample_text_xor_image"
            ),
        ]

    def __str__(self) -> str:
        return f"sample {self.pk} of {self.version_id} for prompt {self.prompt_id}"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.text = sample_text_normalised(self.text)
        if self.image_id is not None:
            if self.text:
                raise ValidationError({"text": "An image sample has no text."})
            self.text_hash = self.image.sha256
        else:
            self.text_hash = sample_text_hash(self.text)
        super().save(*args, **kwargs)
