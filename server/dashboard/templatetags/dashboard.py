"""Formatting for the dashboard's numbers: missing values show as an en dash, never as "None"."""

from __future__ import annotations

import math
from typing import Any

from django import template

register = template.Library()

DASH = "–"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@register.filter
def percent(value: Any, digits: int = 0) -> str:
    number = _number(value)
    return DASH if number is None else f"{number * 100:.{int(digits)}f}%"


@register.filter
def number(value: Any, digits: int = 2) -> str:
    number = _number(value)
    return DASH if number is None else f"{number:,.{int(digits)}f}"


@register.filter
def hours(value: Any) -> str:
    """A duration in hours, in the largest unit that reads well."""
    number = _number(value)
    if number is None:
        return DASH
    if number < 1 / 60:
        return "under a minute"
    if number < 1:
        return f"{number * 60:.0f} min"
    if number < 48:
        return f"{number:.1f} h"
    if number < 24 * 60:
        return f"{number / 24:.1f} days"
    return f"{number / (24 * 7):.0f} weeks"


@register.filter
def get(mapping: Any, key: Any) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None
