"""A throwaway PostgreSQL for the tests, started from the machine's own binaries.

``pg_server`` (session) runs ``initdb`` and ``pg_ctl`` in a directory of its own under
the system temp dir (not pytest's ``tmp_path``, which is 0700 to root: PostgreSQL
refuses to run as root, so as root everything runs as the ``postgres`` user, which
owns that directory). It listens on a free TCP port on 127.0.0.1 and on a unix socket
in the same directory, trusts local connections, keeps PostgreSQL's default fsync
settings (durability is part of what the tests check), and is stopped at the end of
the session. ``pg_database`` gives each test a fresh database made from a template
(``CREATE DATABASE ... TEMPLATE``) and drops it afterwards.

Where no PostgreSQL binaries exist the tests that need them skip, saying so; under CI
(``CI`` set) that is a failure instead: ``.ci/run`` installs PostgreSQL.

Admin statements go through ``psql`` (no driver needed for the fixture itself).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TEMPLATE = "boltic_template"
SUPERUSER = "postgres"


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``psql``: ``pg_config --bindir``
    when it has them, else the newest ``/usr/lib/postgresql/*/bin`` (Debian's layout),
    else ``$PATH``; None when there is no PostgreSQL server here."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            if out:
                candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.parent.name
        return tuple(int(p) for p in part.split(".") if p.isdigit())

    found = glob.glob("/usr/lib/postgresql/*/bin/initdb") + glob.glob("/usr/local/pgsql/bin/initdb")
    candidates += [Path(p).parent for p in sorted(found, key=version, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "psql")):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in its own directory; ``url(db)`` connects over TCP."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="boltic-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "postgres.log"
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        self._counter = itertools.count(1)
        self.sockets.mkdir()
        if self._as_postgres:
            # root cannot run PostgreSQL: the postgres user owns everything it writes.
            for path in (self.root, self.sockets):
                shutil.chown(path, SUPERUSER, SUPERUSER)
            self.root.chmod(0o755)

    # running the tools

    def _run(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            user=SUPERUSER if self._as_postgres else None,
            cwd=self.root,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
                + (f"\n{self.log.read_text(errors='replace')[-3000:]}" if self.log.exists() else "")
            )
        return result.stdout

    def _tool(self, name: str) -> str:
        return str(self.bindir / name)

    def init(self) -> None:
        # --no-sync: initdb's own files need not reach the disk (a crash here just loses
        # the throwaway cluster); the running server keeps fsync on.
        self._run(
            self._tool("initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )

    def start(self, port: int | None = None) -> None:
        """Start (or restart after ``stop``) on ``port`` (the previous one, or a free one)."""
        for attempt in range(5):
            self.port = port or self.port or _free_port()
            options = (
                f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories={self.sockets} -c max_connections=200 "
                "-c shared_buffers=64MB"
            )
            try:
                self._run(
                    self._tool("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                    timeout=90,
                )
                return
            except RuntimeError:
                if port is not None or attempt == 4:
                    raise
                self.port = 0  # the free port was taken meanwhile: another one

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast|immediate`` (immediate: as after a crash)."""
        self._run(self._tool("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the unix socket; the rows, tab-separated."""
        return self._run(
            self._tool("psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.sockets),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            db,
            "-c",
            sql,
        )

    def url(self, db: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{db}"

    # databases

    def create_template(self) -> None:
        self.psql(f"CREATE DATABASE {TEMPLATE}")

    def new_database(self) -> str:
        """A fresh database made from the template; its name."""
        name = f"boltic_test_{os.getpid()}_{next(self._counter)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(RuntimeError):
            self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """A running cluster with the template database; skips (fails under CI) without
    PostgreSQL binaries."""
    bindir = find_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL binaries (initdb, pg_ctl, psql) not found: "
            "apt-get install postgresql, or put them on PATH"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
        pytest.skip(reason)
    server = PostgresServer(bindir)
    atexit.register(server.destroy)  # also when the session dies before teardown
    started = time.monotonic()
    try:
        server.init()
        server.start()
        server.create_template()
    except BaseException:
        server.destroy()
        raise
    server.startup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL (started on first use, stopped at the end)."""
    server = start_postgres()
    yield server
    server.destroy()


@pytest.fixture
def pg_database(pg_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database for this test (dropped after it)."""
    name = pg_server.new_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)
