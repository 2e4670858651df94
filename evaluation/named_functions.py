"""Look up a function by a built-in name or a ``module:function`` path: how the simulated raters'
oracles (text and image) are chosen on a command line."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def function_by_name(name_or_path: str, built_in: Mapping[str, Callable[..., Any]], what: str) -> Any:
    """``built_in[name_or_path]``, else the callable that ``module:function`` names.

    ``what`` names the kind in messages ("oracle", "image oracle"). Raises ``ValueError`` naming
    what was wrong (and the built-in names) for an unknown name, a module that does not import, or
    an attribute that is missing or not callable.
    """
    if name_or_path in built_in:
        return built_in[name_or_path]
    names = ", ".join(sorted(built_in))
    subject = what[0].upper() + what[1:]
    module_name, _, function_name = name_or_path.partition(":")
    if not module_name or not function_name:
        raise ValueError(
            f"Unknown {what} {name_or_path!r}: use a built-in name ({names}) or module:function."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"{subject} {name_or_path!r}: cannot import module {module_name!r} ({error})."
        ) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise ValueError(f"{subject} {name_or_path!r}: module {module_name!r} has no {function_name!r}.")
    if not callable(function):
        raise ValueError(f"{subject} {name_or_path!r} is not a function.")
    return function
