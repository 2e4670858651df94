"""The dashboard's action forms: the shape of each request. The rules live in the services, which
the views call with ``form.arguments()``; a refusal comes back as an ApplicationError message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.forms.fields import InvalidJSONInput

from server.core.untrusted_json import UntrustedJSONError, json_loads_untrusted
from server.dashboard.training_settings import POLICY_GROUPS, REWARD_MODEL_GROUPS, Group
from server.generators.models import KINDS_WITHOUT_WEIGHTS, GeneratorVersion, VersionKind
from server.judges.models import MachineJudge
from server.judges.services import DEFAULT_JUDGING_PROMPT
from server.studies.models import BootstrapClusters, PairSelection, Study
from server.studies.selectors import study_criteria
from server.training.exports import EXPORT_KINDS
from server.training.models import PreferenceSnapshot, RewardModel
from server.training.services import (
    IMAGE_POLICY_METHOD,
    IMAGE_POLICY_OPTIONS,
    IMAGE_REWARD_OPTIONS,
    SEED,
    Between,
    Option,
    Whole,
)


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


@dataclass(frozen=True)
class Section:
    """Fields the page shows together: under a title (a fieldset) or, untitled, as a plain list.
    ``when`` (space-separated values of the form's switch field) hides a section or a field, in
    the page's script, while it does not apply; empty = always shown."""

    title: str
    when: str
    fields: list[tuple[forms.BoundField, str]]


class StudyForm(forms.Form):
    """A form whose choices come from one study."""

    # Whether the page lays the form out across the whole row (long forms of typed settings).
    wide = False
    # The field whose value decides which sections apply ("" = all always do).
    switch = ""

    def __init__(self, *args: Any, study: Study, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.study = study
        self.setup()

    def setup(self) -> None:
        pass

    def arguments(self) -> dict[str, Any]:
        return {}

    def sections(self) -> list[Section]:
        return [Section("", "", [(field, "") for field in self])]

    def field_of_error(self, service_field: str | None) -> str | None:
        """The form field that an ApplicationError's ``extra["field"]`` (the service's argument,
        like ``snapshot_id`` or ``version_ids``) belongs to; None puts it above the form."""
        if not service_field:
            return None
        candidates = (
            service_field,
            service_field.removesuffix("_id"),
            service_field.removesuffix("_ids") + "s",
            service_field.split(".")[0],  # "decoding.temperature": the decoding field
        )
        return next((name for name in candidates if name in self.fields), None)


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


class SnapshotForm(StudyForm):
    validation_fraction = forms.FloatField(
        min_value=0.0,
        max_value=0.9,
        initial=0.2,
        help_text="Share of prompts held out to validate on (0 = none).",
    )

    def setup(self) -> None:
        # A study with several questions snapshots the answers to one of them (a reward model
        # trained on it models that question).
        criteria = study_criteria(study=self.study)
        if len(criteria) > 1:
            self.fields["criterion"] = forms.ChoiceField(
                choices=[(c.key, c.question) for c in criteria],
                initial=criteria[0].key,
                help_text="Whose answers the pairs carry.",
            )

    def arguments(self) -> dict[str, Any]:
        arguments = {"validation_fraction": self.cleaned_data["validation_fraction"]}
        if "criterion" in self.cleaned_data:
            arguments["criterion"] = self.cleaned_data["criterion"]
        return arguments


class TrainingForm(StudyForm):
    """A training job's form: its own choices, then one typed field per option of the service's
    declarations (grouped, pre-filled with the trainer's defaults), then the advanced JSON.

    The typed values of the settings that apply (to the chosen method or kind) and the advanced
    JSON are merged, JSON last, into one ``config`` that the service checks once; its error names
    an option, and ``field_of_error`` puts it next to that option's field."""

    wide = True
    groups: tuple[Group, ...] = ()
    # Fields of the form's own (not settings), and the switch values each applies to ("" = all).
    own_fields: tuple[str, ...] = ()
    field_when: dict[str, str] = {}
    config = OptionalJSONField(
        required=False,
        label="Advanced options (JSON)",
        help_text="Options by their API names, for what the fields above do not say; an option given "
        'here replaces its field. e.g. {"seed": 7}',
    )

    def setup(self) -> None:
        advanced = self.fields.pop("config")
        for group in self.groups:
            for setting in group.settings:
                self.fields[setting.name] = setting.form_field()
        self.fields["config"] = advanced  # last on the page

    def clean_config(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data.get("config"), "Advanced options")

    def chosen(self) -> str:
        """The value of the switch (method or kind) that decides which settings apply."""
        return str(self.cleaned_data.get(self.switch) or "")

    def typed_options(self) -> dict[str, Any]:
        """The options of the settings that apply, as typed; blank fields are left out."""
        chosen = self.chosen()
        options: dict[str, Any] = {}
        for group in self.groups:
            for setting in group.settings:
                value = self.cleaned_data.get(setting.name)
                if chosen in setting.when and value is not None:
                    options[setting.option] = value
        return options

    def merged_config(self) -> dict[str, Any]:
        return {**self.typed_options(), **self.cleaned_data["config"]}

    def sections(self) -> list[Section]:
        own = [(self[name], self.field_when.get(name, "")) for name in self.fields if name in self.own_fields]
        sections = [Section("", "", own)]
        everything = {value for group in self.groups for value in group.when}
        for group in self.groups:
            when = "" if set(group.when) == everything else " ".join(group.when)
            sections.append(
                Section(
                    group.title,
                    when,
                    [
                        (self[setting.name], "" if setting.when == group.when else " ".join(setting.when))
                        for setting in group.settings
                    ],
                )
            )
        sections.append(Section("Advanced", "", [(self["config"], "")]))
        return sections

    def field_of_error(self, service_field: str | None) -> str | None:
        # "config.epochs" or "config.lora.rank": the option's field, unless the advanced JSON gave it.
        if service_field and service_field.startswith("config."):
            option = service_field.removeprefix("config.")
            advanced = self.cleaned_data.get("config") or {}
            if option.split(".")[0] in advanced:
                return "config"
            chosen = self.chosen()
            for group in self.groups:
                for setting in group.settings:
                    if setting.option == option and chosen in setting.when:
                        return setting.name
            return None
        if service_field == "config":
            return None  # options that do not fit together: the message names them
        return super().field_of_error(service_field)


class RewardModelForm(TrainingForm):
    switch = "kind"
    groups = REWARD_MODEL_GROUPS
    own_fields = ("snapshot",)
    snapshot = SnapshotChoiceField(
        queryset=PreferenceSnapshot.objects.none(), required=False, empty_label="latest snapshot"
    )

    def setup(self) -> None:
        super().setup()
        self.fields["snapshot"].queryset = PreferenceSnapshot.objects.filter(study=self.study).order_by(
            "-created_at"
        )

    def chosen(self) -> str:
        # The kind is an option itself; the advanced JSON may set it too.
        advanced = self.cleaned_data.get("config") or {}
        return str(advanced.get("kind") or self.cleaned_data.get("kind") or "embedding_heads")

    def typed_options(self) -> dict[str, Any]:
        """As typed, with the LoRA settings gathered into the ``lora`` object the service takes
        (left out when LoRA is off: full fine-tuning, the trainer's default)."""
        options = super().typed_options()
        adapters = {
            key.removeprefix("lora."): options.pop(key) for key in list(options) if key.startswith("lora.")
        }
        if options.pop("lora", False):
            options["lora"] = adapters
        return options

    def arguments(self) -> dict[str, Any]:
        snapshot = self.cleaned_data["snapshot"]
        return {"snapshot_id": snapshot.id if snapshot else None, "config": self.merged_config()}


class PolicyForm(TrainingForm):
    switch = "method"
    groups = POLICY_GROUPS
    own_fields = ("parent_version", "method", "snapshot", "reward_model")
    field_when = {"snapshot": "dpo", "reward_model": "rloo grpo"}
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

    def setup(self) -> None:
        super().setup()
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

    def typed_options(self) -> dict[str, Any]:
        """As typed; without LoRA, the adapters' settings are left out (they would be ignored)."""
        options = super().typed_options()
        if options.get("lora") is False:
            options = {key: value for key, value in options.items() if not key.startswith("lora_")}
        return options

    def arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "parent_version_id": data["parent_version"].id if data["parent_version"] else None,
            "method": data["method"],
            "snapshot_id": data["snapshot"].id if data["snapshot"] else None,
            "reward_model_id": data["reward_model"].id if data["reward_model"] else None,
            "config": self.merged_config(),
        }


class EvaluationForm(StudyForm):
    version = VersionChoiceField(queryset=GeneratorVersion.objects.none())

    def setup(self) -> None:
        self.fields["version"].queryset = self.study.versions.select_related("generator").order_by("id")

    def arguments(self) -> dict[str, Any]:
        return {"version_id": self.cleaned_data["version"].id}


class LeaderboardForm(StudyForm):
    """What the bootstrap resamples whole; the study's setting (prompts unless changed) preselected."""

    bootstrap_clusters = forms.ChoiceField(
        choices=BootstrapClusters.choices,
        label="Bootstrap resamples",
        help_text="Each prompt is judged by several raters, whose votes are not independent: "
        "resample whole prompts (raters: whole raters; crossed: both, conservative).",
    )

    def setup(self) -> None:
        self.fields["bootstrap_clusters"].initial = self.study.bootstrap_clusters

    def arguments(self) -> dict[str, Any]:
        return {"bootstrap_clusters": self.cleaned_data["bootstrap_clusters"]}


EXPORT_LABELS = {
    "preferences": "Preference dataset (JSONL + Hugging Face datasets)",
    "judgments": "Every judgment with every field (JSONL + Parquet)",
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
    hub_repo = forms.CharField(
        required=False,
        max_length=200,
        label="Push to the Hugging Face Hub",
        help_text="Preferences only: a dataset repository as owner/name, pushed private; needs HF_TOKEN set "
        "on the server. Leave empty to keep the files here only.",
    )

    def setup(self) -> None:
        self.fields["snapshot"].queryset = PreferenceSnapshot.objects.filter(study=self.study).order_by(
            "-created_at"
        )

    def arguments(self) -> dict[str, Any]:
        snapshot = self.cleaned_data["snapshot"]
        kind = self.cleaned_data["kind"]
        return {
            "kind": kind,
            "snapshot_id": snapshot.id if snapshot and kind == "preferences" else None,
            "hub_repo": self.cleaned_data["hub_repo"].strip(),
        }


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL or CSV, UTF-8; fields prompt, text, generator (+ version, split, metadata). "
        "Image study: a .zip of PNG/JPEG files with manifest.jsonl or manifest.csv."
    )
    format = forms.ChoiceField(
        choices=[("", "from the file name"), ("jsonl", "JSONL"), ("csv", "CSV"), ("zip", "Zip of images")],
        required=False,
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        archive = (upload.name or "").lower().endswith(".zip") or self.data.get(
            self.add_prefix("format")
        ) == "zip"
        limit = settings.LOVELACE_IMAGE_ARCHIVE_MAX_BYTES if archive else settings.LOVELACE_MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise forms.ValidationError(f"The file is {upload.size:,} bytes; the limit is {limit:,} bytes.")
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
        self.fields["file"].help_text = "JSONL or CSV, UTF-8, one pair a line with the fields named above."
        self.fields["format"].choices = [("", "from the file name"), ("jsonl", "JSONL"), ("csv", "CSV")]


class PauseForm(forms.Form):
    reason = forms.CharField(max_length=300, required=False)


class MachineJudgeChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: MachineJudge) -> str:
        return f"{obj.name} ({obj.get_kind_display()})"


class MachineJudgeForm(StudyForm):
    judge = MachineJudgeChoiceField(
        queryset=MachineJudge.objects.none(), required=False, empty_label="a new judge (the fields below)"
    )
    name = forms.CharField(
        required=False, max_length=120, help_text="A new judge's name, e.g. “RM #3” or “gpt-judge”."
    )
    kind = forms.ChoiceField(
        required=False,
        choices=[("", "—"), ("reward_model", "the study's reward model"), ("endpoint", "an endpoint model")],
        help_text="A new judge's kind.",
    )
    reward_model = RewardModelChoiceField(
        queryset=RewardModel.objects.none(), required=False, empty_label="latest reward model"
    )
    endpoint = OptionalJSONField(
        required=False,
        help_text='Endpoint judges: {"base_url": "http://localhost:8000/v1", "model": "…", "mode": "chat", '
        '"api_key_env": "JUDGE_API_KEY"} — the key stays in that variable on the workers.',
    )
    judging_prompt = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        initial=DEFAULT_JUDGING_PROMPT,
        help_text="Endpoint judges: {prompt}, {first} and {second} are required, {question} is the study's "
        "question; the judge must reply 1, 2 or tie. Each pair is asked in both orders.",
    )
    scope = forms.ChoiceField(
        choices=[("judged_by_people", "pairs people judged"), ("all", "all regular pairs")],
        help_text="Pairs the judge has judged before are skipped.",
    )

    def clean_endpoint(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data.get("endpoint"), "endpoint")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("judge") is None:
            if not (data.get("name") or "").strip():
                self.add_error("name", "Name the new judge, or choose an existing one above.")
            if not data.get("kind"):
                self.add_error("kind", "Choose what the new judge is.")
        return data

    def setup(self) -> None:
        self.fields["judge"].queryset = MachineJudge.objects.filter(study=self.study).order_by("id")
        self.fields["reward_model"].queryset = RewardModel.objects.filter(study=self.study).order_by(
            "-created_at"
        )

    def arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        if data["judge"] is not None:
            return {"judge_id": data["judge"].id, "scope": data["scope"]}
        arguments: dict[str, Any] = {
            "judge_id": None,
            "scope": data["scope"],
            "name": data["name"],
            "kind": data["kind"],
        }
        if data["kind"] == "reward_model":
            arguments["reward_model_id"] = data["reward_model"].id if data["reward_model"] else None
        else:
            arguments["endpoint"] = data["endpoint"]
            arguments["judging_prompt"] = data["judging_prompt"]
        return arguments


