"""boltic dev: started and stopped by the tests, against real uvicorn servers on free ports."""

from __future__ import annotations

import http.server
import json
import queue
import shlex
import signal
import socket
import stat
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.support import BOLTIC

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def banner_value(stderr: str, label: str) -> str:
    line = next(line for line in stderr.splitlines() if line.strip().startswith(label))
    return line.split(label, 1)[1].strip()


def test_dev_runs_server_source_demo_and_tail_then_stops_keeping_the_db(run_cli, cli_env):
    data_dir = Path(cli_env["BOLTIC_DATA_DIR"])
    first = run_cli(
        "dev", "--port", "0", "--demo", "--demo-rate", "20", "--duration", "2s", "-o", "ndjson"
    )
    assert first.exit_code == 0, first.stderr
    url = first.stderr.split("Streams API at ", 1)[1].split()[0]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    source_line = banner_value(first.stderr, "source")
    source_id = source_line.split("(")[1].rstrip(")")
    assert source_line.startswith("dev (src_")
    write_key = banner_value(first.stderr, "write key")
    assert write_key.startswith("wk_")
    curl = first.stderr[first.stderr.index("curl -X POST") :]
    assert write_key in curl and source_id in curl
    assert max(len(line) for line in curl.splitlines()[:4]) <= 80  # broken like sources create

    events = [r for r in first.ndjson() if r["kind"] == "event"]
    assert len(events) >= 10  # ~40 sent at 20/s during 2 s
    assert {e["sourceId"] for e in events} == {source_id}
    assert {e["type"] for e in events} >= {"page_view"}
    assert "events shown" in first.stderr

    token_file = data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert (data_dir / "boltic.db").exists()

    # The database was kept: a second run finds the same source and its history.
    second = run_cli("dev", "--port", "0", "--duration", "0.5s", "--history", "3", "-o", "ndjson")
    assert second.exit_code == 0, second.stderr
    assert banner_value(second.stderr, "source") == source_line
    history = [r["id"] for r in second.ndjson() if r["kind"] == "event"]
    # The demo may have sent a few more after the first tail's last poll.
    assert len(history) == 3 and history == sorted(history)
    assert history[-1] >= events[-1]["id"]


def test_dev_uses_a_boltic_server_already_running(run_cli, cli_env, tmp_path):
    from boltic_cli.paths import local_token_file, write_private
    from boltic_cli.server.runner import start_in_thread
    from boltic_cli.server.settings import ServerSettings

    token = "already-running-token-0123456789"
    write_private(local_token_file(cli_env), token + "\n")
    port = free_port()
    settings = ServerSettings(db_path=tmp_path / "other.db", admin_token=token)
    with start_in_thread(settings, "127.0.0.1", port) as handle:
        result = run_cli("dev", "--port", str(port), "--duration", "0.3s")
        assert result.exit_code == 0, result.stderr
        assert f"Using the boltic server already running on port {port}" in result.stderr
        sources = httpx.get(
            f"{handle.url}/streams/sources", headers={"Authorization": f"Bearer {token}"}
        ).json()["data"]
        assert [s["name"] for s in sources] == ["dev"]
    assert not (Path(cli_env["BOLTIC_DATA_DIR"]) / "boltic.db").exists()


class NotBoltic(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_dev_refuses_a_port_taken_by_something_else(run_cli):
    server = http.server.HTTPServer(("127.0.0.1", 0), NotBoltic)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        result = run_cli("dev", "--port", str(port), "--duration", "1s")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 2  # a busy port is a usage error, whatever holds it
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"port {port} is in use by something that is not a boltic server" in lines[0]
    assert "--port 0" in lines[0]
    assert "Traceback" not in result.stderr


def test_dev_banner_curl_works_and_ctrl_c_stops_cleanly(cli_env):
    port = free_port()
    process = subprocess.Popen(
        [BOLTIC, "dev", "--port", str(port), "-o", "ndjson"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    out: queue.Queue[str] = queue.Queue()
    err: queue.Queue[str] = queue.Queue()
    for stream, sink in ((process.stdout, out), (process.stderr, err)):
        threading.Thread(target=lambda s=stream, q=sink: [q.put(x) for x in s], daemon=True).start()
    try:
        banner = []
        while not banner or "Ctrl-C to stop" not in banner[-1]:
            banner.append(err.get(timeout=30))
        start = next(i for i, line in enumerate(banner) if line.strip().startswith("curl "))
        curl = " ".join(line.strip().rstrip("\\") for line in banner[start : start + 4])
        sent = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=30)
        event_id = json.loads(sent.stdout)["eventId"]
        while True:
            record = json.loads(out.get(timeout=30))
            if record["kind"] == "event":
                break
        assert (record["id"], record["type"]) == (event_id, "test_event")
        assert record["sourceId"] in curl
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest = []
    while not err.empty():
        rest.append(err.get())
    assert any("1 event shown" in line for line in rest), rest
    assert (Path(cli_env["BOLTIC_DATA_DIR"]) / "boltic.db").exists()
    # The port is free again: the server stopped with the command.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.e2e
def test_dev_attaches_to_the_server_that_holds_its_database(run_cli, cli_env, tmp_path):
    """design.md: a second process on one SQLite file is refused; dev uses the holder."""
    from tests.support import start_server, stop_server

    db = Path(cli_env["BOLTIC_DATA_DIR"]) / "boltic.db"
    process, url = start_server(db, cli_env)  # the default data dir's db, like dev's
    try:
        result = run_cli("dev", "--port", "0", "--duration", "1s", "-o", "ndjson")
        assert result.exit_code == 0, result.stderr
        assert f"Using the boltic server (pid {process.pid}) that serves {db} at {url}." in (
            result.stderr
        )
        assert f"Streams API at {url}" in result.stderr
    finally:
        stop_server(process)
