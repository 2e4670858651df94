"""A PostgreSQL server of the test's own, for faults that the machine's shared server must never
suffer (other test runs use it): initdb into a temporary folder, ``pg_ctl start`` on a free port,
stop, restart, and always removed at the end.

initdb refuses to run as root, so as root (CI) the server runs as the ``postgres`` OS user through
``runuser``; as any other user it runs as that user. Settings: trust authentication, TCP on
127.0.0.1 only, ``fsync=off`` for speed. ``synchronous_commit`` stays on: a commit is written to
the operating system before it is acknowledged, so an immediate stop (every server process killed,
crash recovery at the next start) loses no acknowledged transaction, as on a production server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

POSTGRES_ROOT = Path("/usr/lib/postgresql")
OS_USER = "postgres"  # the account that Debian's postgresql packages create
SUPERUSER = "postgres"  # the database role initdb creates


class PrivatePostgresUnavailable(RuntimeError):
    """This machine cannot run a private server; the message says why (a test skips with it)."""


def find_bin_dir() -> Path:
    """The newest installed server's binaries (``/usr/lib/postgresql/<version>/bin``)."""
    candidates = [path.parent for path in POSTGRES_ROOT.glob("*/bin/initdb")]
    if not candidates:
        raise PrivatePostgresUnavailable(f"no PostgreSQL server binaries under {POSTGRES_ROOT}/<version>/bin")
    return max(candidates, key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)


def run_as_prefix() -> tuple[list[str], str | None]:
    """The command prefix that runs the server's tools as a non-root user, and that user's name
    (None: the current user, who is not root)."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        raise PrivatePostgresUnavailable(
            f"running as root, and initdb refuses root: no {OS_USER!r} OS user to run it as"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PrivatePostgresUnavailable("running as root, and initdb refuses root: no runuser to drop to it")
    return [runuser, "-u", OS_USER, "--"], OS_USER


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivatePostgres:
    bin_dir: Path
    root: Path  # holds data/, the socket and server.log; owned by the server's user
    port: int
    prefix: list[str]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *arguments: str, timeout: float = 60) -> None:
        command = [*self.prefix, str(self.bin_dir / tool), *arguments]
        # cwd: the server's user may not be allowed into the caller's working directory.
        finished = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False
        )
        if finished.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(arguments)} exited {finished.returncode}:\n"
                f"{finished.stdout}{finished.stderr}\n--- server log ---\n{self.log_tail()}"
            )

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

    def initdb(self) -> None:
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "50",
            "shared_buffers": "32MB",
        }
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# tests/integration/private_postgres.py\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        """Start and wait until it accepts connections (after crash recovery, if it was killed)."""
        self._run("pg_ctl", "start", "--pgdata", str(self.data_dir), "--log", str(self.log_path), "--wait")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect clients, checkpoint, exit. ``immediate``: kill every server process
        at once, like a crash; the next start runs crash recovery."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", mode, "--wait")

    def restart(self, *, down_for: float = 0.0) -> None:
        """The harsh restart: an immediate stop (a crash to every connected client), ``down_for``
        seconds with no server at all (connections refused), then a start."""
        self.stop("immediate")
        time.sleep(down_for)
        self.start()

    def kill_leftover(self) -> None:
        """Last resort at teardown when pg_ctl could not stop it: SIGKILL the postmaster."""
        with suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private server; stopped and deleted on exit whatever happened.

    Raises PrivatePostgresUnavailable (before creating anything) when this machine cannot run one.
    """
    bin_dir = find_bin_dir()
    prefix, user = run_as_prefix()
    # Not under pytest's tmp_path: that is private to the current user, and the server's user
    # must be able to reach its folder.
    root = Path(tempfile.mkdtemp(prefix="lovelace-private-pg-"))
    server = PrivatePostgres(bin_dir=bin_dir, root=root, port=free_port(), prefix=prefix)
    try:
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(root, account.pw_uid, account.pw_gid)
        server.initdb()
        server.start()
        yield server
    finally:
        if (server.data_dir / "postmaster.pid").exists():
            try:
                server.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                server.kill_leftover()
        shutil.rmtree(root, ignore_errors=True)
