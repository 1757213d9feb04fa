"""`boltic server` in a subprocess, as users run it, for the fault tests."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0


class ServerProcess:
    """One ``python -m boltic_cli server --port 0`` run; stdout and stderr drained by threads.

    ``url`` is the API URL the server printed as its first stdout line.
    """

    def __init__(
        self,
        db: Path,
        *,
        token: str | None,
        home: Path,
        preexec_fn: Callable[[], None] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.db = db
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
        cmd = [sys.executable, "-m", "boltic_cli", "server", "--port", "0", "--db", str(self.db)]
        if self.token is not None:
            cmd += ["--token", self.token]
        return cmd

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

    def stop(self) -> int | None:
        """SIGTERM, as a service manager would; SIGKILL if it does not end in 10 s."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
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


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class UniqueTimestamps:
    """Distinct event timestamps, one millisecond apart, safe to share between threads.

    Distinct timestamps let a reader page through ``GET /streams/events`` (newest
    first, ``to`` exclusive) with no ties at page edges.
    """

    def __init__(self, start: datetime = datetime(2020, 1, 1, tzinfo=UTC)) -> None:
        self._start = start
        self._counter = itertools.count()

    def next(self) -> str:
        when = self._start + timedelta(milliseconds=next(self._counter))
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def all_event_ids(client: Any, source_id: str) -> Iterator[str]:
    """Every stored event id of a source, paging on ``to`` (works with UniqueTimestamps)."""
    params: dict[str, Any] = {"sourceId": source_id, "limit": 1000}
    while True:
        response = client.get("/streams/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        yield from (event["id"] for event in page)
        if len(page) < params["limit"]:
            return
        params["to"] = min(event["timestamp"] for event in page)
