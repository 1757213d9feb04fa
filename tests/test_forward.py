"""boltic debug forward (and dev --forward): the CLI against the real server on a loopback
port, POSTing to real receivers (tests/receivers.py); signatures are checked with the
`standardwebhooks` package, never with our own code.

A run that must only see *new* events starts in a thread; the test sends once the
CLI's first debug poll (the tail's priming read) has come back, which a real httpx
transport with a hook tells it. Runs that may forward history use ``--history N`` with
the events sent first, which needs no timing at all.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receivers import Receiver, Reply, receiver_fixture, refused_url  # noqa: F401
from tests.spec_only import SpecOnlyTransport
from tests.support import CliResult, invoke_cli

from .conftest import ADMIN_TOKEN

# -- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
def live(server_settings) -> Iterator[str]:
    """The real server on a free loopback port; its API URL."""
    from boltic_cli.server.runner import start_in_thread

    with start_in_thread(server_settings) as handle:
        yield handle.url


@pytest.fixture
def api_client(live):
    from boltic_cli.client import BolticClient

    with BolticClient(live, ADMIN_TOKEN) as c:
        yield c


@pytest.fixture
def source(api_client) -> dict:
    return api_client.create_stream_source({"name": "web", "type": "javascript"}).to_wire()


@pytest.fixture
def fwd(run_cli, live):
    """Run ``boltic ARGS`` against the live server (real sockets)."""

    def run(*args: str, transport: httpx.BaseTransport | None = None, **kw: Any) -> CliResult:
        env = {"BOLTIC_API_URL": live, "BOLTIC_TOKEN": ADMIN_TOKEN, **kw.pop("env", {})}
        return run_cli(*args, env=env, transport=transport, **kw)

    return run


def send(client, source_id: str, n: int, event_type: str = "page_view", **props: Any) -> list:
    return [
        client.send_event(
            {"sourceId": source_id, "type": event_type, "properties": {"i": i, **props}}
        ).event_id
        for i in range(n)
    ]


class PollSignal(httpx.HTTPTransport):
    """A real transport that says when the tail's first debug poll has come back."""

    def __init__(self) -> None:
        super().__init__()
        self.polled = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/debug"):
            self.polled.set()
        return response


class Background:
    """A CLI run in a thread: ``started`` once it has primed; ``result()`` joins it."""

    def __init__(self, fwd, *args: str, transport: httpx.BaseTransport | None = None) -> None:
        self.signal = PollSignal()
        self._result: list[CliResult] = []
        self._error: list[BaseException] = []
        inner = transport if transport is not None else self.signal

        def run() -> None:
            try:
                self._result.append(fwd(*args, transport=inner))
            except BaseException as e:
                self._error.append(e)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait_primed(self, timeout: float = 20.0) -> None:
        assert self.signal.polled.wait(timeout), "the CLI never polled the debug endpoint"

    def result(self, timeout: float = 60.0) -> CliResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the forward run did not end"
        if self._error:
            raise self._error[0]
        return self._result[0]


def secret_of(fwd) -> str:
    result = fwd("debug", "forward", "--print-secret")
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def verified(secret: str, request) -> dict:
    """The payload, verified as a receiver would (the `standardwebhooks` package)."""
    from standardwebhooks.webhooks import Webhook

    return Webhook(secret).verify(request.body, request.headers)


def kinds(result: CliResult) -> list[str]:
    return [record["kind"] for record in result.ndjson()]


# -- forwarding ---------------------------------------------------------------------------


