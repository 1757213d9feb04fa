"""The server as users run it: `boltic server` in a subprocess, uvicorn on real sockets.

The tests of what the store does (data kept across a restart, in-flight requests
finished on SIGTERM, no acknowledged event lost to SIGKILL, retention at start, the
threaded server's sockets) run on both stores: ``server_db`` is the SQLite file or a
fresh PostgreSQL database's URL, and ``db`` reads the stored rows on either."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def create_source(url: str, token: str = ADMIN_TOKEN) -> dict:
    response = httpx.post(
        f"{url}/streams/sources",
        json={"name": "e2e", "type": "server"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.e2e
def test_prints_the_url_alone_on_stdout_and_stops_on_sigterm(
    server_process, server_db, server_settings
):
    server = server_process(db=server_db)
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    source = create_source(server.url)
    assert server.terminate() == 143
    assert server.process.stdout.read() == ""  # nothing after the URL line
    stderr = server.process.stderr.read()
    assert f"database: {server_settings.database()}\n" in stderr
    assert "admin token: given with --token" in stderr
    assert ADMIN_TOKEN not in stderr
    assert "Traceback" not in stderr
    # Stopped cleanly: the data is there for the next start.
    again = server_process(db=server_db)
    listed = httpx.get(f"{again.url}/streams/sources", headers=ADMIN).json()
    assert [s["id"] for s in listed["data"]] == [source["id"]]


@pytest.mark.e2e
def test_generates_and_reuses_the_local_admin_token(server_process, tmp_path):
    no_token = {"BOLTIC_SERVER_TOKEN": ""}
    first = server_process(no_token)
    token_file = tmp_path / "data" / "admin-token"
    token = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token) >= 32
    create_source(first.url, token)
    first.terminate()
    stderr = first.process.stderr.read()
    assert f"admin token: file {token_file}" in stderr and token not in stderr
    second = server_process(no_token)
    assert token_file.read_text().strip() == token
    assert (
        httpx.get(
            f"{second.url}/streams/sources", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )


@pytest.mark.e2e
def test_sigterm_finishes_in_flight_requests(server_process, server_db, db):
    server = server_process({"BOLTIC_SERVER_COMMIT_DELAY": "0.5"}, db=server_db)
    source = create_source(server.url)
    answers: list[httpx.Response] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                f"{server.url}/streams/events",
                json={"sourceId": source["id"], "type": "late"},
                headers=ADMIN,
            )
        )
    )
    sender.start()
    time.sleep(0.2)  # let the request reach the writer's transaction
    assert server.terminate() == 143
    sender.join()
    assert answers[0].status_code == 202
    assert db.rows("SELECT id FROM events") == [(answers[0].json()["eventId"],)]


@pytest.mark.e2e
def test_non_loopback_host_warns(server_process):
    server = server_process(None, "--host", "0.0.0.0")
    assert server.url.startswith("http://0.0.0.0:")
    server.terminate()
    assert "warning: listening on 0.0.0.0" in server.process.stderr.read()


def test_port_in_use_is_one_line_exit_2(run_cli, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "server", "--port", str(port), "--db", str(tmp_path / "x.db"), "--token", "t"
        )
    assert result.exit_code == 2
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: cannot listen on 127.0.0.1:{port}: the port is in use "
        "(choose another with --port, or --port 0 for a free one)"
    ]
    assert "Traceback" not in result.stderr


def test_unusable_database_is_one_line_exit_2(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("server", "--port", "0", "--db", str(blocker / "x.db"), "--token", "t")
    assert result.exit_code == 2
    assert "Error: cannot open the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_postgresql_is_one_line_exit_2_without_the_password(run_cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql://u:sekrit@127.0.0.1:{port}/boltic"
    result = run_cli("server", "--port", "0", "--db", url, "--token", "t")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"Error: cannot open the database postgresql://u:***@127.0.0.1:{port}/boltic: "
    )
    assert "sekrit" not in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_retention_is_usage_error(run_cli, tmp_path):
    result = run_cli(
        "server", "--retention", "soon", "--db", str(tmp_path / "x.db"), "--token", "t"
    )
    assert result.exit_code == 2
    assert "invalid --retention 'soon'" in result.stderr


@pytest.mark.e2e
def test_retention_takes_every_duration_form_the_cli_takes(server_db, cli_env):
    """One parser: `--retention 1h30m` starts (and prunes at once, on either store), as
    `debug tail --duration 1h30m` works."""
    from tests.support import start_server, stop_server

    process, url = start_server(server_db, cli_env, "--retention", "1h30m", "--token", ADMIN_TOKEN)
    try:
        response = httpx.get(
            f"{url}/streams/sources", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert response.status_code == 200
    finally:
        stop_server(process)


@pytest.mark.e2e
def test_chunked_body_over_the_limit_is_cut_off(threaded_server):
    """Over a real socket: the 413 comes back although the body never ends."""
    source = create_source(threaded_server.url)
    host, port = threaded_server.url.split("//")[1].split("/")[0].split(":")
    head = (
        "POST /v1/streams/events HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    start = f'{{"sourceId":"{source["id"]}","type":"big","properties":{{"p":"'
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode())
        conn.sendall(f"{len(start):x}\r\n{start}\r\n".encode())
        chunk = b"x" * 4096
        try:
            for _ in range(10):  # 40 KiB, and no terminating chunk
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answers and closes as soon as it has seen too much
        answer = conn.recv(65536).decode()
    status_line, _, rest = answer.partition("\r\n")
    assert status_line == "HTTP/1.1 413 Request Entity Too Large"
    assert json.loads(rest.split("\r\n\r\n", 1)[1])["code"] == 413
    events = httpx.get(f"{threaded_server.url}/streams/events", headers=ADMIN).json()
    assert events["summary"]["totalEvents"] == 0


@pytest.mark.e2e
def test_many_threads_sending_and_querying(threaded_server):
    url = threaded_server.url
    source = create_source(url)
    statuses: list[int] = []
    bodies_with_errors: list[str] = []
    done = threading.Event()
    lock = threading.Lock()

    def record(response: httpx.Response) -> None:
        with lock:
            statuses.append(response.status_code)
            if response.status_code >= 500 or "locked" in response.text:
                bodies_with_errors.append(response.text)

    def sender(n: int) -> None:
        with httpx.Client(base_url=url, headers=ADMIN) as client:
            for i in range(n):
                record(
                    client.post(
                        "/streams/events", json={"sourceId": source["id"], "type": f"t{i % 5}"}
                    )
                )

    def reader() -> None:
        with httpx.Client(base_url=url, headers=ADMIN) as client:
            while not done.is_set():
                record(client.get("/streams/events", params={"sourceId": source["id"]}))
                record(client.get(f"/streams/sources/{source['id']}/debug"))
                record(client.get("/streams/sources"))
                record(
                    client.post(
                        "/streams/destinations", json={"name": "d", "type": "s3", "config": {}}
                    )
                )

    senders = [threading.Thread(target=sender, args=(40,)) for _ in range(10)]
    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in senders + readers:
        t.start()
    for t in senders:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert bodies_with_errors == []
    assert set(statuses) <= {200, 201, 202}
    assert statuses.count(202) == 400
    summary = httpx.get(f"{url}/streams/events", headers=ADMIN).json()["summary"]
    assert summary["totalEvents"] == 400 and summary["uniqueEventTypes"] == 5


@pytest.mark.e2e
def test_sigkill_loses_no_acknowledged_event(server_process, server_db, db):
    # Every commit waits 50 ms, so at any moment some events are received but not
    # committed: answering before the commit would show up as a lost eventId.
    server = server_process({"BOLTIC_SERVER_COMMIT_DELAY": "0.05"}, db=server_db)
    source = create_source(server.url)
    acknowledged: list[str] = []
    unanswered: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def sender(worker: int) -> None:
        with httpx.Client(base_url=server.url, headers=ADMIN, timeout=10) as client:
            i = 0
            while not killed.is_set():
                i += 1
                try:
                    response = client.post(
                        "/streams/events",
                        json={
                            "sourceId": source["id"],
                            "type": "load",
                            "properties": {"worker": worker, "i": i},
                        },
                    )
                except httpx.TransportError:
                    with lock:
                        unanswered.append(f"{worker}:{i}")
                    return
                assert response.status_code == 202, response.text
                with lock:
                    acknowledged.append(response.json()["eventId"])

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    while len(acknowledged) < 150:
        time.sleep(0.01)
    server.kill()
    killed.set()
    for t in threads:
        t.join()
    assert unanswered, "the kill should have cut off requests in flight"

    restarted = server_process(db=server_db)
    stored = {row[0] for row in db.rows("SELECT id FROM events")}
    missing = set(acknowledged) - stored
    assert missing == set()
    summary = httpx.get(
        f"{restarted.url}/streams/events", params={"limit": 1}, headers=ADMIN
    ).json()["summary"]
    assert summary["totalEvents"] == len(stored) >= len(acknowledged)


def test_missing_server_extra_is_one_line_before_any_side_effect(run_cli, cli_env, monkeypatch):
    import importlib.util
    from pathlib import Path

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "uvicorn" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for args in (("server", "--port", "0"), ("dev", "--port", "0", "--duration", "1s")):
        result = run_cli(*args)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.count("\n") == 1
        assert "pip install 'boltic-cli[server]'" in result.stderr
        if args[0] == "server":
            # (dev may still use a server already running, so it keeps its token first)
            assert not (Path(cli_env["BOLTIC_DATA_DIR"]) / "admin-token").exists()


@pytest.mark.e2e
def test_a_second_server_on_one_sqlite_file_is_refused_naming_the_holder(tmp_path, cli_env):
    """Issue 11: two processes on one file would each cache sources and write keys (a
    deleted source's key still accepted by the other). The second exits 2 naming the
    first (pid and URL from the lock file); after a SIGKILL of the first, a new server
    starts: the kernel dropped the lock."""
    import subprocess
    import sys

    from tests.support import reap, start_server, stop_server

    db = tmp_path / "one.db"
    first, url = start_server(db, cli_env, "--token", ADMIN_TOKEN)
    try:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "boltic_cli",
                "server",
                "--port",
                "0",
                "--db",
                str(db),
                "--token",
                ADMIN_TOKEN,
            ],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=60,
        )
        assert second.returncode == 2
        assert second.stdout == ""
        errors = [line for line in second.stderr.splitlines() if line.startswith("Error:")]
        assert errors == [
            f"Error: the database {db} is in use by boltic server pid {first.pid} at {url} "
            "(use that server, or give this one its own --db)"
        ]
        assert httpx.get(f"{url}/health").status_code == 200  # the holder is untouched
    finally:
        first.kill()
        reap(first)
    again, url = start_server(db, cli_env, "--token", ADMIN_TOKEN)
    try:
        listed = httpx.get(
            f"{url}/streams/sources", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert listed.status_code == 200
    finally:
        stop_server(again)
