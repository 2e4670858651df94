"""The rating page's answer buttons fit the question they answer: each criterion's answer phrase
("Left is more original"), derived from the question when not given, checked, editable in the admin
and the API, and sent to the page for each question."""

from __future__ import annotations

import importlib
import json

import pytest
from django.test import Client

from server.core.exceptions import ApplicationError
from server.studies.models import Criterion, Study, answer_phrase_from_question, answer_phrase_problem
from server.studies.selectors import study_criteria
from server.studies.services import CriterionInput, study_create
from tests import factories
from tests.server.api.conftest import token_client
from tests.server.studies.admin_forms import admin_client, study_change_form

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("question", "phrase"),
    [
        ("Which is more original?", "more original"),
        ("Which is better?", "better"),
        ("Which poem is funnier ?", "funnier"),
        ("which one is the clearer explanation?", "the clearer explanation"),
        # Any other shape gets plain Left / Right: "Left is …" would not read.
        ("Which do you prefer?", ""),
        ("Which of the two is better?", ""),
        ("Which is better, and why?", ""),
        ("Rate the pair.", ""),
        ("", ""),
        # A derived phrase that answer_phrase_problem refuses gives plain Left / Right too.
        ("Which one is is better?", ""),
        ("Which is more\toriginal?", ""),
        ("Which is " + "x" * 60 + "?", "x" * 60),
    ],
)
def test_the_phrase_a_question_implies(question: str, phrase: str) -> None:
    assert answer_phrase_from_question(question) == phrase
    assert answer_phrase_problem(answer_phrase_from_question(question)) is None
    # The migration that gave existing questions their phrase derives the same.
    migration = importlib.import_module("server.studies.migrations.0008_answer_phrase")
    assert migration.phrase_from_question(question) == phrase


ONLY_WHAT_FOLLOWS = (
    "Give only what follows “Left is”, without “is” and without a question mark (e.g. “more original”)."
)


@pytest.mark.parametrize(
    ("phrase", "problem"),
    [
        ("more original", None),
        ("", None),
        ("x" * 61, "Use at most 60 characters (buttons read “Left is <phrase>”)."),
        ("more\noriginal", "Use one line without leading or trailing spaces."),
        (" better", "Use one line without leading or trailing spaces."),
        ("is better", ONLY_WHAT_FOLLOWS),
        ("better?", ONLY_WHAT_FOLLOWS),
    ],
)  # fmt: skip
def test_a_phrase_is_checked(phrase: str, problem: str | None) -> None:
    assert answer_phrase_problem(phrase) == problem


def test_the_creativity_template_answers_more_original_then_better() -> None:
    study = study_create(name="Poems", slug="poems", template="creativity")

    assert [(c.key, c.answer_phrase) for c in study_criteria(study=study)] == [
        ("original", "more original"),
        ("better", "better"),
    ]
    assert [c.choice_labels for c in study_criteria(study=study)] == [
        {"left": "Left is more original", "right": "Right is more original", "tie": "Tie",
         "both_bad": "Both bad"},
        {"left": "Left is better", "right": "Right is better", "tie": "Tie", "both_bad": "Both bad"},
    ]  # fmt: skip


def test_a_study_gets_the_phrase_its_question_implies_unless_it_gives_one() -> None:
    derived = study_create(name="A", slug="a", question="Which story is funnier?")
    plain = study_create(name="B", slug="b", question="Which do you prefer?")
    chosen = study_create(name="C", slug="c", question="Which do you prefer?", answer_phrase=" preferred ")
    neutral = study_create(name="D", slug="d", question="Which is better?", answer_phrase="")
    criteria = study_create(
        name="E",
        slug="e",
        criteria=[
            CriterionInput(key="kind", question="Which is kinder?"),
            CriterionInput(key="fit", question="Which fits the brief?", answer_phrase="the better fit"),
            CriterionInput(key="any", question="Which is clearer?", answer_phrase=""),
        ],
    )

    assert [s.answer_phrase for s in (derived, plain, chosen, neutral)] == ["funnier", "", "preferred", ""]
    assert study_criteria(study=plain)[0].choice_labels["left"] == "Left"
    assert [(c.key, c.answer_phrase) for c in study_criteria(study=criteria)] == [
        ("kind", "kinder"),
        ("fit", "the better fit"),
        ("any", ""),
    ]