def test_every_new_event_forwarded_once_in_order_signed(fwd, api_client, source, receiver):
    send(api_client, source["id"], 2, "old")  # there before the start: not forwarded
    run = Background(
        fwd,
        *("debug", "forward", "web", "--to", receiver.url, "--max-events", "5"),
        *("--duration", "40s", "-o", "ndjson"),
    )
    run.wait_primed()
    ids = send(api_client, source["id"], 5)
    result = run.result()
    assert result.exit_code == 0, result.stderr

    secret = secret_of(fwd)
    got = [r for r in receiver.requests if r.json().get("type") == "page_view"]
    assert [r.headers["webhook-id"] for r in got] == ids  # once each, in order
    assert all(r.json()["type"] == "page_view" for r in receiver.requests)  # no history
    api_events = {e.id: e.to_wire() for e in api_client.debug_stream_source(source["id"]).data}
    for request, event_id in zip(got, ids, strict=True):
        payload = verified(secret, request)
        assert payload == api_events[event_id]  # the Event as the API returns it
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("boltic-cli/")

    records = [r for r in result.ndjson() if r["kind"] == "forwarded"]
    assert [r["eventId"] for r in records] == ids
    assert all(r["status"] == 200 and r["outcome"] == "success" for r in records)
    assert "forwarded 5, failed 0, dropped 0, pending 0" in result.stderr
    assert secret in result.stderr  # the banner shows the user's own local secret
    assert f"to {receiver.url}" in result.stderr


def test_history_query_string_type_filter_and_custom_headers(fwd, api_client, source, receiver):
    sid = source["id"]
    api_client.send_event({"sourceId": sid, "type": "page_view"})
    purchases = [
        api_client.send_event({"sourceId": sid, "type": t, "properties": {"n": n}}).event_id
        for n, t in enumerate(["purchase", "page_view", "purchase"])
        if t == "purchase"
    ]
    url = receiver.url + "?env=dev&tag=two%20words&empty="
    result = fwd(
        *("debug", "forward", sid, "--to", url, "--history", "10", "--type", "purchase"),
        *("-H", "X-Env: dev", "-H", "Authorization: Bearer local-handler-token"),
        *("--max-events", "2"),
    )
    assert result.exit_code == 0, result.stderr
    got = receiver.requests
    assert [r.headers["webhook-id"] for r in got] == purchases
    assert {r.target for r in got} == {"/hook?env=dev&tag=two%20words&empty="}
    assert all(r.headers["x-env"] == "dev" for r in got)
    assert all(r.headers["authorization"] == "Bearer local-handler-token" for r in got)
    secret = secret_of(fwd)
    assert [verified(secret, r)["type"] for r in got] == ["purchase", "purchase"]
    # Plain output: one tab-separated line per attempt on stdout.
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    cells = lines[0].split("\t")
    assert cells[1:] == ["purchase", purchases[0], cells[3]]
    assert cells[3].startswith("-> 200 OK ") and cells[3].endswith(" ms")


def test_500_then_200_is_retried_honouring_retry_after(fwd, api_client, source, receiver):
    ids = send(api_client, source["id"], 2)
    receiver.script(Reply(500), Reply(503, headers={"Retry-After": "1"}))
    started = time.monotonic()
    result = fwd(
        *("debug", "forward", "web", "--to", receiver.url, "--history", "2"),
        *("--max-events", "2", "-o", "ndjson"),
    )
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was waited for
    assert [r.headers["webhook-id"] for r in receiver.requests] == [ids[0]] * 3 + [ids[1]]
    attempts = [r for r in result.ndjson() if r["kind"] in ("forwarded", "failed")]
    assert [(r["kind"], r.get("status"), r["attempt"]) for r in attempts] == [
        ("failed", 500, 1),
        ("failed", 503, 2),
        ("forwarded", 200, 3),
        ("forwarded", 200, 1),
    ]
    assert attempts[1]["retryIn"] >= 1.0
    assert "forwarded 2, failed 0" in result.stderr


