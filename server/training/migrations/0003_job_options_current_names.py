"""Training options stored under the names they had before the trainers moved to TRL.

Jobs keep their options in ``params["config"]``, and a job is read again whenever it runs (a
queued job, a re-run after a killed worker); the trainers' configs know only the current names, so
an old name would fail the job with "unexpected keyword". Renamed here, once, rather than mapped at
every read, so the code knows one set of names:

- DPO ``batch_size`` → ``per_device_batch_size`` (pairs per forward pass, as before);
- RLOO ``iterations`` → ``max_steps`` (one optimizer step per iteration, as before),
  ``samples_per_prompt`` → ``num_generations``, ``max_new_tokens`` → ``max_completion_length``,
  ``prompts_per_iteration`` → ``per_device_batch_size``, which TRL counts in completions:
  prompts × completions per prompt (the old default was 4 completions, as the new one is);
- reward model ``freeze_backbone``: true was the frozen encoder with heads, today's default kind
  (``embedding_heads``); false fine-tuned the backbone, today's ``sequence_classification``.

Only names change: an option an old job left out takes the current trainer's default. The mapping
is frozen here (history does not change with the code). Studies store no training options (only
``auto_train_policy``, whose values did not change), so they need nothing.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

OLD_DEFAULT_SAMPLES_PER_PROMPT = 4  # the old RLOOConfig's, and the new num_generations default
RLOO_RENAMES = {
    "iterations": "max_steps",
    "samples_per_prompt": "num_generations",
    "max_new_tokens": "max_completion_length",
}


def current_names(kind: str, method: str | None, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the old option names replaced; unchanged when it has none. A name already
    given under its new form keeps the new value."""
    renamed = dict(config)
    if kind == "train_policy" and method == "dpo" and "batch_size" in renamed:
        renamed.setdefault("per_device_batch_size", renamed["batch_size"])
        del renamed["batch_size"]
    elif kind == "train_policy" and method == "rloo":
        if "prompts_per_iteration" in renamed:
            completions = renamed.get("samples_per_prompt", OLD_DEFAULT_SAMPLES_PER_PROMPT)
            prompts = renamed.pop("prompts_per_iteration")
            renamed.setdefault("per_device_batch_size", prompts * completions)
        for old, new in RLOO_RENAMES.items():
            if old in renamed:
                value = renamed.pop(old)
                renamed.setdefault(new, value)
    elif kind == "train_reward_model" and "freeze_backbone" in renamed:
        frozen = renamed.pop("freeze_backbone")
        if frozen is False:
            renamed.setdefault("kind", "sequence_classification")
    return renamed


def rename_job_options(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Job = apps.get_model("jobs", "Job")
    jobs = Job.objects.filter(kind__in=["train_policy", "train_reward_model"]).only("kind", "params")
    for job in jobs.iterator(chunk_size=500):
        params = job.params or {}
        config = params.get("config")
        if not isinstance(config, dict):
            continue
        renamed = current_names(job.kind, params.get("method"), config)
        if renamed != config:
            Job.objects.filter(id=job.id).update(params={**params, "config": renamed})


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0002_one_result_per_job"),
        ("jobs", "0005_one_result_per_job"),
    ]

    # No way back: the old code's names are not worth restoring (its trainers are gone).
    operations = [migrations.RunPython(rename_job_options, migrations.RunPython.noop)]
