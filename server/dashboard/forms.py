"""The dashboard's action forms: the shape of each request. The rules live in the services, which
the views call with ``form.arguments()``; a refusal comes back as an ApplicationError message."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.forms.fields import InvalidJSONInput

from server.core.untrusted_json import UntrustedJSONError, json_loads_untrusted
from server.generators.models import KINDS_WITHOUT_WEIGHTS, GeneratorVersion, VersionKind
from server.studies.models import PairSelection, Study
from server.training.exports import EXPORT_KINDS
from server.training.models import PreferenceSnapshot, RewardModel


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: GeneratorVersion) -> str:
        return f"{obj} ({obj.kind})"


class VersionsChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: GeneratorVersion) -> str:
        return f"{obj} ({obj.kind})"


class SnapshotChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: PreferenceSnapshot) -> str:
        return (
            f"#{obj.id} · {obj.train_count} train / {obj.validation_count} validation · "
            f"{obj.created_at:%Y-%m-%d %H:%M}"
        )


class RewardModelChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: RewardModel) -> str:
        accuracy = "–" if obj.validation_accuracy is None else f"{obj.validation_accuracy:.1%}"
        return f"RM {obj.id} · snapshot #{obj.snapshot_id} · accuracy {accuracy}"


class OptionalJSONField(forms.JSONField):
    """An optional JSON field whose empty widget is empty (Django's shows "null"), read as
    untrusted JSON: Django's own field lets deep nesting crash the request and lets through
    NaN, NUL characters and lone surrogates that the database then fails on."""

    def to_python(self, value: Any) -> Any:
        if self.disabled or not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        try:
            return json_loads_untrusted(value)
        except UntrustedJSONError as error:
            where = f"{error.path} " if error.path else ""
            raise forms.ValidationError(
                f"Enter valid JSON: {where}{error.message}.", code="invalid"
            ) from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled or not isinstance(data, str):
            return super().bound_data(data, initial)
        try:
            return json_loads_untrusted(data)
        except UntrustedJSONError:
            return InvalidJSONInput(data)  # shown again as typed

    def prepare_value(self, value: Any) -> str:
        return "" if value is None else super().prepare_value(value)


def _json_object(value: Any, name: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise forms.ValidationError(f'{name} must be a JSON object, like {{"temperature": 0.8}}.')
    return value


class StudyForm(forms.Form):
    """A form whose choices come from one study."""

    def __init__(self, *args: Any, study: Study, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.study = study
        self.setup()

    def setup(self) -> None:
        pass

    def arguments(self) -> dict[str, Any]:
        return {}


class GenerateForm(StudyForm):
    versions = VersionsChoiceField(queryset=GeneratorVersion.objects.none(), help_text="Model versions only.")
    split = forms.ChoiceField(
        choices=[("train", "train"), ("holdout", "holdout"), ("all", "all")], initial="train"
    )
    samples_per_prompt = forms.IntegerField(min_value=1, max_value=64, initial=2)
    decoding = OptionalJSONField(required=False, help_text='e.g. {"temperature": 0.9, "max_new_tokens": 60}')

    def setup(self) -> None:
        self.fields["versions"].queryset = (
            self.study.versions.exclude(kind=VersionKind.EXTERNAL).select_related("generator").order_by("id")
        )

    def clean_decoding(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data.get("decoding"), "Decoding")

    def arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "version_ids": [version.id for version in data["versions"]],
            "split": data["split"],
            "samples_per_prompt": data["samples_per_prompt"],
            "decoding": data["decoding"],
        }


class PairSelectionForm(StudyForm):
    strategy = forms.ChoiceField(choices=PairSelection.choices)
    pairs_per_prompt = forms.IntegerField(min_value=1, max_value=100, initial=2)
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)

    def setup(self) -> None:
        self.fields["strategy"].initial = self.study.pair_selection

    def arguments(self) -> dict[str, Any]:
        return dict(self.cleaned_data)


class RewardModelForm(StudyForm):
    snapshot = SnapshotChoiceField(
        queryset=PreferenceSnapshot.objects.none(), required=False, empty_label="latest snapshot"
    )
    config = OptionalJSONField(
        required=False,
        help_text='e.g. {"ensemble_size": 3, "epochs": 2}, or on a GPU {"kind": "sequence_classification", '
        '"backbone_path": "/models/base", "lora": {"rank": 16, "alpha": 32}, "dtype": "bfloat16", '
        '"gradient_checkpointing": true, "max_length": 1024}. Each option is checked by type and range.',
    )

    def setup(self) -> None:
        self.fields["snapshot"].queryset = PreferenceSnapshot.objects.filter(study=self.study).order_by(
            "-created_at"
        )

    def clean_config(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data.get("config"), "Config")

    def arguments(self) -> dict[str, Any]:
        snapshot = self.cleaned_data["snapshot"]
        return {"snapshot_id": snapshot.id if snapshot else None, "config": self.cleaned_data["config"]}


class PolicyForm(StudyForm):
    parent_version = VersionChoiceField(
        queryset=GeneratorVersion.objects.none(), required=False, empty_label="best-rated model version"
    )
    method = forms.ChoiceField(
        choices=[
            ("dpo", "DPO (offline, on a snapshot)"),
            ("rloo", "RLOO (online, reward model)"),
            ("grpo", "GRPO (online, reward model)"),
        ]
    )
    snapshot = SnapshotChoiceField(
        queryset=PreferenceSnapshot.objects.none(), required=False, empty_label="latest snapshot"
    )
    reward_model = RewardModelChoiceField(
        queryset=RewardModel.objects.none(), required=False, empty_label="latest reward model"
    )
    config = OptionalJSONField(
        required=False,
        help_text=(
            'e.g. {"beta": 0.1, "epochs": 1, "lora_rank": 16, "dtype": "auto"}. Shared: learning_rate, '
            "lr_scheduler, warmup_ratio, epochs, max_steps, per_device_batch_size, "
            "gradient_accumulation_steps, max_prompt_length, dtype, gradient_checkpointing, lora, "
            "lora_rank, lora_alpha, lora_dropout, lora_target_modules, qlora_4bit, merge_adapter, seed, "
            "checkpoint_every. DPO: beta, loss_type, label_smoothing, max_length. RLOO / GRPO: beta, "
            "num_generations, max_completion_length, temperature, reward_std_penalty."
        ),
    )

    def setup(self) -> None:
        self.fields["parent_version"].queryset = (
            self.study.versions.exclude(kind__in=KINDS_WITHOUT_WEIGHTS)
            .select_related("generator")
            .order_by("id")
        )
        self.fields["method"].initial = self.study.auto_train_policy
        self.fields["snapshot"].queryset = PreferenceSnapshot.objects.filter(study=self.study).order_by(
            "-created_at"
        )
        self.fields["reward_model"].queryset = RewardModel.objects.filter(study=self.study).order_by(
            "-created_at"
        )

    def clean_config(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data.get("config"), "Config")

    def arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "parent_version_id": data["parent_version"].id if data["parent_version"] else None,
            "method": data["method"],
            "snapshot_id": data["snapshot"].id if data["snapshot"] else None,
            "reward_model_id": data["reward_model"].id if data["reward_model"] else None,
            "config": data["config"],
        }


class EvaluationForm(StudyForm):
    version = VersionChoiceField(queryset=GeneratorVersion.objects.none())

    def setup(self) -> None:
        self.fields["version"].queryset = self.study.versions.select_related("generator").order_by("id")

    def arguments(self) -> dict[str, Any]:
        return {"version_id": self.cleaned_data["version"].id}


class LeaderboardForm(StudyForm):
    """No fields: the recompute uses the study's judgments and the default bootstrap."""


EXPORT_LABELS = {
    "preferences": "Preference dataset (JSONL + Hugging Face datasets)",
    "leaderboard": "Leaderboard (CSV)",
    "evaluation_report": "Evaluation report (HTML)",
}


class ExportForm(StudyForm):
    kind = forms.ChoiceField(choices=[(kind, EXPORT_LABELS[kind]) for kind in EXPORT_KINDS])
    snapshot = SnapshotChoiceField(
        queryset=PreferenceSnapshot.objects.none(),
        required=False,
        empty_label="latest snapshot (or freeze a new one)",
        help_text="Preferences only.",
    )

    def setup(self) -> None:
        self.fields["snapshot"].queryset = PreferenceSnapshot.objects.filter(study=self.study).order_by(
            "-created_at"
        )

    def arguments(self) -> dict[str, Any]:
        snapshot = self.cleaned_data["snapshot"]
        kind = self.cleaned_data["kind"]
        return {"kind": kind, "snapshot_id": snapshot.id if snapshot and kind == "preferences" else None}


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL or CSV, UTF-8; fields prompt, text, generator (+ version, split, metadata)."
    )
    format = forms.ChoiceField(
        choices=[("", "from the file name"), ("jsonl", "JSONL"), ("csv", "CSV")], required=False
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > settings.LOVELACE_MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; "
                f"the limit is {settings.LOVELACE_MAX_UPLOAD_BYTES:,} bytes."
            )
        return upload


