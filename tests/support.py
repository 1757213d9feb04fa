"""Pieces several test modules share: the ONE CLI runner (``invoke_cli``), the
in-process server as an httpx transport (``AppTransport``), the ONE server-process
launcher (``ServerProcess``; ``start_server`` is its short form), the installed
`boltic`, an in-memory keyring backend, fake clocks, cleaning up subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

# The console script pip installed beside this interpreter, wherever the venv lives.
BOLTIC = str(Path(sys.executable).with_name("boltic"))


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def ndjson(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def invoke_cli(
    *args: str,
    environ: dict[str, str],
    input: str | None = None,
    transport: httpx.BaseTransport | None = None,
    tty: bool = False,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], Any] | None = None,
    charset: str = "utf-8",
) -> CliResult:
    """Run ``boltic ARGS`` in-process (typer's CliRunner) with exactly ``environ``.

    ``transport`` routes the CLI's HTTP (e.g. ``AppTransport(api)``); ``tty`` makes
    stdin/stdout/stderr look like a terminal; ``sleep``/``clock`` replace the
    command's; ``charset`` is the encoding of the runner's streams (``"cp1252"``: a
    console that lacks most characters). An exception other than SystemExit is
    re-raised (a crash is a failure).
    """
    from typer.testing import CliRunner

    from boltic_cli.app import app
    from boltic_cli.context import Environment

    environment = Environment(
        environ=environ,
        stdin_isatty=tty,
        stdout_isatty=tty,
        stderr_isatty=tty,
        transport=transport,
    )
    if sleep is not None:
        environment.sleep = sleep
    if clock is not None:
        environment.clock = clock
    result = CliRunner(charset=charset).invoke(app, list(args), input=input, obj=environment)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


class AppTransport(httpx.BaseTransport):
    """An httpx transport that hands each request to an in-process app's TestClient.

    Starlette's TestClient is an ``httpx.Client``: sending through its public
    ``send`` reaches the app without touching its private ``_transport``.
    """

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # The whole answer is read here: a streamed answer that a test abandons (a
        # simulated Ctrl-C) would keep the app's portal waiting at teardown.
        return self.client.send(request, stream=False, follow_redirects=False)


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps entries in a dict, and counts reads."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.reads = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.entries:
            raise PasswordDeleteError("not found")
        del self.entries[(service, username)]


START_TIMEOUT = 30.0


class ServerProcess:
    """One ``python -m boltic_cli server --port 0`` run; stdout and stderr drained by threads.

    The one launcher of ``boltic server`` subprocesses in the tests. ``url`` is the API
    URL the server printed as its first stdout line; ``stdout_lines``/``stderr_text()``
    what it wrote. Its dirs (config, data, cache) live under ``home``, so it never
    reads or writes the developer's real token. ``db`` is a SQLite file or a
    ``postgresql://`` URL; ``args`` are more ``boltic server`` options (``--workers 2``).
    """

    def __init__(
        self,
        db: Path | str,
        *,
        token: str | None,
        home: Path,
        preexec_fn: Callable[[], None] | None = None,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.db = db
        self.args = args
        self.token = token
        self.home = home
        self.preexec_fn = preexec_fn
        self.extra_env = extra_env or {}
        self.url = ""
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self._first_line = threading.Event()
        self._drainers: list[threading.Thread] = []

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def env(self) -> dict[str, str]:
        # Isolated dirs: the server must not read or write the developer's real token.
        return {
            **os.environ,
            "HOME": str(self.home),
            "BOLTIC_CONFIG_DIR": str(self.home / "config"),
            "BOLTIC_DATA_DIR": str(self.home / "data"),
            "BOLTIC_CACHE_DIR": str(self.home / "cache"),
            "NO_COLOR": "1",
            **self.extra_env,
        }

    def command(self) -> list[str]:
        token = ["--token", self.token] if self.token else []
        return server_command(self.db, *token, *self.args)

    def start(self) -> str:
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            preexec_fn=self.preexec_fn,
        )
        self._drain(self._proc.stdout, self.stdout_lines, first_line=self._first_line)
        self._drain(self._proc.stderr, self.stderr_lines)
        if not self._first_line.wait(START_TIMEOUT) or not self.stdout_lines:
            self.kill()
            raise AssertionError(
                f"boltic server printed no URL in {START_TIMEOUT}s; stderr:\n{self.stderr_text()}"
            )
        self.url = self.stdout_lines[0].strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url
        assert self.url.endswith("/v1"), f"the printed API URL should end in /v1: {self.url!r}"
        return self.url

    def _drain(self, stream: Any, lines: list[str], first_line: threading.Event | None = None):
        def read() -> None:
            for line in stream:
                lines.append(line)
                if first_line is not None:
                    first_line.set()
            if first_line is not None:
                first_line.set()

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        self._drainers.append(thread)

    def stderr_text(self) -> str:
        return "".join(self.stderr_lines)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """``sig`` (SIGTERM, as a service manager would); SIGKILL if it does not end in
        10 s. Its exit status."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return self._reap()

    def _reap(self) -> int | None:
        if self._proc is None:
            return None
        code = self._proc.wait(10)
        for thread in self._drainers:
            thread.join(5)
        return code

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_command(db: Path | str, *args: str) -> list[str]:
    """The command line of every ``boltic server`` the tests start: a free port, ``db``."""
    return [sys.executable, "-m", "boltic_cli", "server", "--port", "0", "--db", str(db), *args]


def start_server(
    db: Path, env: dict[str, str], *args: str, stderr: int = subprocess.DEVNULL
) -> tuple[subprocess.Popen[str], str]:
    """`boltic server --port 0 ARGS` and the API URL it printed first.

    The short form of ``ServerProcess`` for tests that read the process's pipes
    themselves (nothing drains them); reap it with ``stop_server`` or ``reap``.
    """
    process = subprocess.Popen(
        server_command(db, *args),
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url:
        log = process.stderr.read() if process.stderr is not None else ""
        reap(process)
        raise AssertionError(f"boltic server did not print its URL: {log}")
    return process, url


def stop_server(process: subprocess.Popen[str]) -> None:
    """SIGTERM, as a user's Ctrl-C or service manager would; its pipes closed."""
    if process.poll() is None:
        process.terminate()
        process.wait(20)
    close_pipes(process)


def reap(process: subprocess.Popen) -> None:
    """Kill ``process`` if it still runs, wait for it, close its pipes."""
    if process.poll() is None:
        process.kill()
    process.wait(10)
    close_pipes(process)


def close_pipes(process: subprocess.Popen) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None and not stream.closed:
            stream.close()


class FakeTime:
    """A wall clock that moves only when the command sleeps (tails end by --duration at once)."""

    def __init__(self, start: datetime = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=max(seconds, 0.01))


class FakeClock:
    """Monotonic seconds that move only when the code under test sleeps; keeps each sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
