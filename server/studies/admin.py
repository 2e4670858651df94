from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from server.studies.models import (
    MAX_CRITERIA,
    Criterion,
    Prompt,
    Study,
    StudyVersion,
    answer_phrase_from_question,
)

ADMIN_ANSWER_PHRASE_HELP = (
    "How the rating page's buttons answer the question: “Left is <phrase>” / “Right is <phrase>” "
    "(e.g. “more original”). Left blank when adding: the phrase a question shaped “Which … is "
    "<phrase>?” implies, else plain “Left” / “Right”. A phrase left as derived follows a change of "
    "the question; clear it after adding for plain buttons."
)


class AnswerPhraseForm(forms.ModelForm):
    """A study's or criterion's admin form: added with a blank phrase, it gets the one its question
    implies (a changed question re-derives a phrase left as derived: the model's ``save``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "answer_phrase" in self.fields:
            self.fields["answer_phrase"].help_text = ADMIN_ANSWER_PHRASE_HELP

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        question = cleaned.get("question")
        if self.instance._state.adding and not cleaned.get("answer_phrase") and question:
            cleaned["answer_phrase"] = answer_phrase_from_question(question.strip())
        return cleaned


class CriterionInline(admin.TabularInline):
    """The study's further questions (its own question and guidelines are the first criterion)."""

    model = Criterion
    form = AnswerPhraseForm
    extra = 0
    max_num = MAX_CRITERIA - 1
    fields = ["position", "key", "question", "answer_phrase", "guidelines"]


class StudyVersionInline(admin.TabularInline):
    model = StudyVersion
    extra = 0
    raw_id_fields = ["version", "enrolled_by_job"]


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    form = AnswerPhraseForm
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
    inlines = [CriterionInline, StudyVersionInline]

    def get_fieldsets(self, request, obj=None):  # type: ignore[no-untyped-def]
        """Every field in its default place, the onboarding settings grouped under a heading."""
        onboarding = ["require_guidelines_ack", "qualification_pairs", "qualification_min_correct"]
        fields = [name for name in self.get_fields(request, obj) if name not in onboarding]
        return [
            (None, {"fields": fields}),
            (
                "Onboarding",
                {
                    "fields": onboarding,
                    "description": "Before a rater's first pair: the guidelines, acknowledged; then, "
                    "if the number of qualification pairs is above 0, that many gold checks supplied by "
                    "staff (Gold checks on the dashboard), of which at least the minimum must be "
                    "answered as expected. A rater who fails is told so and gets no pairs.",
                },
            ),
        ]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "split", "short_text", "external_id", "created_at"]
    list_filter = ["split", "study"]
    search_fields = ["text", "external_id"]
    readonly_fields = ["text_hash"]

    @admin.display(description="text")
    def short_text(self, prompt: Prompt) -> str:
        return prompt.text[:80]