class EndpointVersionForm(forms.Form):
    """Register a version that samples through an OpenAI-compatible endpoint. The API key is not
    asked for: only the name of the workers' environment variable that holds it."""

    prefix = "endpoint"  # the page has other forms: distinct field names and ids

    generator = forms.CharField(max_length=200)
    label = forms.CharField(max_length=120)
    base_url = forms.CharField(
        max_length=500,
        label="Base URL",
        help_text="e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1",
    )
    model = forms.CharField(max_length=200, help_text="The name the server serves the model under.")
    mode = forms.ChoiceField(choices=[("completions", "completions (base models)"), ("chat", "chat")])
    api_key_env = forms.CharField(
        max_length=128,
        required=False,
        label="API key variable",
        help_text="The NAME of the workers' environment variable holding the key, e.g. OPENAI_API_KEY; "
        "empty when the server needs none.",
    )
    concurrency = forms.IntegerField(min_value=1, max_value=256, initial=4)
    timeout_seconds = forms.FloatField(min_value=0.1, max_value=3600, initial=60, label="Timeout (s)")
    max_retries = forms.IntegerField(min_value=0, max_value=20, initial=4)
    decoding = OptionalJSONField(required=False, help_text='e.g. {"temperature": 0.9, "max_new_tokens": 60}')

    def clean_decoding(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data.get("decoding"), "Decoding")

    def arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "generator_name": data["generator"],
            "label": data["label"],
            "kind": VersionKind.ENDPOINT,
            "decoding": data["decoding"],
            "endpoint": {
                name: data[name]
                for name in (
                    "base_url",
                    "model",
                    "mode",
                    "api_key_env",
                    "concurrency",
                    "timeout_seconds",
                    "max_retries",
                )
            },
        }


class GoldImportForm(ImportForm):
    prefix = "gold"  # the page has the sample import's form too: distinct field names and ids

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields[
            "file"
        ].help_text = "JSONL or CSV, UTF-8; fields prompt, text_a, text_b, expected (A, B or tie) (+ split)."


class PauseForm(forms.Form):
    reason = forms.CharField(max_length=300, required=False)