def test_a_bad_phrase_is_refused_naming_its_question() -> None:
    with pytest.raises(ApplicationError) as error:
        study_create(
            name="S",
            slug="s",
            criteria=[
                CriterionInput(key="a", question="Which is kinder?"),
                CriterionInput(key="b", question="Which is clearer?", answer_phrase="is clearer?"),
            ],
        )
    assert error.value.extra["fields"] == {"criteria[1].answer_phrase": ONLY_WHAT_FOLLOWS}
    with pytest.raises(ApplicationError) as error:
        study_create(name="S", slug="s", question="Which is better?", answer_phrase="y" * 61)
    assert error.value.extra["fields"] == {
        "answer_phrase": ["Ensure this value has at most 60 characters (it has 61)."]
    }
    with pytest.raises(ApplicationError) as error:
        study_create(name="S", slug="s", template="creativity", answer_phrase="better")
    assert error.value.extra["fields"] == {"answer_phrase": "Give it in criteria, one per question."}
    assert Study.objects.count() == 0


def test_the_api_creates_and_shows_each_questions_phrase() -> None:
    client = token_client(factories.user(is_staff=True))
    body = {
        "name": "S",
        "slug": "s",
        "criteria": [
            {"key": "kind", "question": "Which is kinder?"},
            {"key": "fit", "question": "Which fits the brief?", "answer_phrase": "the better fit"},
        ],
    }
    created = client.post("/api/studies/", body, format="json")
    assert created.status_code == 201, created.json()
    assert [(c["key"], c["answer_phrase"]) for c in created.json()["criteria"]] == [
        ("kind", "kinder"),
        ("fit", "the better fit"),
    ]
    one = client.post(
        "/api/studies/",
        {"name": "T", "slug": "t", "question": "Which?", "answer_phrase": "nicer"},
        format="json",
    )
    assert (one.status_code, one.json()["answer_phrase"]) == (201, "nicer")
    refused = client.post(
        "/api/studies/",
        {**body, "slug": "u", "criteria": [{"key": "k", "question": "Which?", "answer_phrase": "is nice"}]},
        format="json",
    )
    assert refused.status_code == 400
    assert refused.json()["details"]["fields"] == {"criteria[0].answer_phrase": ONLY_WHAT_FOLLOWS}


