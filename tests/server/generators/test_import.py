from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from server.core.exceptions import ApplicationError, NotFound
from server.generators.models import GeneratorVersion, Sample, VersionKind, sample_text_hash
from server.generators.services import samples_import_file
from server.studies.models import Prompt
from tests import factories

pytestmark = pytest.mark.django_db


def jsonl(*records: dict[str, object]) -> bytes:
    return "\n".join(json.dumps(record) for record in records).encode()


def nothing_imported() -> bool:
    return (
        Sample.objects.count() == 0 and GeneratorVersion.objects.count() == 0 and Prompt.objects.count() == 0
    )


def test_jsonl_import_creates_prompts_external_versions_and_samples() -> None:
    study = factories.study()
    data = jsonl(
        {"prompt": "The sea", "text": "Waves", "generator": "gpt-x", "metadata": {"temperature": 0.7}},
        {"prompt": "The sea", "text": "Salt", "generator": "human", "version": "poets"},
        {"prompt": "Night", "text": "Stars", "generator": "gpt-x", "split": "holdout"},
    )
    result = samples_import_file(study_slug=study.slug, data=data, filename="samples.jsonl")
    assert (result.created, result.prompts_created, result.duplicates) == (3, 2, [])
    assert result.versions == ["gpt-x/external", "human/poets"]
    assert set(study.versions.values_list("kind", flat=True)) == {VersionKind.EXTERNAL}
    assert Prompt.objects.get(text="Night").split == "holdout"
    assert Sample.objects.get(text="Waves").metadata == {"temperature": 0.7}


def test_csv_import_reads_the_same_fields() -> None:
    study = factories.study()
    data = b'prompt,text,generator,metadata\nThe sea,"Waves, and more",gpt-x,"{""k"": 1}"\n'
    result = samples_import_file(study_slug=study.slug, data=data, filename="samples.csv")
    assert result.created == 1
    assert Sample.objects.get().text == "Waves, and more"


def test_duplicates_are_reported_by_line_and_skipped() -> None:
    study = factories.study()
    first = jsonl({"prompt": "The sea", "text": "Waves", "generator": "g"})
    samples_import_file(study_slug=study.slug, data=first, filename="a.jsonl")
    second = jsonl(
        {"prompt": "The sea", "text": "Waves", "generator": "g"},
        {"prompt": "The sea", "text": "Tide", "generator": "g"},
        {"prompt": "The sea", "text": "Tide", "generator": "g"},
    )
    result = samples_import_file(study_slug=study.slug, data=second, filename="b.jsonl")
    assert (result.created, result.duplicates) == (1, [1, 3])
    assert Sample.objects.count() == 2


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (
            b'{"prompt": "a", "text": "b", "generator": "g"}\n{"prompt": "a", "text": ',
            "x.jsonl",
            "line 2: is not valid JSON",
        ),
        (
            b'{"prompt": "a", "text": "b", "generator": "g"}\n{"prompt": "a", "generator": "g"}',
            "x.jsonl",
            "line 2, field 'text': is missing or empty",
        ),
        (
            b'{"prompt": "a", "text": "b", "generator": "g", "split": "test"}',
            "x.jsonl",
            "line 1, field 'split': must be 'train' or 'holdout'",
        ),
        (
            b'{"prompt": "a", "text": "b", "generator": "g", "colour": "red"}',
            "x.jsonl",
            "line 1, field 'colour': is not a known field",
        ),
        (b"prompt,text\na,b\n", "x.csv", "line 1, field 'generator': column is missing from the header"),
        (
            b'{"prompt": "a", "text": "b", "generator": "g"}\n'
            b'{"prompt": "caf\xe9", "text": "b", "generator": "g"}',
            "x.jsonl",
            "line 2: not valid UTF-8",
        ),
        (b'["a", "b"]', "x.jsonl", "line 1: must be a JSON object"),
    ],
)
def test_a_file_with_any_error_imports_nothing_and_names_the_line(
    data: bytes, filename: str, message: str
) -> None:
    study = factories.study()
    with pytest.raises(ApplicationError) as raised:
        samples_import_file(study_slug=study.slug, data=data, filename=filename)
    assert message in raised.value.message
    assert Sample.objects.count() == 0 and GeneratorVersion.objects.count() == 0


