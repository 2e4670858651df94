"""The embedded broker: kombu's filesystem transport with atomic writes and a quarantine.

kombu's own filesystem transport (5.7) writes a message straight into the queue folder, so a
consumer polling that folder can take the file while it is still empty or half written; it then
raises ``JSONDecodeError`` out of ``drain_events`` and Celery stops the whole worker
("Unrecoverable error"). Its exchange tables are rewritten in place the same way. And it claims a
message with ``shutil.move`` to the temporary folder, which copies and deletes when that folder is
on another filesystem, so two consumers can both take one message.

This transport keeps kombu's folder layout and file names and changes three things:

- a message (and an exchange table) is written to a staging folder and renamed into place, so a
  reader sees either nothing or the whole file;
- a consumer claims a message by renaming it into a folder on the same filesystem: exactly one
  ``rename`` wins, so a message is delivered once;
- a message that cannot be read as a kombu message is moved to a ``malformed`` folder with an
  error in the log, and the consumer goes on with the next one.

Durability: the files are not fsynced (a message costs ~0.1 ms instead of ~5 ms). A message lost
to a power cut is found again by the reaper, which re-sends jobs left queued (the job row in the
database is the record; the message only wakes a worker).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from collections import deque
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

logger = logging.getLogger(__name__)

# The URL scheme Celery is given for the embedded broker (the setting itself stays filesystem://).
SCHEME = "lovelace-files"
TRANSPORT_ALIASES[SCHEME] = "workers.broker:Transport"

SUBFOLDERS = ("queue", "staging", "claimed", "malformed", "control")


def transport_options(folder: Path) -> dict[str, Any]:
    """Create the broker's folders under ``folder`` and return the transport options for them."""
    for sub in SUBFOLDERS:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "staging_folder": str(folder / "staging"),
        "claimed_folder": str(folder / "claimed"),
        "malformed_folder": str(folder / "malformed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
        "polling_interval": 0.5,
    }


def write_atomically(path: Path | str, data: bytes, *, staging: Path | str) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees a partial file.

    ``staging`` must be on the same filesystem as ``path`` (rename is atomic only there).
    """
    temporary = os.path.join(staging, f".{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)
    try:
        os.replace(temporary, path)
    except BaseException:
        with _ignore_missing():
            os.unlink(temporary)
        raise


class _ignore_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, FileNotFoundError)


class Channel(filesystem.Channel):
    """A filesystem channel whose writes are atomic and whose reads survive bad files."""

    # ---- messages -------------------------------------------------------------------------

    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        # Names sort in sending order across processes: wall-clock nanoseconds, zero-padded.
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        try:
            write_atomically(
                os.path.join(self.data_folder_out, name),
                str_to_bytes(dumps(payload)),
                staging=self.staging_folder,
            )
        except OSError as error:
            raise filesystem.ChannelError(f"Cannot add message {name!r} to the broker folder") from error

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        pending = self._pending.setdefault(queue, deque())
        if not pending:
            suffix = f"{queue}.msg"
            pending.extend(
                sorted(name for name in os.listdir(self.data_folder_in) if name.partition(".")[2] == suffix)
            )
        while pending:
            name = pending.popleft()
            claimed = os.path.join(self.claimed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            try:
                with open(claimed, "rb") as file:
                    raw = file.read()
                payload = self._parse(raw)
            except Exception as error:
                self._quarantine(claimed, name, error)
                continue
            with _ignore_missing():
                os.unlink(claimed)
            return payload
        raise Empty()

    def _parse(self, raw: bytes) -> dict[str, Any]:
        """The message in ``raw``, checked the way the consumer will read it (so a bad file fails
        here, where it can be set aside, and not inside the worker's event loop)."""
        payload = loads(bytes_to_str(raw))
        if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
            raise ValueError("not a kombu message: no properties")
        properties = payload["properties"]
        if "delivery_tag" not in properties or not isinstance(properties.get("delivery_info", {}), dict):
            raise ValueError("not a kombu message: no delivery tag")
        self.Message(payload, channel=self)  # decodes the body as the consumer will
        return payload

    def _quarantine(self, claimed: str, name: str, error: Exception) -> None:
        target = os.path.join(self.malformed_folder, name)
        try:
            os.replace(claimed, target)
        except OSError:
            target = "(could not be moved)"
        logger.error(
            "broker: set aside malformed message %s (%s: %s) -> %s", name, type(error).__name__, error, target
        )

    @cached_property
    def _pending(self) -> dict[str, deque[str]]:
        # Names listed but not yet claimed, per queue: one directory listing serves many messages.
        return {}

    @cached_property
    def staging_folder(self) -> str:
        return self.transport_options.get("staging_folder", "staging")

    @cached_property
    def claimed_folder(self) -> str:
        return self.transport_options.get("claimed_folder", "claimed")

    @cached_property
    def malformed_folder(self) -> str:
        return self.transport_options.get("malformed_folder", "malformed")

    # ---- exchange tables ------------------------------------------------------------------
    # Readers never lock: a table file is always replaced whole. Writers serialise their
    # read-modify-write on a lock file beside it.

    def get_table(self, exchange: str) -> list[filesystem.exchange_queue_t]:
        file = self._exchange_file(exchange)
        try:
            table = loads(bytes_to_str(file.read_bytes()))
        except FileNotFoundError:
            return []
        except OSError as error:
            raise filesystem.ChannelError(f"Cannot open {file}") from error
        return [filesystem.exchange_queue_t(*row) for row in table]

    def _update_table(self, exchange: str, change: Any) -> None:
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        with open(f"{file}.lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                queues = self.get_table(exchange)
                changed = change(queues)
                if changed is not None:
                    write_atomically(file, str_to_bytes(dumps(changed)), staging=self.staging_folder)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        row = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")

        def add(queues: list[filesystem.exchange_queue_t]) -> list[Any] | None:
            return None if row in queues else [row, *queues]

        self._update_table(exchange, add)

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:
        filesystem.virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        row = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")

        def remove(queues: list[filesystem.exchange_queue_t]) -> list[Any] | None:
            return [q for q in queues if q != row] if row in queues else None

        self._update_table(exchange, remove)


class Transport(filesystem.Transport):
    Channel = Channel
    global_state = filesystem.virtual.BrokerState()
    driver_type = "filesystem"
    driver_name = "lovelace-files"