def test_the_admin_edits_the_phrases_and_refuses_a_bad_one() -> None:
    study = factories.study(question="Which text is better?")
    client = admin_client()
    url, data = study_change_form(client, study)
    data.update(
        {
            "answer_phrase": "is better?",
            "criteria-TOTAL_FORMS": "1",
            "criteria-INITIAL_FORMS": "0",
            "criteria-0-position": "1",
            "criteria-0-key": "kind",
            "criteria-0-question": "Which is kinder?",
            "criteria-0-answer_phrase": "kinder",
            "criteria-0-guidelines": "",
        }
    )

    refused = client.post(url, data)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["answer_phrase"] == [ONLY_WHAT_FOLLOWS]
    response = client.post(url, {**data, "answer_phrase": "better written"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    study.refresh_from_db()
    assert study.answer_phrase == "better written"
    assert list(Criterion.objects.values_list("key", "answer_phrase")) == [("kind", "kinder")]


def test_the_rating_page_sends_each_questions_buttons_and_shows_the_firsts() -> None:
    study = study_create(
        name="Poems", slug="poems", template="creativity", require_guidelines_ack=False, gold_rate=0.0
    )
    rater = factories.rater(study=study)
    client = Client()
    client.force_login(rater.user)

    page = client.get(f"/rate/{study.slug}/").content.decode()

    config = json.loads(page.split('id="rating-config" type="application/json">')[1].split("</script>")[0])
    assert [(q["key"], q["labels"]["left"], q["labels"]["right"]) for q in config["questions"]] == [
        ("original", "Left is more original", "Right is more original"),
        ("better", "Left is better", "Right is better"),
    ]
    assert '<span class="choice-label">Left is more original</span>' in page
    assert '<div class="choices" role="group" aria-labelledby="question" id="choices">' in page


def test_the_admin_derives_the_phrase_of_a_study_and_a_criterion_added_blank() -> None:
    client = admin_client()
    form = client.get("/admin/studies/study/add/").context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"studyversion_set-TOTAL_FORMS": "0", "studyversion_set-INITIAL_FORMS": "0"})
    data.update(
        {
            "name": "Poems",
            "slug": "poems",
            "question": "Which poem is more original?",
            "answer_phrase": "",
            "criteria-TOTAL_FORMS": "2",
            "criteria-INITIAL_FORMS": "0",
            "criteria-0-position": "1",
            "criteria-0-key": "kind",
            "criteria-0-question": "Which is kinder?",
            "criteria-0-answer_phrase": "",
            "criteria-0-guidelines": "",
            "criteria-1-position": "2",
            "criteria-1-key": "fit",
            "criteria-1-question": "Which is clearer?",
            "criteria-1-answer_phrase": "the clearer one",
            "criteria-1-guidelines": "",
        }
    )

    response = client.post("/admin/studies/study/add/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    study = Study.objects.get()
    assert study.answer_phrase == "more original"
    assert list(study.criteria.values_list("key", "answer_phrase")) == [
        ("kind", "kinder"),
        ("fit", "the clearer one"),
    ]


def test_the_admin_rederives_a_phrase_left_as_derived_when_the_question_changes() -> None:
    study = study_create(
        name="S",
        slug="s",
        criteria=[
            CriterionInput(key="original", question="Which is more original?"),
            CriterionInput(key="kind", question="Which is kinder?"),
            CriterionInput(key="fit", question="Which is clearer?", answer_phrase="the clearer one"),
        ],
    )
    client = admin_client()
    url, data = study_change_form(client, study)
    data.update(
        {
            "question": "Which poem do you prefer?",  # phrase left "more original": re-derived
            "criteria-0-question": "Which is funnier?",  # phrase left "kinder": re-derived
            "criteria-1-question": "Which reads better?",  # a phrase someone wrote: kept
        }
    )

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    study.refresh_from_db()
    assert (study.question, study.answer_phrase) == ("Which poem do you prefer?", "")
    assert study_criteria(study=study)[0].choice_labels["left"] == "Left"
    assert list(study.criteria.values_list("question", "answer_phrase")) == [
        ("Which is funnier?", "funnier"),
        ("Which reads better?", "the clearer one"),
    ]


def test_any_save_of_a_changed_question_rederives_a_phrase_left_as_derived() -> None:
    study = study_create(name="S", slug="s", question="Which is better?")
    kept = study_create(name="T", slug="t", question="Which is better?", answer_phrase="nicer")

    study = Study.objects.get(id=study.id)
    study.question = "Which story is funnier?"
    study.save(update_fields=["question"])
    kept = Study.objects.get(id=kept.id)
    kept.question = "Which story is funnier?"
    kept.save()
    unchanged = Study.objects.get(id=kept.id)
    unchanged.answer_phrase = ""  # cleared by hand, question unchanged: stays plain
    unchanged.save()

    assert Study.objects.get(id=study.id).answer_phrase == "funnier"
    assert Study.objects.get(id=kept.id).answer_phrase == ""
    assert kept.answer_phrase == "nicer"


def test_an_explicit_empty_phrase_beside_criteria_gives_plain_buttons() -> None:
    criteria = [
        CriterionInput(key="kind", question="Which is kinder?"),
        CriterionInput(key="fit", question="Which is clearer?"),
    ]

    plain = study_create(name="S", slug="s", criteria=criteria, answer_phrase="")
    template = study_create(name="T", slug="t", template="creativity", answer_phrase="")
    with pytest.raises(ApplicationError) as error:
        study_create(
            name="U",
            slug="u",
            criteria=[CriterionInput(key="kind", question="Which is kinder?", answer_phrase="kinder")],
            answer_phrase="",
        )

    assert [(c.key, c.answer_phrase) for c in study_criteria(study=plain)] == [
        ("kind", ""),
        ("fit", "clearer"),
    ]
    assert [(c.key, c.answer_phrase) for c in study_criteria(study=template)] == [
        ("original", ""),
        ("better", "better"),
    ]
    assert error.value.extra["fields"] == {"answer_phrase": "Give it in criteria, one per question."}
    assert Study.objects.count() == 2
