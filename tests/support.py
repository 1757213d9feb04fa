"""Pieces several test modules share: the installed `boltic`, an in-memory keyring
backend, fake clocks, `boltic server --port 0` in a subprocess, cleaning up subprocesses."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

# The console script pip installed beside this interpreter, wherever the venv lives.
BOLTIC = str(Path(sys.executable).with_name("boltic"))


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


def start_server(
    db: Path, env: dict[str, str], *args: str, stderr: int = subprocess.DEVNULL
) -> tuple[subprocess.Popen[str], str]:
    """`boltic server --port 0 ARGS` and the API URL it printed first."""
    process = subprocess.Popen(
        [sys.executable, "-m", "boltic_cli", "server", "--port", "0", "--db", str(db), *args],
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
