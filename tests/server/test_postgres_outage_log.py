"""While PostgreSQL is down, `boltic server`'s stderr has one line per problem and no
traceback (design.md: no traceback without --debug), also what its libraries log
(asyncpg's pool retrying its connections). A throwaway PostgreSQL of its own
(tests/pg.py), stopped and started again under a real server subprocess."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.pg import PostgresServer, start_postgres
from tests.support import ServerProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TRACEBACK = "Traceback (most recent call last)"


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for this test alone (stopping it disturbs no other test)."""
    server = start_postgres()
    yield server
    server.destroy()


@pytest.mark.parametrize("workers", [1, 2])
def test_postgresql_down_is_503_without_tracebacks_then_202_again(own_postgres, tmp_path, workers):
    url = own_postgres.url(own_postgres.new_database())
    server = ServerProcess(
        url,
        token=ADMIN_TOKEN,
        home=tmp_path,
        extra_env={"BOLTIC_PG_CONNECT_TIMEOUT": "1"},
        args=("--workers", str(workers)),
    )
    try:
        server.start()
        with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as client:
            source = client.post("/streams/sources", json={"name": "s", "type": "server"})
            assert source.status_code == 201, source.text
            event = {"sourceId": source.json()["id"], "type": "outage"}
            assert client.post("/streams/events", json=event).status_code == 202

            own_postgres.stop("fast")
            refused = []
            deadline = time.monotonic() + 6  # long enough for the pool to retry
            while time.monotonic() < deadline:
                refused.append(client.post("/streams/events", json=event))
                time.sleep(0.3)
            assert {r.status_code for r in refused} == {503}, [r.text for r in refused]
            assert {r.headers.get("Retry-After") for r in refused} == {"1"}

            own_postgres.start()
            back = time.monotonic()
            while (answer := client.post("/streams/events", json=event)).status_code != 202:
                assert time.monotonic() - back < 10, answer.text
                time.sleep(0.2)
    finally:
        server.stop()
    stderr = server.stderr_text()
    assert TRACEBACK not in stderr, stderr
    assert not [line for line in stderr.splitlines() if line.startswith((" ", "\t"))], stderr


@pytest.mark.parametrize("debug", [False, True])
def test_library_records_are_one_line_unless_debug(debug):
    import importlib
    import logging
    import sys

    from boltic_cli.server.runner import log_config

    config = log_config("info", debug=debug)
    assert config["loggers"]["asyncpg"]["handlers"] == ["library"]
    spec = dict(config["formatters"]["library"])
    module, name = spec.pop("()").rsplit(".", 1)
    formatter = getattr(importlib.import_module(module), name)(**spec)
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("asyncpg.pool", logging.WARNING, "x", 1, "retrying", None, exc_info)
    lines = formatter.format(record).splitlines()
    if debug:
        assert lines[0] == "WARNING:  retrying" and lines[1].startswith(TRACEBACK)
    else:
        assert lines == [
            "WARNING:  retrying (ConnectionRefusedError: [Errno 111] Connection refused)"
        ]