def test_unknown_study_is_refused() -> None:
    with pytest.raises(NotFound, match=r"There is no study 'nope'\."):
        samples_import_file(
            study_slug="nope", data=jsonl({"prompt": "a", "text": "b", "generator": "g"}), filename="x.jsonl"
        )
    assert nothing_imported()


def test_file_too_large_is_refused(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOVELACE_MAX_UPLOAD_BYTES = 100
    study = factories.study()
    data = jsonl(*[{"prompt": "a", "text": f"b{n}", "generator": "g"} for n in range(10)])
    expected = f"The file is {len(data):,} bytes; the limit is 100 bytes"
    with pytest.raises(ApplicationError, match=expected):
        samples_import_file(study_slug=study.slug, data=data, filename="x.jsonl")
    assert Sample.objects.count() == 0


def test_unknown_extension_without_format_is_refused() -> None:
    study = factories.study()
    with pytest.raises(ApplicationError, match=r"Cannot tell the format of 'x\.txt'"):
        samples_import_file(study_slug=study.slug, data=b"x", filename="x.txt")


def test_importing_into_a_model_version_is_refused_and_imports_nothing() -> None:
    study = factories.study()
    factories.version(
        kind=VersionKind.BASE, model_path="/m", label="v1", generator=factories.version().generator
    )
    base = GeneratorVersion.objects.get(kind=VersionKind.BASE)
    data = jsonl({"prompt": "a", "text": "b", "generator": base.generator.name, "version": "v1"})
    with pytest.raises(ApplicationError, match="line 1, field 'generator'"):
        samples_import_file(study_slug=study.slug, data=data, filename="x.jsonl")
    assert Sample.objects.count() == 0 and Prompt.objects.count() == 0


def test_management_command_imports_and_reports_errors_with_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    study = factories.study()
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl({"prompt": "a", "text": "b", "generator": "g"}))
    call_command("import_samples", study.slug, str(good))
    assert Sample.objects.count() == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "a", "generator": "g"}')
    with pytest.raises(CommandError, match="line 1, field 'text': is missing or empty"):
        call_command("import_samples", study.slug, str(bad))
    assert Sample.objects.count() == 1


# --- Untrusted content: every line is read as untrusted JSON, every cell checked -----------------

ROW = '{"prompt": "a", "text": "b", "generator": "g"'
DEEP_METADATA = '{"a": ' * 10_000 + "1" + "}" * 10_000
DEEP_METADATA_CELL = DEEP_METADATA.replace('"', '""')  # quotes doubled inside a quoted CSV cell


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (
            f'{ROW}}}\n{ROW}, "metadata": {DEEP_METADATA}}}'.encode(),
            "x.jsonl",
            "line 2: nests arrays and objects deeper than 64 levels",
        ),
        (
            f'prompt,text,generator,metadata\na,b,g,"{DEEP_METADATA_CELL}"\n'.encode(),
            "x.csv",
            "line 2, field 'metadata': nests arrays and objects deeper than 64 levels",
        ),
        (
            b'{"prompt": "a", "text": "lone \\ud800 surrogate", "generator": "g"}',
            "x.jsonl",
            "line 1, field 'text': contains a lone surrogate (\\ud800), which is not a character",
        ),
        (
            b'{"prompt": "a", "text": "b", "generator": "g", "metadata": {"k": ["\\udc00"]}}',
            "x.jsonl",
            "line 1, field 'metadata.k[0]': contains a lone surrogate (\\udc00), which is not a character",
        ),
        (
            b'{"prompt": "a", "text": "nul \\u0000 here", "generator": "g"}',
            "x.jsonl",
            "line 1, field 'text': contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            b'{"prompt": "a", "text": "b", "generator": "g", "metadata": {"k": "\\u0000"}}',
            "x.jsonl",
            "line 1, field 'metadata.k': contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            b"prompt,text,generator\na,nul \x00 here,g\n",
            "x.csv",
            "line 2, field 'text': contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            b'prompt,text,generator,metadata\na,b,g,"{""k"": ""\\u0000""}"\n',
            "x.csv",
            "line 2, field 'metadata.k': contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            b'{"prompt": "a", "text": "b", "generator": "g", "metadata": {"t": NaN}}',
            "x.jsonl",
            "line 1: is not valid JSON (NaN is not a number)",
        ),
        (
            b'{"prompt": "a", "text": "b", "generator": "g", "metadata": {"t": 1e999}}',
            "x.jsonl",
            "line 1, field 'metadata.t': is not a finite number",
        ),
    ],
)
def test_content_the_database_cannot_store_is_refused_by_line_and_field(
    data: bytes, filename: str, message: str
) -> None:
    study = factories.study()

    with pytest.raises(ApplicationError) as raised:
        samples_import_file(study_slug=study.slug, data=data, filename=filename)

    assert raised.value.message == f"The file was not imported: {message}."
    assert nothing_imported()


