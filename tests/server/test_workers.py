"""`boltic server --workers N`: N processes on one address and one PostgreSQL database,
under uvicorn's supervisor (design.md "Several server processes"; issue 19).

Real subprocesses, real sockets, a real PostgreSQL (tests/pg.py). Worker processes are
found through /proc (children of the server whose command line is multiprocessing's
spawn entry point)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import ServerProcess, server_command

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DIED = re.compile(r"worker (\d+) died \((.+)\); started worker (\d+)")


def workers_of(pid: int) -> list[int]:
    """The pids of ``pid``'s worker processes (its spawned children), sorted."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def workers_server(tmp_path: Path, pg_database: str) -> Iterator:
    """A factory of ``boltic server --workers N --db <PG>`` processes; the servers and
    any worker left behind are killed at the end."""
    started: list[ServerProcess] = []
    seen: set[int] = set()

    def start(n: int = 2, env: dict[str, str] | None = None, **kwargs) -> ServerProcess:
        server = ServerProcess(
            pg_database,
            token=ADMIN_TOKEN,
            home=tmp_path,
            extra_env=env,
            args=("--workers", str(n)),
            **kwargs,
        )
        started.append(server)
        server.start()
        seen.update(workers_of(server.pid))
        return server

    start.seen = seen  # type: ignore[attr-defined]
    yield start
    for server in started:
        if server._proc is not None and server._proc.poll() is None:
            seen.update(workers_of(server.pid))
        server.kill()
    for pid in seen:  # an orphaned worker would keep the database busy
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def create_source(url: str) -> dict:
    response = httpx.post(
        f"{url}/streams/sources", json={"name": "workers", "type": "server"}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return response.json()


def send_and_count(url: str, source: dict, n: int) -> list[str]:
    """``n`` events sent with the source's write key, each on a new connection (so the
    workers share them); their ids, checked stored by querying them back."""
    ids = []
    for i in range(n):
        response = httpx.post(
            f"{url}/streams/events",
            json={"sourceId": source["id"], "type": "worker_check", "properties": {"i": i}},
            headers={"Authorization": f"Bearer {source['writeKey']}"},
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["eventId"])
    page = httpx.get(
        f"{url}/streams/events",
        params={"sourceId": source["id"], "limit": 1000},
        headers=ADMIN,
    ).json()
    stored = {event["id"] for event in page["data"]}
    assert set(ids) <= stored
    return ids


def stored_ids(database_url: str) -> list[str]:
    import asyncpg

    async def run() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return [r["id"] for r in await conn.fetch("SELECT id FROM events ORDER BY id")]
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.mark.slow
def test_two_workers_serve_one_address_and_one_database(workers_server):
    server = workers_server(2)

    workers = workers_of(server.pid)
    assert len(workers) == 2, workers
    assert server.stdout_lines == [server.url + "\n"]  # the URL once, nothing else
    source = create_source(server.url)
    ids = send_and_count(server.url, source, 20)
    assert len(set(ids)) == 20
    batch = httpx.post(
        f"{server.url}/streams/events/batch",
        json={"batch": [{"sourceId": source["id"], "type": "b"} for _ in range(50)]},
        headers=ADMIN,
    ).json()
    assert batch["accepted"] == 50
    total = httpx.get(
        f"{server.url}/streams/events", params={"sourceId": source["id"]}, headers=ADMIN
    ).json()["summary"]["totalEvents"]
    assert total == 70
    # Each worker serves on its own: with the other one stopped, requests still succeed.
    for stopped in workers:
        os.kill(stopped, signal.SIGSTOP)
        try:
            send_and_count(server.url, source, 3)
        finally:
            os.kill(stopped, signal.SIGCONT)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, status, last_line",
    [(signal.SIGINT, 130, "Interrupted"), (signal.SIGTERM, 143, "Terminated")],
)
def test_sigint_and_sigterm_stop_every_worker_after_its_requests(
    workers_server, pg_database, sig, status, last_line
):
    # SIGINT as a terminal's Ctrl-C sends it: to the whole process group (the workers
    # get it too); SIGTERM as `kill PID` does: to the supervisor alone.
    server = workers_server(2, {"BOLTIC_SERVER_COMMIT_DELAY": "1"}, preexec_fn=os.setsid)
    workers = workers_of(server.pid)
    source = create_source(server.url)
    answers: list[httpx.Response] = []
    senders = [
        threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"{server.url}/streams/events",
                    json={"sourceId": source["id"], "type": "in_flight"},
                    headers={"Authorization": f"Bearer {source['writeKey']}"},
                    timeout=30,
                )
            )
        )
        for _ in range(4)
    ]
    for sender in senders:
        sender.start()
    time.sleep(0.5)  # the requests are waiting for their commit
    if sig == signal.SIGINT:
        os.killpg(server.pid, signal.SIGINT)
        code = server.stop(signal.SIGINT)  # waits (the signal is already there)
    else:
        code = server.stop(signal.SIGTERM)
    for sender in senders:
        sender.join(30)

    assert code == status, server.stderr_text()
    assert server.stdout_lines == [server.url + "\n"]
    stderr = server.stderr_text()
    assert stderr.splitlines()[-1] == last_line
    assert "Traceback" not in stderr and "died" not in stderr, stderr
    assert not any(alive(pid) for pid in workers)
    assert [a.status_code for a in answers] == [202] * 4
    assert sorted(a.json()["eventId"] for a in answers) == stored_ids(pg_database)


