"""The ``<id:...>`` URL converter for row ids; importing this module registers it.

Django's ``<int:...>`` takes any number of digits. Ids are 64-bit primary keys, so a larger number
can match no row, and SQLite cannot even bind it (``OverflowError``, a 500 where a 404 belongs).
``<id:...>`` matches 1 to 2**63 - 1 only; any other number is a path that matches nothing (404).
"""

from __future__ import annotations

from django.urls import register_converter

MAX_ROW_ID = 2**63 - 1


class RowIdConverter:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ROW_ID:
            raise ValueError(f"{value} is not a row id")  # Django: the pattern does not match
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(RowIdConverter, "id")
