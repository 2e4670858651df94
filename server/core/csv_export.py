"""Writing CSV that a person will open in a spreadsheet, where generated text is no formula.

Excel, LibreOffice and Google Sheets evaluate a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and some strip a leading tab or carriage return first), so a generator named
``=HYPERLINK("http://evil", "click")`` becomes a live link, or worse, in the operator's
spreadsheet. Every CSV file the service writes goes through ``CSVWriter``, which prefixes such a
text cell with a single quote (OWASP's "CSV injection" advice): spreadsheets then show it as text.
Numbers are written as numbers: ``-1.5`` is a rating, not a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` as a spreadsheet shows it literally: text that would start a formula gets a
    leading single quote; anything else (numbers included) is unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class CSVWriter:
    """``csv.writer`` whose every cell passes through ``csv_cell``."""

    def __init__(self, stream: Any, **options: Any) -> None:
        self._writer = csv.writer(stream, **options)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