@pytest.mark.slow
def test_a_killed_worker_is_reported_and_replaced(workers_server):
    server = workers_server(2)
    first, second = workers_of(server.pid)
    source = create_source(server.url)

    os.kill(second, signal.SIGKILL)
    wait_until(lambda: DIED.search(server.stderr_text()), what="the report of the death")
    replaced = DIED.search(server.stderr_text())
    assert replaced is not None
    assert (int(replaced[1]), replaced[2]) == (second, "killed by SIGKILL")
    replacement = int(replaced[3])
    wait_until(lambda: workers_of(server.pid) == sorted([first, replacement]), what="2 workers")
    [line] = [line for line in server.stderr_lines if "died" in line]
    assert line.startswith("WARNING:") and line.rstrip().endswith(f"started worker {replacement}")
    # uvicorn's own "Child process [PID] died" line is ours now, with the exit code.
    assert f"[{second}] died" not in server.stderr_text()
    send_and_count(server.url, source, 10)
    # The replacement serves too: with the first one stopped, requests still succeed.
    os.kill(first, signal.SIGSTOP)
    try:
        send_and_count(server.url, source, 3)
    finally:
        os.kill(first, signal.SIGCONT)
    assert server.stop() == 143
    assert "Traceback" not in server.stderr_text()


def test_sqlite_with_several_workers_is_refused_before_binding(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    db = tmp_path / "server.db"
    env = {
        **os.environ,
        "BOLTIC_DATA_DIR": str(tmp_path / "data"),
        "BOLTIC_CONFIG_DIR": str(tmp_path / "config"),
        "BOLTIC_SERVER_TOKEN": "",
    }
    env.pop("BOLTIC_DATABASE_URL", None)
    command = [*server_command(db, "--workers", "2"), "--port", str(port)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    finally:
        holder.close()

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    # One line, and about the workers, not the port we hold: the check comes first.
    assert result.stderr.splitlines() == [
        "Error: cannot run 2 workers on a SQLite database: its file has one writer, held by "
        "one server process (use --db postgresql://... for several processes)"
    ]
    assert not db.exists()
    assert not (tmp_path / "data").exists()  # no admin token file made either


def test_workers_must_be_at_least_one(tmp_path):
    env = {**os.environ, "BOLTIC_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        server_command(tmp_path / "s.db", "--workers", "0"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr and "Traceback" not in result.stderr


def test_the_uvicorn_supervisor_details_we_rely_on():
    """runner._supervise subclasses uvicorn's Multiprocess; this fails when uvicorn
    renames what it uses (see the comment above runner._supervise)."""
    import inspect

    from uvicorn.supervisors import Multiprocess
    from uvicorn.supervisors.multiprocess import Process

    for name in ("init_processes", "keep_subprocess_alive", "handle_int", "handle_term"):
        assert callable(getattr(Multiprocess, name)), name
    for name in ("is_ready", "pid", "exitcode"):
        assert hasattr(Process, name), name
    source = inspect.getsource(Multiprocess)
    assert "self.processes" in source and "self.should_exit" in source
    assert 'f"Child process [{process.pid}] died"' in source


def test_how_a_worker_ended_is_said_in_words():
    from boltic_cli.server.runner import how_it_ended

    assert how_it_ended(-9) == "killed by SIGKILL"
    assert how_it_ended(1) == "exit code 1"
    assert how_it_ended(None) == "still running"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_end_with_a_killed_supervisor(workers_server):
    server = workers_server(2)
    workers = workers_of(server.pid)
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])

    server.kill()  # SIGKILL: the supervisor runs no code

    wait_until(lambda: not any(alive(pid) for pid in workers), what="the workers to end")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/health")


SUPERVISE_UNREACHABLE = """
import sys
from pathlib import Path

from boltic_cli.errors import BolticError
from boltic_cli.server.runner import _supervise, bind
from boltic_cli.server.settings import ServerSettings

settings = ServerSettings(
    db_path=Path("unused.db"),
    admin_token="x" * 32,
    database_url="postgresql://postgres@127.0.0.1:{port}/none",
    pg_connect_timeout=2,
)
try:
    _supervise(settings, bind("127.0.0.1", 0), 2, lambda: print("READY"), "info")
except BolticError as e:
    print("ERROR", e.message)
    sys.exit(1)
"""


@pytest.mark.slow
def test_a_worker_that_cannot_start_stops_the_server(tmp_path):
    # The command migrates the database before any worker starts, so this needs the
    # database gone between that and the workers' start: _supervise on its own, on a
    # PostgreSQL port where nothing listens.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    result = subprocess.run(
        [sys.executable, "-c", SUPERVISE_UNREACHABLE.format(port=port)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == ["ERROR a worker failed to start (see the log above)"]
    assert "failed to start, stopping the parent process" in result.stderr