# --- Image studies ----------------------------------------------------------------------------------
# An image study's generators are small image networks (server.generators.services' image builds,
# server.training's image reward model and image policy): their forms offer their own settings,
# typed and range-checked here. The image reward model's and policy's ranges are the training
# service's declarations, which the API checks too.


def _whole(label: str, low: int, high: int, help_text: str = "") -> forms.IntegerField:
    return forms.IntegerField(
        label=label, min_value=low, max_value=high, required=False, help_text=help_text or f"{low}–{high:,}."
    )


def _number(label: str, low: float, high: float, help_text: str = "") -> forms.FloatField:
    return forms.FloatField(
        label=label,
        min_value=low,
        max_value=high,
        required=False,
        help_text=help_text or f"{low:g}–{high:g}.",
    )


def _declared(label: str, declaration: Option, description: str = "") -> forms.Field:
    """A field with the range of a service declaration; its help ends with the range."""
    if isinstance(declaration, Whole):
        whole_range = f"{declaration.low:,}–{declaration.high:,}."
        return _whole(label, declaration.low, declaration.high, f"{description} {whole_range}".lstrip())
    if isinstance(declaration, Between):
        number_range = f"{declaration.low:g}–{declaration.high:g}."
        return _number(label, declaration.low, declaration.high, f"{description} {number_range}".lstrip())
    raise TypeError(f"no number field for {declaration!r}")