def test_400_is_reported_and_skipped_exit_1(fwd, api_client, source, receiver):
    ids = send(api_client, source["id"], 3)
    receiver.script(Reply(400, body="bad signature?"), Reply(200), Reply(410))
    result = fwd(
        "debug", "forward", "web", "--to", receiver.url, "--history", "3", "--max-events", "3"
    )
    assert result.exit_code == 1
    assert [r.headers["webhook-id"] for r in receiver.requests] == ids  # none retried
    lines = result.stdout.splitlines()
    assert lines[0].endswith("-> 400 Bad Request " + lines[0].split("Bad Request ")[1])
    assert "skipped (rejected)" in lines[0]
    assert "skipped (gone)" in lines[2]
    assert "forwarded 1, failed 2, dropped 0, pending 0" in result.stderr
    assert "not every event was forwarded" in result.stderr


def test_endpoint_down_then_up_loses_nothing_and_keeps_order(fwd, api_client, source):
    url = refused_url()
    port = int(url.split(":")[2].split("/")[0])
    run = Background(
        fwd,
        *("debug", "forward", "web", "--to", url, "--max-events", "6"),
        *("--duration", "60s", "-o", "ndjson"),
    )
    run.wait_primed()
    ids = send(api_client, source["id"], 3)
    time.sleep(1.5)  # a few refused attempts
    with Receiver(port=port) as rx:
        ids += send(api_client, source["id"], 3)
        result = run.result()
        assert result.exit_code == 0, result.stderr
        assert [r.headers["webhook-id"] for r in rx.requests] == ids
    records = result.ndjson()
    order = kinds(result)
    assert "endpoint_down" in order and "endpoint_up" in order
    assert order.index("endpoint_down") < order.index("endpoint_up")
    refused = [r for r in records if r["kind"] == "failed"]
    assert refused and all(r["reason"] == "connection refused" for r in refused)
    assert all(r["eventId"] == ids[0] and "status" not in r for r in refused)
    assert [r["eventId"] for r in records if r["kind"] == "forwarded"] == ids
    assert "forwarded 6, failed 0, dropped 0, pending 0" in result.stderr


def test_buffer_bound_exceeded_drops_oldest_reports_count_exit_1(fwd, api_client, source):
    ids = send(api_client, source["id"], 5)
    result = fwd(
        *("debug", "forward", "web", "--to", refused_url(), "--history", "5"),
        *("--buffer", "2", "--duration", "3s", "-o", "ndjson"),
    )
    assert result.exit_code == 1
    dropped = [r for r in result.ndjson() if r["kind"] == "dropped"]
    assert sum(r["count"] for r in dropped) == 3
    assert dropped[-1]["totalDropped"] == 3 and dropped[-1]["buffer"] == 2
    tried = {r["eventId"] for r in result.ndjson() if r["kind"] == "failed"}
    assert len(tried) == 1 and tried <= set(ids)  # one held and retried, never skipped
    assert "forwarded 0, failed 0, dropped 3, pending 2" in result.stderr


def test_dropped_notice_in_plain_output(fwd, api_client, source):
    send(api_client, source["id"], 4)
    result = fwd(
        *("debug", "forward", "web", "--to", refused_url(), "--history", "4"),
        *("--buffer", "1", "--duration", "2s"),
    )
    assert result.exit_code == 1
    assert "Warning: dropped " in result.stderr
    assert "more than 1 were waiting (3 dropped in all)" in result.stderr
    assert "dropped 3, pending 1" in result.stderr
    assert "is down (connection refused)" in result.stderr
    assert "-> connection refused, retry in" in result.stdout


def test_secret_is_stable_across_runs_and_config_stays_0600(fwd, cli_env, receiver):
    first = secret_of(fwd)
    assert first.startswith("whsec_")
    assert secret_of(fwd) == first
    config = Path(cli_env["BOLTIC_CONFIG_DIR"]) / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert first in config.read_text()
    # Another profile gets its own.
    other = fwd("--profile", "local", "debug", "forward", "--print-secret")
    assert other.stdout.strip() == first


