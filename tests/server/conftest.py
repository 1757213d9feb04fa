"""Fixtures for the server's tests: sources, senders, and servers in threads or processes.

Every test here that uses the server app runs twice, once per store: SQLite (a file in
``tmp_path``) and PostgreSQL (a fresh database on the session's throwaway cluster,
tests/pg.py), through the one ``store_kind`` parameter of ``server_settings``, so the
two stores cannot drift. A test that checks something only one store has is marked
``@pytest.mark.sqlite_only("why")`` (it then runs on SQLite alone). ``db`` reads and
writes the stored rows directly on either store; ``store_call`` runs a store
coroutine on the app's own event loop (the PostgreSQL pool lives there). A
``boltic server`` subprocess runs on either store too: ``server_process(db=server_db)``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import reap, start_server

STORES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): a server test that runs on the SQLite store alone"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_kind" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only")
        metafunc.parametrize("store_kind", ["sqlite"] if only else list(STORES))


@pytest.fixture
def store_kind() -> str:
    """``sqlite`` or ``postgresql`` (parametrized by pytest_generate_tests)."""
    return "sqlite"


@pytest.fixture
def server_settings(request: pytest.FixtureRequest, store_kind: str, tmp_path: Path):
    """Settings for a server on SQLite or on a fresh PostgreSQL database."""
    from boltic_cli.server.settings import ServerSettings

    url = request.getfixturevalue("pg_database") if store_kind == "postgresql" else None
    return ServerSettings(db_path=tmp_path / "server.db", admin_token=ADMIN_TOKEN, database_url=url)


class StoredRows:
    """Direct SQL on the server's database, whichever store: ``?`` placeholders work
    on both (turned into ``$1, $2, ...`` for PostgreSQL)."""

    def __init__(self, settings: Any) -> None:
        self.kind = "postgresql" if settings.database_url else "sqlite"
        self.settings = settings

    def rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.settings.db_path) as conn:
                return conn.execute(sql, params).fetchall()
        return [tuple(r) for r in self._pg("fetch", sql, params)]

    def execute(self, sql: str, params: tuple | list = ()) -> None:
        if self.kind == "sqlite":
            with sqlite3.connect(self.settings.db_path) as conn:
                conn.executescript(sql) if not params else conn.execute(sql, params)
            return
        self._pg("execute", sql, params)

    def _pg(self, method: str, sql: str, params: tuple | list) -> Any:
        import asyncpg

        counter = iter(range(1, len(params) + 1))
        sql = re.sub(r"\?", lambda _: f"${next(counter)}", sql) if params else sql

        async def run() -> Any:
            conn = await asyncpg.connect(self.settings.database_url)
            try:
                return await getattr(conn, method)(sql, *params)
            finally:
                await conn.close()

        return asyncio.run(run())


@pytest.fixture
def server_db(server_settings) -> Path | str:
    """What ``boltic server --db`` gets for ``server_settings``' store: its SQLite file,
    or its fresh PostgreSQL database's URL (a test taking this runs on both stores)."""
    return server_settings.database_url or server_settings.db_path


@pytest.fixture
def db(server_settings) -> StoredRows:
    """The server's stored rows, read (and changed) with SQL, on either store."""
    return StoredRows(server_settings)


@pytest.fixture
def store_call(api) -> Callable[..., Any]:
    """``store_call(fn, *args)``: await ``fn(*args)`` on the app's event loop."""

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        return api.portal.call(fn, *args)

    return call


@pytest.fixture
def load_events(store, store_call) -> Callable[[list], None]:
    """Insert EventRecords straight into the store (counted like sent events)."""

    def load(records: list) -> None:
        if hasattr(store, "run_in_writer"):
            from boltic_cli.server.store.sqlite import insert_events

            store.run_in_writer(lambda conn: insert_events(conn, records)).result()
        else:
            store_call(store.insert_records, records)

    return load


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
    db: Path | str

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)


def start_server_process(
    db: Path | str, env_extra: dict[str, str] | None = None, *args: str, data_dir: Path
) -> StartedServer:
    env = {
        **os.environ,
        "BOLTIC_DATA_DIR": str(data_dir),
        "BOLTIC_SERVER_TOKEN": ADMIN_TOKEN,
        **(env_extra or {}),
    }
    process, url = start_server(db, env, *args, stderr=subprocess.PIPE)
    return StartedServer(process, url, db)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Any]:
    """A factory of ``boltic server`` subprocesses; all are killed at the end."""
    started: list[StartedServer] = []

    def start(env_extra: dict[str, str] | None = None, *args: str, db: Path | str | None = None):
        # ``db``: a SQLite file (default tmp_path/server.db) or a PostgreSQL URL.
        server = start_server_process(
            db or tmp_path / "server.db", env_extra, *args, data_dir=tmp_path / "data"
        )
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
