"""The dashboard's typed training forms: one field per option of the service's declarations, its
range on the input and its default pre-filled from the trainer's config; a refused value shown
next to its field in the service's words; a valid submission queues the job with the typed config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from server.core.exceptions import ApplicationError
from server.dashboard.forms import PolicyForm, RewardModelForm, TrainingForm
from server.dashboard.training_settings import POLICY_GROUPS, REWARD_MODEL_GROUPS, Setting
from server.jobs.models import Job, JobStatus
from server.training import services
from server.training.models import RewardModel
from server.training.services import Between, Positive, Whole
from tests.server.api.world import World, build_world

STUDY_URL = "/dashboard/studies/poems/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db: None, settings, tmp_path: Path) -> World:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    return build_world()


@pytest.fixture
def staff(world: World) -> Client:
    client = Client()
    client.force_login(world.staff)
    return client


def untouched(form: TrainingForm) -> dict[str, str]:
    """What a browser sends for the form as the page shows it (unchecked boxes are not sent)."""
    data: dict[str, str] = {}
    for field in form:
        value = field.value()
        if field.widget_type == "checkbox":
            if value:
                data[field.name] = "on"
        elif value is not None:
            data[field.name] = str(value)
    return data


def settings_of(groups: Any) -> list[Setting]:
    return [setting for group in groups for setting in group.settings]


def out_of_range(setting: Setting) -> int | float:
    declaration = setting.declaration
    if isinstance(declaration, Whole):
        return declaration.high + 1
    if isinstance(declaration, Between):
        return declaration.high if declaration.open_high else declaration.high + 1
    assert isinstance(declaration, Positive)
    return declaration.high * 2


def service_message(call: Any) -> str:
    with pytest.raises(ApplicationError) as refusal:
        call()
    return refusal.value.message


def action_form(response: Any, slug: str) -> TrainingForm:
    return next(item["form"] for item in response.context["actions"] if item["action"].slug == slug)


# --- The fields: from the declarations and the trainers' defaults ----------------------------------


def test_every_declared_option_has_a_field_for_each_method_and_kind() -> None:
    for method in services.POLICY_METHODS:
        declared = services.DPO_OPTIONS if method == "dpo" else services.ONLINE_RL_OPTIONS
        typed = [setting.option for setting in settings_of(POLICY_GROUPS) if method in setting.when]
        assert sorted(typed) == sorted(declared)
    for kind, not_for_kind in (
        ("embedding_heads", services.SEQUENCE_CLASSIFICATION_ONLY),
        ("sequence_classification", services.EMBEDDING_HEADS_ONLY),
    ):
        typed = [setting.option for setting in settings_of(REWARD_MODEL_GROUPS) if kind in setting.when]
        declared = [option for option in services.REWARD_MODEL_OPTIONS if option not in not_for_kind]
        if kind == "sequence_classification":
            declared += [f"lora.{name}" for name in services.REWARD_LORA_OPTIONS]
        assert sorted(typed) == sorted(declared)


def test_the_forms_are_prefilled_with_the_trainers_defaults(world: World) -> None:
    policy = PolicyForm(study=world.study_a)
    reward_model = RewardModelForm(study=world.study_a)

    assert {
        name: policy[name].value() for name in ("epochs", "dpo_beta", "online_rl_beta", "lr_scheduler")
    } == {
        "epochs": 1,
        "dpo_beta": 0.1,  # the DPO paper's
        "online_rl_beta": 0.05,  # TRL's RLOO default
        "lr_scheduler": "linear",
    }
    assert {name: policy[name].value() for name in ("lora", "lora_rank", "lora_alpha", "merge_adapter")} == {
        "lora": True,  # children are adapters unless merging is asked
        "lora_rank": 16,
        "lora_alpha": 32,
        "merge_adapter": False,
    }
    assert (policy["learning_rate"].value(), policy["max_steps"].value()) == (
        None,
        None,
    )  # the trainer's choice
    assert policy["method"].value() == world.study_a.auto_train_policy
    assert {
        name: reward_model[name].value() for name in ("kind", "ensemble_size", "lora", "lora_dropout")
    } == {
        "kind": "embedding_heads",
        "ensemble_size": 3,
        "lora": False,
        "lora_dropout": 0.05,
    }
    assert reward_model["center_rewards_coefficient"].value() == 0.01


def test_number_inputs_carry_the_declared_ranges(world: World, staff: Client) -> None:
    page = staff.get(STUDY_URL).content.decode()
    policy = re.search(r'<form[^>]+id="action-train-policy".*?</form>', page, re.S).group(0)
    reward_model = re.search(r'<form[^>]+id="action-train-reward-model".*?</form>', page, re.S).group(0)

    def attributes(form: str, name: str) -> dict[str, str]:
        tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', form).group(0)
        return dict(re.findall(r'(min|max|step|value)="([^"]*)"', tag))

    assert attributes(policy, "epochs") == {"min": "1", "max": "100", "step": "1", "value": "1"}
    assert attributes(reward_model, "epochs") == {"min": "1", "max": "1000", "step": "1"}  # blank: 20 or 1
    assert attributes(policy, "warmup_ratio") == {"min": "0", "max": "1", "step": "0.01", "value": "0.0"}
    assert attributes(policy, "label_smoothing") == {
        "min": "0",
        "max": "0.5",
        "step": "0.005",
        "value": "0.0",
    }
    assert attributes(policy, "learning_rate") == {"min": "0", "max": "1", "step": "any"}
    assert 'data-switch="method" novalidate' in policy and 'data-switch="kind" novalidate' in reward_model
    # the groups that apply to one method or kind say so, for the page's script
    assert re.findall(r'<fieldset class="dash-fieldset" data-when="([^"]*)"><legend>([^<]*)<', policy) == [
        ("dpo", "DPO"),
        ("rloo grpo", "Online RL"),
    ]
    assert '<fieldset class="dash-fieldset" data-when="sequence_classification"><legend>LoRA<' in reward_model
    # the members of a sequence classifier may spread over GPUs; the heads train in one process
    assert (
        '<fieldset class="dash-fieldset" data-when="sequence_classification"><legend>Several GPUs<'
        in reward_model
    )
    assert attributes(reward_model, "processes") == {"min": "1", "max": "64", "step": "1", "value": "1"}


# --- Refusals: next to the field, in the service's words -------------------------------------------

POLICY_NUMBERS = [
    setting
    for setting in settings_of(POLICY_GROUPS)
    if isinstance(setting.declaration, Whole | Between | Positive)
]
REWARD_MODEL_NUMBERS = [
    setting
    for setting in settings_of(REWARD_MODEL_GROUPS)
    if isinstance(setting.declaration, Whole | Between | Positive)
]


@pytest.mark.parametrize("setting", POLICY_NUMBERS, ids=lambda setting: setting.name)
def test_each_policy_number_out_of_range_is_refused_next_to_its_field(
    world: World, staff: Client, setting: Setting
) -> None:
    method = setting.when[0]
    data = untouched(PolicyForm(study=world.study_a))
    data.update(method=method, parent_version=str(world.base_version.id))
    data[setting.name] = str(out_of_range(setting))
    expected = service_message(
        lambda: services.policy_options(method, {setting.option: out_of_range(setting)})
    )

    response = staff.post(f"{STUDY_URL}actions/train-policy/", data)

    assert response.status_code == 400
    form = action_form(response, "train-policy")
    assert form.errors == {setting.name: [expected]}
    assert expected.startswith(
        f"The {'DPO' if method == 'dpo' else method.upper()} option '{setting.option}'"
    )
    assert not Job.objects.filter(kind="train_policy", status=JobStatus.QUEUED).exists()


@pytest.mark.parametrize("setting", REWARD_MODEL_NUMBERS, ids=lambda setting: setting.name)
def test_each_reward_model_number_out_of_range_is_refused_next_to_its_field(
    world: World, staff: Client, setting: Setting
) -> None:
    kind = setting.when[0]
    data = untouched(RewardModelForm(study=world.study_a))
    data["kind"] = kind
    if setting.option.startswith("lora."):
        data["lora"] = "on"
    data[setting.name] = str(out_of_range(setting))
    options: dict[str, Any] = {"kind": kind}
    if setting.option.startswith("lora."):
        options["lora"] = {setting.option.removeprefix("lora."): out_of_range(setting)}
    else:
        options[setting.option] = out_of_range(setting)
    expected = service_message(lambda: services.reward_model_train_start(study=world.study_a, config=options))

    response = staff.post(f"{STUDY_URL}actions/train-reward-model/", data)

    assert response.status_code == 400
    assert action_form(response, "train-reward-model").errors == {setting.name: [expected]}
    assert not Job.objects.filter(kind="train_reward_model", status=JobStatus.QUEUED).exists()


@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        ("epochs", "two", "The DPO option 'epochs' must be a whole number from 1 to 100 (got 'two')."),
        ("epochs", "1.5", "The DPO option 'epochs' must be a whole number from 1 to 100 (got 1.5)."),
        (
            "lr_scheduler",
            "sawtooth",
            "The DPO option 'lr_scheduler' must be one of 'linear', 'cosine', 'constant', "
            "'constant_with_warmup' (got 'sawtooth').",
        ),
        (
            "lora_target_modules",
            "q_proj, 9lives",
            "The DPO option 'lora_target_modules' must be \"all-linear\" or a list of 1 to 64 module names "
            "(like [\"q_proj\", \"v_proj\"]) (got ['q_proj', '9lives']).",
        ),
    ],
)
def test_text_that_is_no_valid_value_is_refused_in_the_services_words(
    world: World, staff: Client, field: str, typed: str, message: str
) -> None:
    data = untouched(PolicyForm(study=world.study_a))
    data.update({"method": "dpo", field: typed})

    response = staff.post(f"{STUDY_URL}actions/train-policy/", data)

    assert response.status_code == 400
    assert action_form(response, "train-policy").errors == {field: [message]}


def test_options_that_do_not_fit_together_are_named_above_the_form(world: World, staff: Client) -> None:
    data = untouched(PolicyForm(study=world.study_a))
    data.update(method="dpo", max_prompt_length="600")  # the default max_length is 512

    response = staff.post(f"{STUDY_URL}actions/train-policy/", data)

    assert action_form(response, "train-policy").errors == {
        "__all__": [
            "The DPO options do not fit together: max_prompt_length (600) must be below max_length (512), "
            "to leave room for the response."
        ]
    }


def test_an_error_in_the_advanced_json_is_shown_next_to_it(world: World, staff: Client) -> None:
    data = untouched(PolicyForm(study=world.study_a))
    data.update(method="dpo", epochs="2", config='{"epochs": 0}')

    response = staff.post(f"{STUDY_URL}actions/train-policy/", data)

    assert action_form(response, "train-policy").errors == {
        "config": ["The DPO option 'epochs' must be a whole number from 1 to 100 (got 0)."]
    }


def test_a_service_refusal_of_a_choice_is_shown_next_to_that_choice(world: World, staff: Client) -> None:
    RewardModel.objects.filter(study=world.study_a).delete()
    data = untouched(PolicyForm(study=world.study_a))
    data.update(method="rloo", parent_version=str(world.base_version.id))

    response = staff.post(f"{STUDY_URL}actions/train-policy/", data)

    assert action_form(response, "train-policy").errors == {
        "reward_model": ["RLOO needs a reward model of the study."]
    }


# --- Valid submissions ----------------------------------------------------------------------------


def test_a_valid_dpo_submission_queues_the_job_with_the_typed_config(world: World, staff: Client) -> None:
    data = untouched(PolicyForm(study=world.study_a))
    data.update(
        parent_version=str(world.base_version.id),
        method="dpo",
        epochs="2",
        learning_rate="2e-5",
        dtype="float32",
        gradient_checkpointing="on",
        lora_rank="8",
        lora_target_modules="c_attn, c_proj",
        dpo_beta="0.25",
        loss_type="robust",
        label_smoothing="0.1",
        online_rl_beta="7",  # another method's field: not sent to DPO
        config='{"seed": 7}',
    )

    response = staff.post(f"{STUDY_URL}actions/train-policy/", data)

    assert response.status_code == 303, action_form(response, "train-policy").errors
    job = Job.objects.get(kind="train_policy", status=JobStatus.QUEUED)
    assert job.params["method"] == "dpo"
    assert job.params["config"] == {
        "learning_rate": 2e-05,
        "lr_scheduler": "linear",
        "warmup_ratio": 0.0,
        "epochs": 2,
        "per_device_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "seed": 7,  # the advanced JSON replaces the field
        "checkpoint_every": 50,
        "dtype": "float32",
        "gradient_checkpointing": True,
        "distributed": "none",
        "processes": 1,
        # no lengths: left blank, the trainer fits them to the parent's positions
        "lora": True,
        "lora_rank": 8,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "lora_target_modules": ["c_attn", "c_proj"],
        "qlora_4bit": False,
        "merge_adapter": False,
        "beta": 0.25,
        "loss_type": "robust",
        "label_smoothing": 0.1,
    }


def test_a_valid_grpo_submission_sends_the_online_settings_only(world: World, staff: Client) -> None:
    data = untouched(PolicyForm(study=world.study_a))
    data.update(
        parent_version=str(world.base_version.id),
        method="grpo",
        reward_model=str(world.reward_model.id),
        num_generations="2",
        max_completion_length="32",
        online_rl_beta="0.1",
        merge_adapter="on",
    )
    del data["lora"]  # full fine-tuning: the adapters' settings are left out

    response = staff.post(f"{STUDY_URL}actions/train-policy/", data)

    assert response.status_code == 303, action_form(response, "train-policy").errors
    job = Job.objects.get(kind="train_policy", status=JobStatus.QUEUED)
    assert (job.params["method"], job.params["reward_model_id"]) == ("grpo", world.reward_model.id)
    assert job.params["config"] == {
        "lr_scheduler": "linear",
        "warmup_ratio": 0.0,
        "epochs": 1,
        "per_device_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "seed": 0,
        "checkpoint_every": 50,
        "dtype": "auto",
        "gradient_checkpointing": False,
        "distributed": "none",
        "processes": 1,
        "max_completion_length": 32,  # typed; the prompt's length is left to the trainer
        "lora": False,
        "qlora_4bit": False,
        "merge_adapter": True,
        "beta": 0.1,
        "num_generations": 2,
        "temperature": 1.0,
        "reward_std_penalty": 0.0,
    }


def test_a_valid_reward_model_submission_gathers_the_lora_object(world: World, staff: Client) -> None:
    data = untouched(RewardModelForm(study=world.study_a))
    data.update(
        kind="sequence_classification",
        ensemble_size="2",
        pooling="cls",  # heads only: not sent for a sequence classifier
        lora="on",
        lora_rank="4",
        lora_target_modules="all-linear",
        dtype="float32",
    )

    response = staff.post(f"{STUDY_URL}actions/train-reward-model/", data)

    assert response.status_code == 303, action_form(response, "train-reward-model").errors
    job = Job.objects.get(kind="train_reward_model", status=JobStatus.QUEUED)
    assert job.params["config"] == {
        "kind": "sequence_classification",
        "ensemble_size": 2,
        "bootstrap": True,
        "lr_scheduler": "linear",
        "warmup_ratio": 0.0,
        "batch_size": 16,
        "gradient_accumulation_steps": 1,
        "center_rewards_coefficient": 0.01,
        "seed": 0,
        "checkpoint_every": 50,
        "max_length": 256,
        "dtype": "float32",
        "gradient_checkpointing": False,
        "distributed": "none",
        "processes": 1,
        "lora": {"rank": 4, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "qlora_4bit": False,
    }


def test_an_untouched_reward_model_form_queues_the_cheap_heads(world: World, staff: Client) -> None:
    response = staff.post(
        f"{STUDY_URL}actions/train-reward-model/", untouched(RewardModelForm(study=world.study_a))
    )

    assert response.status_code == 303
    job = Job.objects.get(kind="train_reward_model", status=JobStatus.QUEUED)
    assert job.params["config"] == {
        "kind": "embedding_heads",
        "pooling": "auto",
        "ensemble_size": 3,
        "bootstrap": True,
        "batch_size": 16,
        "seed": 0,
        "checkpoint_every": 50,
        "max_length": 256,
    }