def test_usage_errors_exit_2(fwd, source):
    assert fwd("debug", "forward", "web").exit_code == 2  # no --to
    assert fwd("debug", "forward", "--to", "http://127.0.0.1:9/h").exit_code == 2  # no source
    bad = fwd("debug", "forward", "web", "--to", "localhost:4242/webhook")
    assert bad.exit_code == 2 and "http://" in bad.stderr
    header = fwd("debug", "forward", "web", "--to", "http://127.0.0.1:9/h", "-H", "nocolon")
    assert header.exit_code == 2 and "--header" in header.stderr


def test_event_text_is_sanitised_in_lines(fwd, api_client, source, receiver):
    api_client.send_event({"sourceId": source["id"], "type": "evil\x1b[31mred\x07"})
    result = fwd(
        "debug", "forward", "web", "--to", receiver.url, "--history", "1", "--max-events", "1"
    )
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "evil\\x1b[31mred\\x07" in result.stdout


def test_terminal_rendering_shows_status_line(fwd, api_client, source, receiver):
    from datetime import UTC, datetime

    from boltic_cli.forward import ForwardRecord, ForwardStats
    from boltic_cli.models import Event
    from boltic_cli.output import ForwardView

    event = Event(id="evt_1", type="signup\x1b]0;x")
    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    view = ForwardView()
    ok = ForwardRecord("forwarded", at, event=event, attempt=1, status=200, reason="OK", ms=12.3)
    assert view.result_text(ok) == "-> 200 OK 12 ms"
    retry = ForwardRecord(
        "failed", at, event=event, attempt=2, reason="timeout", ms=10000, retry_in=1.04
    )
    assert view.result_text(retry) == "-> timeout, retry in 1.0s (attempt 2)"
    assert "\x1b" not in view.terminal_line(ok).plain
    stats = ForwardStats(started=0, forwarded=3, failed=1, endpoint_up=False, connected=True)
    assert view.status_line(stats, pending=4) == (
        "endpoint DOWN · 3 forwarded · 1 failed · 4 pending · 0 dropped"
    )


# -- a spec-only server ---------------------------------------------------------------------


class OtherServer(httpx.HTTPTransport):
    """Real HTTP to our server, dressed as another spec server: its events carry a field
    our model does not know (they must be forwarded as that server returned them)."""

    def __init__(self) -> None:
        super().__init__()
        self.polled = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not request.url.path.endswith("/debug"):
            return response
        response.read()
        page = response.json()
        for event in page["data"]:
            event["vendorField"] = {"region": "eu", "big": 2**70}
        self.polled.set()
        return httpx.Response(200, json=page, request=request)


def test_forwarding_against_a_spec_only_server(fwd, api_client, source, receiver):
    other = OtherServer()
    spec_only = SpecOnlyTransport(other)
    run = Background(
        fwd,
        *("debug", "forward", "web", "--to", receiver.url, "--max-events", "4"),
        *("--duration", "40s", "-o", "ndjson"),
        transport=spec_only,
    )
    assert other.polled.wait(20)
    ids = send(api_client, source["id"], 4)
    result = run.result()
    assert result.exit_code == 0, result.stderr
    secret = secret_of(fwd)
    payloads = [verified(secret, r) for r in receiver.requests]
    assert [p["id"] for p in payloads] == ids
    assert all(p["vendorField"] == {"region": "eu", "big": 2**70} for p in payloads)
    assert spec_only.refused == []  # it asked for nothing beyond the spec


# -- Ctrl-C, and dev --forward (subprocesses) ------------------------------------------------


@pytest.mark.e2e
def test_ctrl_c_prints_summary_and_exits_130(live, api_client, source, cli_env, tmp_path):
    env = {
        **os.environ,
        **cli_env,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BOLTIC_API_URL": live,
        "BOLTIC_TOKEN": ADMIN_TOKEN,
    }
    with Receiver(default=Reply(503)) as rx:
        rx.script(Reply(200), Reply(200))
        command = [sys.executable, "-m", "boltic_cli", "debug", "forward", "web"]
        command += ["--to", rx.url, "-o", "ndjson"]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())  # the tail has connected and primed
            assert first["kind"] == "connected"
            send(api_client, source["id"], 4)
            rx.wait_for(4, timeout=20)  # two taken, the third being retried (503)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, err
    assert "forwarded 2, failed 0, dropped 0, pending 2" in err
    assert "Traceback" not in err
    assert '"kind":"forwarded"' in out


