"""CSV cells a spreadsheet would run as formulas are written as text; everything else as it was."""

from __future__ import annotations

import csv
import io

import pytest

from server.core.csv_export import CSVWriter, csv_cell


@pytest.mark.parametrize(
    "text",
    ['=HYPERLINK("http://evil.example", "x")', "+1+2", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1", "=", "-"],
)
def test_text_that_starts_a_formula_gets_a_leading_quote(text: str) -> None:
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["gpt-x/external", "a=b", " =1", "", "'quoted", -1.5, -3, 0, None, True])
def test_other_cells_and_numbers_are_unchanged(value: object) -> None:
    assert csv_cell(value) == value


def test_the_writer_quotes_every_cell_of_every_row() -> None:
    buffer = io.StringIO()
    writer = CSVWriter(buffer, lineterminator="\n")

    writer.writerow(["label", "rating"])
    writer.writerows([["=1+1", -2.5], ["plain, with comma", 3]])

    assert list(csv.reader(io.StringIO(buffer.getvalue()))) == [
        ["label", "rating"],
        ["'=1+1", "-2.5"],
        ["plain, with comma", "3"],
    ]
