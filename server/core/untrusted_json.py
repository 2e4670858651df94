"""Reading JSON that comes from outside (request bodies, import files, form fields), once, the same way.

Python's ``json`` accepts more than the database and the rest of the code can take:

- nesting as deep as the interpreter's stack, and past it a ``RecursionError`` (a 500, not a 400);
- ``NaN``, ``Infinity`` and numbers such as ``1e400`` that read as infinite: PostgreSQL's jsonb
  refuses all three, and no option or measurement here is meaningfully infinite;
- ``"\\ud800"``: an escaped lone surrogate is no character; UTF-8 cannot encode it, so the
  database driver fails on it;
- ``"\\u0000"``: PostgreSQL's text and jsonb cannot hold a NUL character.

``json_loads_untrusted`` refuses all of these with an ``UntrustedJSONError`` that says what was wrong
and where (``rows[0].metadata.a``), and ``json_value_problem`` / ``text_problem`` check values that
arrived some other way (a CSV cell, a form field).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Levels of nested arrays and objects in one document. Real payloads use a handful (a request body,
# its rows, a row's metadata, a few levels inside that); 64 leaves room for any of them and stays
# far below the interpreter's stack limit (~1000 frames), which every JSON encoder and decoder on
# the way to the database shares.
MAX_JSON_DEPTH = 64

# Characters no stored string may hold: NUL (PostgreSQL) and surrogate code points, which in a
# Python string are always lone (json joins an escaped pair into one character).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UntrustedJSONError(ValueError):
    """JSON refused: ``message`` says why, ``path`` where (empty for the document as a whole)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (\\u0000), which cannot be stored"
    return f"contains a lone surrogate (\\u{ord(found.group()):04x}), which is not a character"


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def json_value_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """The first (path, message) that makes ``value`` unstorable, or None.

    Checks every string (object keys included), every number and the nesting depth; iterative, so
    a value too deep for recursion is reported, not crashed on.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return path, problem
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "is not a finite number"
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                return path, f"nests arrays and objects deeper than {max_depth} levels"
            if isinstance(item, dict):
                children = []
                for key, child in item.items():
                    if not isinstance(key, str):  # only from Python callers: JSON keys are strings
                        return path, "has a key that is not text"
                    problem = text_problem(key)
                    if problem:
                        return path, f"has a key that {problem}"
                    children.append((child, _key_path(path, key), depth + 1))
            else:
                children = [(child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item)]
            stack.extend(reversed(children))  # depth first, in document order
    return None


def _refuse_constant(name: str) -> Any:
    raise UntrustedJSONError(f"is not valid JSON ({name} is not a number)")


def json_loads_untrusted(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``text`` as strict JSON whose every value the database can store.

    Raises ``UntrustedJSONError`` for invalid JSON (with its position), for nesting deeper than
    ``max_depth``, for NaN and infinite numbers, for a NUL or lone surrogate in any string.
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        # The decoder recursed past the interpreter's stack: deeper than any limit we allow.
        raise UntrustedJSONError(f"nests arrays and objects deeper than {max_depth} levels") from None
    except json.JSONDecodeError as error:
        where = f"column {error.colno}" if error.lineno == 1 else f"line {error.lineno}, column {error.colno}"
        reason = error.msg.removesuffix(" at")  # Python says "Invalid control character at"
        raise UntrustedJSONError(f"is not valid JSON ({reason} at {where})") from None
    except UntrustedJSONError:
        raise
    except ValueError:  # the one other failure: an integer of more than 4300 digits (Python's limit)
        raise UntrustedJSONError("is not valid JSON (a number has too many digits)") from None
    problem = json_value_problem(value, max_depth=max_depth)
    if problem is not None:
        raise UntrustedJSONError(problem[1], path=problem[0])
    return value