def test_a_line_separator_inside_a_string_is_text_and_lines_are_physical_lines() -> None:
    study = factories.study()
    # U+2028, U+2029 and U+0085 are line breaks to str.splitlines but plain characters in JSON.
    data = (
        '{"prompt": "a", "text": "one\u2028two\u0085three\u2029four", "generator": "g"}\r\n'
        "\r\n"
        '{"prompt": "a", "text": "second", "generator": "g"}\r\n'
        '{"prompt": "a", "text": "second", "generator": "g"}\n'
    ).encode()

    result = samples_import_file(study_slug=study.slug, data=data, filename="x.jsonl")

    assert (result.created, result.duplicates) == (2, [4])
    assert Sample.objects.filter(text="one\u2028two\u0085three\u2029four").count() == 1


def test_an_error_after_a_line_separator_names_the_physical_line() -> None:
    study = factories.study()
    data = f'{ROW.replace(chr(98), "x" + chr(0x2028) + "y")}}}\r\n{ROW}, "colour": 1}}\n'.encode()

    with pytest.raises(ApplicationError) as raised:
        samples_import_file(study_slug=study.slug, data=data, filename="x.jsonl")

    assert raised.value.extra["errors"] == [
        {"line": 2, "field": "colour", "message": raised.value.extra["errors"][0]["message"]}
    ]
    assert raised.value.message.startswith(
        "The file was not imported: line 2, field 'colour': is not a known field"
    )
    assert nothing_imported()


def test_management_command_refuses_a_deeply_nested_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    study = factories.study()
    deep = tmp_path / "deep.jsonl"
    deep.write_text(f'{ROW}, "metadata": {DEEP_METADATA}}}\n', encoding="utf-8")

    with pytest.raises(CommandError, match="line 1: nests arrays and objects deeper than 64 levels"):
        call_command("import_samples", study.slug, str(deep))
    assert nothing_imported()


def test_texts_are_stored_in_normal_form_so_whitespace_makes_no_new_sample() -> None:
    study = factories.study()
    first = jsonl({"prompt": "The sea", "text": "  Waves\r\nand foam \n", "generator": "g"})
    samples_import_file(study_slug=study.slug, data=first, filename="a.jsonl")
    sample = Sample.objects.get()
    assert sample.text == "Waves\nand foam"
    assert sample.text_hash == sample_text_hash("Waves\nand foam")
    again = jsonl({"prompt": "The sea", "text": "Waves\nand foam", "generator": "g"})
    result = samples_import_file(study_slug=study.slug, data=again, filename="b.jsonl")
    assert (result.created, result.duplicates) == (0, [1])