class ImageTrainingForm(StudyForm):
    """An image job's form: its own choices, typed settings (blank: the trainer's default) named
    as the options, and the advanced JSON, merged (JSON last) into the job's ``config``."""

    wide = True
    own_fields: tuple[str, ...] = ()
    settings_title = "Settings"
    config = OptionalJSONField(
        required=False,
        label="Advanced options (JSON)",
        help_text='Options by their API names; an option given here replaces its field. e.g. {"seed": 7}',
    )

    def setup(self) -> None:
        # The advanced JSON last on the page.
        self.fields["config"] = self.fields.pop("config")

    def clean_config(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data.get("config"), "Advanced options")

    def setting_names(self) -> list[str]:
        return [name for name in self.fields if name not in self.own_fields and name != "config"]

    def merged_config(self) -> dict[str, Any]:
        typed = {
            name: self.cleaned_data[name]
            for name in self.setting_names()
            if self.cleaned_data.get(name) is not None
        }
        return {**typed, **self.cleaned_data["config"]}

    def sections(self) -> list[Section]:
        return [
            Section("", "", [(self[name], "") for name in self.own_fields]),
            Section(self.settings_title, "", [(self[name], "") for name in self.setting_names()]),
            Section("Advanced", "", [(self["config"], "")]),
        ]

    def field_of_error(self, service_field: str | None) -> str | None:
        # "config.epochs": the epochs field, unless the advanced JSON gave it (or it has none).
        if service_field and service_field.startswith("config."):
            option = service_field.removeprefix("config.")
            if option in (self.cleaned_data.get("config") or {}) or option not in self.setting_names():
                return "config"
            return option
        if service_field == "config":
            return "config"
        return super().field_of_error(service_field)


