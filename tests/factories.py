"""Small factories: each makes one valid row with sensible defaults; keyword arguments override."""

from __future__ import annotations

import io
import itertools
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from server.generators.models import Generator, GeneratorVersion, Sample, VersionKind
from server.ratings.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    ComparisonKind,
    Judgment,
    Outcome,
    Platform,
    Rater,
)
from server.studies.models import Prompt, Study, StudyVersion

_counter = itertools.count(1)


def user(**fields: Any):  # type: ignore[no-untyped-def]
    number = next(_counter)
    fields.setdefault("username", f"user{number}")
    password = fields.pop("password", "correct horse battery")
    created = get_user_model().objects.create_user(**fields)
    created.set_password(password)
    created.save()
    return created


def study(**fields: Any) -> Study:
    number = next(_counter)
    fields.setdefault("name", f"Study {number}")
    fields.setdefault("slug", f"study-{number}")
    fields.setdefault("question", "Which text is better?")
    return Study.objects.create(**fields)


def prompt(**fields: Any) -> Prompt:
    fields.setdefault("study", fields.get("study") or study())
    fields.setdefault("text", f"Write about the sea, number {next(_counter)}.")
    return Prompt.objects.create(**fields)


def version(*, enrol_in: Study | None = None, **fields: Any) -> GeneratorVersion:
    number = next(_counter)
    fields.setdefault("generator", Generator.objects.create(name=f"generator-{number}"))
    fields.setdefault("label", f"v{number}")
    fields.setdefault("kind", VersionKind.EXTERNAL)
    created = GeneratorVersion.objects.create(**fields)
    if enrol_in is not None:
        StudyVersion.objects.create(study=enrol_in, version=created)
    return created


def sample(**fields: Any) -> Sample:
    fields.setdefault("prompt", fields.get("prompt") or prompt())
    fields.setdefault("version", fields.get("version") or version())
    fields.setdefault("text", f"A sample text {next(_counter)}.")
    return Sample.objects.create(**fields)


def image_bytes(
    width: int = 16,
    height: int = 12,
    color: tuple[int, int, int] = (200, 40, 40),
    fmt: str = "PNG",
    **options: Any,
) -> bytes:
    """A small solid image (PNG or JPEG) with the given Pillow save options (exif, pnginfo, …)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def image_sample(**fields: Any) -> Sample:
    """An image sample (stored through the images storage: use the ``image_storage`` fixture)."""
    from server.generators.images import image_asset_store

    data = fields.pop("data", None) or image_bytes(color=(next(_counter) % 256, 90, 160))
    fields.setdefault("prompt", fields.get("prompt") or prompt(study=study(modality="image")))
    fields.setdefault("version", fields.get("version") or version())
    return Sample.objects.create(image=image_asset_store(data=data), text="", **fields)


def comparison(**fields: Any) -> Comparison:
    the_prompt = fields.pop("prompt", None) or prompt(study=fields.get("study") or study())
    fields.setdefault("study", the_prompt.study)
    fields.setdefault("sample_a", sample(prompt=the_prompt))
    fields.setdefault("sample_b", sample(prompt=the_prompt))
    return Comparison.objects.create(prompt=the_prompt, **fields)


def rater(**fields: Any) -> Rater:
    """A rater past onboarding (it has acknowledged the guidelines); pass
    ``guidelines_acknowledged_at=None`` for a new one."""
    fields.setdefault("study", fields.get("study") or study())
    fields.setdefault("guidelines_acknowledged_at", timezone.now())
    if "user" not in fields and "external_id" not in fields:
        fields["user"] = user()
    return Rater.objects.create(**fields)


def assignment(**fields: Any) -> Assignment:
    fields.setdefault("comparison", fields.get("comparison") or comparison())
    fields.setdefault("rater", fields.get("rater") or rater(study=fields["comparison"].study))
    fields.setdefault("left_is_a", True)
    now = timezone.now()
    fields.setdefault("reserved_at", now)
    fields.setdefault("expires_at", now + timedelta(minutes=10))
    return Assignment.objects.create(**fields)


def gold_comparison(**fields: Any) -> Comparison:
    """A gold comparison whose known better sample is ``gold_answer`` (default A)."""
    fields.setdefault("kind", ComparisonKind.GOLD)
    fields.setdefault("gold_answer", "A")
    return comparison(**fields)


def crowd_rater(*, platform: str = Platform.PROLIFIC, **fields: Any) -> Rater:
    """A crowd participant past onboarding (see ``rater``)."""
    fields.setdefault("study", fields.get("study") or study())
    fields.setdefault("guidelines_acknowledged_at", timezone.now())
    fields.setdefault("external_id", f"participant-{next(_counter)}")
    return Rater.objects.create(platform=platform, **fields)


def judgment(**fields: Any) -> Judgment:
    """A live judgment on a completed assignment (the assignment is marked completed)."""
    the_assignment = fields.pop("assignment", None) or assignment(
        **{key: fields.pop(key) for key in ("comparison", "rater", "left_is_a") if key in fields}
    )
    Assignment.objects.filter(id=the_assignment.id).update(status=AssignmentStatus.COMPLETED)
    the_assignment.status = AssignmentStatus.COMPLETED
    fields.setdefault("outcome", Outcome.A)
    fields.setdefault("idempotency_key", f"key-{next(_counter)}")
    fields.setdefault("submitted_at", timezone.now())
    return Judgment.objects.create(assignment=the_assignment, **fields)
