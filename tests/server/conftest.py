"""Fixtures for the server's tests: sources, senders, and servers in threads or processes."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import reap, start_server


@pytest.fixture
def make_source(api):
    def make(name: str = "web", type: str = "javascript") -> dict[str, Any]:
        response = api.post("/streams/sources", json={"name": name, "type": type})
        assert response.status_code == 201, response.text
        return response.json()

    return make


@pytest.fixture
def source(make_source) -> dict[str, Any]:
    return make_source()


@pytest.fixture
def send(api):
    """POST an event as admin (or with ``token``); returns the response."""

    def post(source_id: str, type: str = "page_view", token: str | None = None, **fields: Any):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return api.post(
            "/streams/events", json={"sourceId": source_id, "type": type, **fields}, headers=headers
        )

    return post


@pytest.fixture
def store(api, server_app):
    """The running app's store (for checks of what was committed)."""
    return server_app.state.runtime.store


@dataclass
class StartedServer:
    """A ``boltic server`` subprocess from ``tests.support.start_server``, its pipes unread."""

    process: subprocess.Popen
    url: str
    db: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)


def start_server_process(
    db: Path, env_extra: dict[str, str] | None = None, *args: str
) -> StartedServer:
    env = {
        **os.environ,
        "BOLTIC_DATA_DIR": str(db.parent / "data"),
        "BOLTIC_SERVER_TOKEN": ADMIN_TOKEN,
        **(env_extra or {}),
    }
    process, url = start_server(db, env, *args, stderr=subprocess.PIPE)
    return StartedServer(process, url, db)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Any]:
    """A factory of ``boltic server`` subprocesses; all are killed at the end."""
    started: list[StartedServer] = []

    def start(env_extra: dict[str, str] | None = None, *args: str, db: Path | None = None):
        server = start_server_process(db or tmp_path / "server.db", env_extra, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        reap(server.process)


@pytest.fixture
def threaded_server(server_settings) -> Iterator[Any]:
    """The app under uvicorn in a thread (real sockets, real concurrency)."""
    from boltic_cli.server.runner import start_in_thread

    handle = start_in_thread(server_settings)
    yield handle
    handle.stop()