class ImageBuildForm(ImageTrainingForm):
    own_fields = ("architecture", "generator", "label", "size")
    settings_title = "Training"
    architecture = forms.ChoiceField(
        choices=[("vae", "VAE (conditional variational autoencoder)"), ("dcgan", "DCGAN (conditional GAN)")]
    )
    generator = forms.CharField(max_length=200, help_text="Name of the generator to register.")
    label = forms.CharField(max_length=120, initial="base")
    size = forms.ChoiceField(
        choices=[("demo", "demo (minutes on a CPU)"), ("tiny", "tiny (seconds; a smoke test)")],
        initial="demo",
    )
    steps = _whole("Steps", 1, 1_000_000)
    batch_size = _whole("Batch size", 1, 4096)
    learning_rate = _number("Learning rate", 1e-7, 1.0)
    latent_dim = _whole("Latent dimensions", 1, 1024)
    width = _whole("Width", 1, 1024, "Channels of the first layer; 1–1,024.")
    images_per_class = _whole("Images per class", 1, 100_000, "Size of the rendered training set.")
    seed = _declared("Seed", SEED)

    def arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "architecture": data["architecture"],
            "generator_name": data["generator"],
            "label": data["label"],
            "size": data["size"],
            "config": self.merged_config(),
        }

    def field_of_error(self, service_field: str | None) -> str | None:
        if service_field in ("output_dir", "study"):
            return None
        return super().field_of_error(service_field)