@pytest.mark.e2e
def test_dev_forward_posts_the_dev_source_events(run_cli, cli_env, tmp_path, receiver):
    from boltic_cli.client import BolticClient
    from boltic_cli.server.runner import start_in_thread
    from boltic_cli.server.settings import ServerSettings
    from boltic_cli.settings import ensure_local_admin_token

    token = ensure_local_admin_token(cli_env)[0]
    settings = ServerSettings(db_path=tmp_path / "dev.db", admin_token=token)
    with start_in_thread(settings, "127.0.0.1", 0) as handle:
        port = handle.url.split(":")[2].split("/")[0]
        with BolticClient(handle.url, token) as client:
            dev = client.create_stream_source({"name": "dev", "type": "javascript"})
            box: list[CliResult] = []
            thread = threading.Thread(
                target=lambda: box.append(
                    run_cli(
                        "dev",
                        "--port",
                        port,
                        "--forward",
                        receiver.url,
                        "--duration",
                        "8s",
                        "-o",
                        "ndjson",
                    )
                ),
                daemon=True,
            )
            thread.start()
            sent: list[str] = []
            deadline = time.monotonic() + 6.0
            while not receiver.requests and time.monotonic() < deadline:
                sent += send(client, dev.id or "", 1)
                time.sleep(0.2)
            thread.join(30)
    result = box[0]
    assert result.exit_code == 0, result.stderr
    got = [r.headers["webhook-id"] for r in receiver.requests]
    assert got and got == [i for i in sent if i in got]  # in order, each once
    assert got == sent[len(sent) - len(got) :]  # every event after the first forwarded
    secret = invoke_cli("debug", "forward", "--print-secret", environ=cli_env).stdout.strip()
    assert all(verified(secret, r)["sourceId"] == dev.id for r in receiver.requests)
    assert "signing secret" in result.stderr


def test_terminal_run_prints_attempts_above_a_status_line(fwd, api_client, source, receiver):
    ids = send(api_client, source["id"], 2)
    result = fwd(
        *("debug", "forward", "web", "--to", receiver.url, "--history", "2"),
        *("--max-events", "2"),
        tty=True,
    )
    assert result.exit_code == 0, result.stderr
    assert all(event_id in result.stdout for event_id in ids)
    assert "-> 200 OK" in result.stdout
    assert "forwarded 2, failed 0, dropped 0, pending 0" in result.stderr


def test_timeout_is_transient_and_retried(fwd, api_client, source, receiver):
    ids = send(api_client, source["id"], 1)
    receiver.script(Reply(200, delay=3))
    result = fwd(
        *("debug", "forward", "web", "--to", receiver.url, "--history", "1"),
        *("--max-events", "1", "--attempt-timeout", "0.5", "-o", "ndjson"),
    )
    assert result.exit_code == 0, result.stderr
    attempts = [r for r in result.ndjson() if r["kind"] in ("forwarded", "failed")]
    assert [(r["kind"], r["reason"]) for r in attempts] == [
        ("failed", "timeout"),
        ("forwarded", "OK"),
    ]
    assert [r["eventId"] for r in attempts] == ids * 2
    assert 400 <= attempts[0]["ms"] < 3000


