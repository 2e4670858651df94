"""Integer codes for the outcome of one pairwise judgment.

The evaluation functions take outcomes as plain integer arrays so that a caller can pass a column
straight from a query; these are the codes they expect. "A" and "B" are the two samples of a
comparison in its canonical order (not the side the rater saw them on).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal


class Outcome(IntEnum):
    A_WINS = 0
    B_WINS = 1
    TIE = 2
    BOTH_BAD = 3


# What to do with "both bad" votes when aggregating: count them as a tie (the rater saw no
# difference in quality) or drop them (the rater refused to compare).
BothBadPolicy = Literal["tie", "exclude"]