class ImageRewardModelForm(ImageTrainingForm):
    own_fields = ("snapshot",)
    snapshot = SnapshotChoiceField(
        queryset=PreferenceSnapshot.objects.none(), required=False, empty_label="latest snapshot"
    )
    ensemble_size = _declared(
        "Ensemble size",
        IMAGE_REWARD_OPTIONS["ensemble_size"],
        "Members, whose disagreement is the uncertainty;",
    )
    epochs = _declared("Epochs", IMAGE_REWARD_OPTIONS["epochs"])
    batch_size = _declared("Batch size", IMAGE_REWARD_OPTIONS["batch_size"])
    learning_rate = _declared("Learning rate", IMAGE_REWARD_OPTIONS["learning_rate"])
    weight_decay = _declared("Weight decay", IMAGE_REWARD_OPTIONS["weight_decay"])
    width = _declared("Width", IMAGE_REWARD_OPTIONS["width"], "Channels of the CNN's first layer;")
    bootstrap = forms.NullBooleanField(
        required=False,
        label="Bootstrap",
        help_text="Each member on a resample of the pairs (blank: the trainer's default).",
        widget=forms.Select(choices=[("", "default"), ("true", "yes"), ("false", "no")]),
    )
    seed = _declared("Seed", IMAGE_REWARD_OPTIONS["seed"])

    def setup(self) -> None:
        super().setup()
        self.fields["snapshot"].queryset = PreferenceSnapshot.objects.filter(study=self.study).order_by(
            "-created_at"
        )

    def arguments(self) -> dict[str, Any]:
        snapshot = self.cleaned_data["snapshot"]
        return {"snapshot_id": snapshot.id if snapshot else None, "config": self.merged_config()}


class ImagePolicyForm(ImageTrainingForm):
    own_fields = ("parent_version", "reward_model")
    parent_version = VersionChoiceField(
        queryset=GeneratorVersion.objects.none(), required=False, empty_label="best-rated image generator"
    )
    reward_model = RewardModelChoiceField(
        queryset=RewardModel.objects.none(), required=False, empty_label="latest image reward model"
    )
    beta = _declared(
        "β (stay near the parent)",
        IMAGE_POLICY_OPTIONS["beta"],
        "Weight of the squared distance to the parent's images;",
    )
    steps = _declared("Steps", IMAGE_POLICY_OPTIONS["steps"])
    batch_size = _declared("Batch size", IMAGE_POLICY_OPTIONS["batch_size"])
    learning_rate = _declared("Learning rate", IMAGE_POLICY_OPTIONS["learning_rate"])
    evaluation_samples = _declared(
        "Evaluation samples", IMAGE_POLICY_OPTIONS["evaluation_samples"], "Images scored before and after;"
    )
    reward_std_penalty = _declared(
        "Ensemble caution k",
        IMAGE_POLICY_OPTIONS["reward_std_penalty"],
        "Reward = mean − k × spread over the image reward model's members; 0: the mean;",
    )
    report_every = _declared(
        "Report every", IMAGE_POLICY_OPTIONS["report_every"], "Steps between progress reports;"
    )
    seed = _declared("Seed", IMAGE_POLICY_OPTIONS["seed"])

    def setup(self) -> None:
        super().setup()
        self.fields["parent_version"].queryset = (
            self.study.versions.exclude(kind__in=KINDS_WITHOUT_WEIGHTS)
            .filter(metadata__modality="image")
            .select_related("generator")
            .order_by("id")
        )
        self.fields["reward_model"].queryset = RewardModel.objects.filter(
            study=self.study, metrics__modality="image"
        ).order_by("-created_at")

    def arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "parent_version_id": data["parent_version"].id if data["parent_version"] else None,
            "method": IMAGE_POLICY_METHOD,
            "reward_model_id": data["reward_model"].id if data["reward_model"] else None,
            "config": self.merged_config(),
        }
