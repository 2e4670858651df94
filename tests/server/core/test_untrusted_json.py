"""The one reader of outside JSON: what it refuses, where it says the problem is, what it lets through."""

from __future__ import annotations

import pytest

from server.core.untrusted_json import (
    MAX_JSON_DEPTH,
    UntrustedJSONError,
    json_loads_untrusted,
    json_value_problem,
    text_problem,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_as_deep_as_the_limit_is_read() -> None:
    value = json_loads_untrusted(nested(MAX_JSON_DEPTH))

    for _ in range(MAX_JSON_DEPTH - 1):
        (value,) = value
    assert value == []


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 10_000, 100_000])
def test_deeper_nesting_is_refused_not_crashed_on(depth: int) -> None:
    with pytest.raises(UntrustedJSONError) as raised:
        json_loads_untrusted('{"metadata": ' + '{"a": ' * depth + "1" + "}" * depth + "}")

    assert raised.value.message == f"nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ('{"text": "a\\u0000b"}', "text", "contains a NUL character (\\u0000), which cannot be stored"),
        (
            '{"m": {"k": ["x", "\\ud800"]}}',
            "m.k[1]",
            "contains a lone surrogate (\\ud800), which is not a character",
        ),
        (
            '{"m": {"\\udfff": 1}}',
            "m",
            "has a key that contains a lone surrogate (\\udfff), which is not a character",
        ),
        (
            '{"m": {"\\u0000": 1}}',
            "m",
            "has a key that contains a NUL character (\\u0000), which cannot be stored",
        ),
        ('{"m": [1, 1e400]}', "m[1]", "is not a finite number"),
        ('"\\u0000"', "", "contains a NUL character (\\u0000), which cannot be stored"),
    ],
)
def test_values_the_database_cannot_store_are_refused_with_their_path(
    text: str, path: str, message: str
) -> None:
    with pytest.raises(UntrustedJSONError) as raised:
        json_loads_untrusted(text)

    assert (raised.value.path, raised.value.message) == (path, message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"epochs": NaN}', "is not valid JSON (NaN is not a number)"),
        ('{"epochs": Infinity}', "is not valid JSON (Infinity is not a number)"),
        ('{"epochs": -Infinity}', "is not valid JSON (-Infinity is not a number)"),
        ('{"a": 1,}', "is not valid JSON (Expecting property name enclosed in double quotes at column 9)"),
        ('{\n"a": }', "is not valid JSON (Expecting value at line 2, column 6)"),
        ('{"a": "tab\there"}', "is not valid JSON (Invalid control character at column 11)"),
        ("1" * 5000, "is not valid JSON (a number has too many digits)"),
    ],
)
def test_what_is_not_strict_json_is_refused_with_its_position(text: str, message: str) -> None:
    with pytest.raises(UntrustedJSONError) as raised:
        json_loads_untrusted(text)

    assert (raised.value.path, raised.value.message) == ("", message)


def test_ordinary_json_comes_through_unchanged() -> None:
    text = '{"a": [1, 2.5, -3e2, true, null, "caf\\u00e9 \\ud83d\\ude00 \u2028 line"], "b": {}}'

    assert json_loads_untrusted(text) == {"a": [1, 2.5, -300.0, True, None, "café 😀 \u2028 line"], "b": {}}


def test_value_checks_cover_values_that_did_not_come_as_json_text() -> None:
    assert text_problem("fine \u2028 text") is None
    assert json_value_problem({"a": [{"b": "x\x00"}]}) == (
        "a[0].b",
        "contains a NUL character (\\u0000), which cannot be stored",
    )
    assert json_value_problem({"a": float("nan")}) == ("a", "is not a finite number")
    assert json_value_problem({"a": [1, "two", {"three": 3.0}]}) is None