def test_concurrency_forwards_each_event_once(fwd, api_client, source, receiver):
    ids = send(api_client, source["id"], 12)
    receiver.script(Reply(500))
    result = fwd(
        *("debug", "forward", "web", "--to", receiver.url, "--history", "12"),
        *("--max-events", "12", "--concurrency", "4", "-o", "ndjson"),
    )
    assert result.exit_code == 0, result.stderr
    forwarded = [r["eventId"] for r in result.ndjson() if r["kind"] == "forwarded"]
    assert sorted(forwarded) == sorted(ids) and len(set(forwarded)) == 12
    got = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(got) == 13 and set(got) == set(ids)  # one retry after the 500


def test_engine_passes_tail_notices_through_and_counts(receiver):
    """The engine alone, fed the tail's own record type (no server needed to show a
    gap): notices keep their place, events are POSTed, the stats add up."""
    from boltic_cli.forward import Forwarder
    from boltic_cli.models import Event
    from boltic_cli.tail import TailRecord
    from boltic_cli.webhooks import new_signing_secret

    secret = new_signing_secret()
    events = [Event(id=f"evt_{n}", type="t", source_id="src_1") for n in range(3)]
    tail = [
        TailRecord("connected", "src_1", info={"sourceConnected": True}),
        TailRecord("event", "src_1", events[0]),
        TailRecord("gap", "src_1", info={"message": "more than 500 events", "limit": 500}),
        TailRecord("event", "src_1", events[1]),
        TailRecord("reconnecting", "src_1", info={"attempt": 1, "retryIn": 0.5}),
        TailRecord("event", "src_1", events[2]),
    ]
    forwarder = Forwarder(receiver.url, secret)
    records = [r.to_wire() for r in forwarder.records(iter(tail))]
    notices = [r for r in records if r["kind"] not in ("forwarded", "failed")]
    assert [r["kind"] for r in notices] == ["connected", "gap", "reconnecting"]
    assert notices[1]["limit"] == 500 and notices[1]["sourceId"] == "src_1"
    assert [r["eventId"] for r in records if r["kind"] == "forwarded"] == [
        "evt_0",
        "evt_1",
        "evt_2",
    ]
    assert [verified(secret, r)["id"] for r in receiver.requests] == ["evt_0", "evt_1", "evt_2"]
    assert forwarder.stats.to_dict() == {"forwarded": 3, "failed": 0, "dropped": 0, "pending": 0}
    assert forwarder.stats.gaps == 1 and forwarder.stats.clean


def test_all_sources_with_where(fwd, api_client, source, receiver):
    other = api_client.create_stream_source({"name": "app", "type": "server"}).id or ""
    wanted = []
    for n, sid in enumerate([source["id"], other, source["id"], other]):
        plan = "pro" if n % 2 else "free"
        accepted = api_client.send_event(
            {"sourceId": sid, "type": "signup", "properties": {"plan": plan, "n": n}}
        )
        if plan == "pro":
            wanted.append(accepted.event_id)
    result = fwd(
        *("debug", "forward", "--all", "--where", "plan=pro", "--to", receiver.url),
        *("--history", "10", "--max-events", "2", "-o", "ndjson"),
    )
    assert result.exit_code == 0, result.stderr
    assert [r.headers["webhook-id"] for r in receiver.requests] == wanted
    assert "every source" in result.stderr and "plan=pro" in result.stderr


def test_deleted_source_ends_with_exit_3_and_a_summary(fwd, api_client, source, receiver):
    run = Background(fwd, "debug", "forward", "web", "--to", receiver.url, "--duration", "30s")
    run.wait_primed()
    api_client.delete_stream_source(source["id"])
    result = run.result()
    assert result.exit_code == 3, result.stderr
    assert "forwarded 0, failed 0, dropped 0, pending 0" in result.stderr


def test_a_broken_stored_secret_is_a_config_error(fwd, cli_env):
    config = Path(cli_env["BOLTIC_CONFIG_DIR"]) / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[profiles.local]\nforward_secret = "not-a-secret"\n')
    result = fwd("debug", "forward", "--print-secret")
    assert result.exit_code == 2
    assert "forward_secret" in result.stderr and "not-a-secret" not in result.stdout
