"""boltic debug status / tail / wait, run through the CLI against the real server app.

A fake clock and a scripted sender stand in for time: the tail's pauses are
where the sender sends, so every test is deterministic and quick. The pipe and
restart tests run the installed ``boltic`` against uvicorn on a free port.
"""

from __future__ import annotations

import io
import json
import queue
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support import AppTransport, invoke_cli

from .conftest import ADMIN_TOKEN, CliResult

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class FakeTime:
    """A wall clock that moves only when the command sleeps; runs a script at each pause."""

    def __init__(self, script=None, max_pauses: int = 200):
        self.now = START
        self.script = script or {}
        self.pauses = 0
        self.max_pauses = max_pauses

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        action = self.script.get(self.pauses)
        self.pauses += 1
        if action is not None:
            action()
        if self.pauses > self.max_pauses:
            raise AssertionError("the command kept polling past the end of the script")


@pytest.fixture
def tcli(cli_env, api):
    """Run ``boltic ARGS`` against the in-process server with a FakeTime."""

    def run(
        *args: str, time: FakeTime | None = None, tty: bool = False, env=None, without=()
    ) -> CliResult:
        fake = time or FakeTime()
        environ = {
            **cli_env,
            "BOLTIC_API_URL": "http://testserver/v1",
            "BOLTIC_TOKEN": ADMIN_TOKEN,
            **(env or {}),
        }
        for name in without:
            environ.pop(name, None)
        return invoke_cli(
            *args,
            environ=environ,
            transport=AppTransport(api),
            tty=tty,
            clock=fake.clock,
            sleep=fake.sleep,
        )

    return run


def send(api, source_id: str, event_type: str = "page_view", **fields: Any) -> str:
    r = api.post("/streams/events", json={"sourceId": source_id, "type": event_type, **fields})
    assert r.status_code == 202, r.text
    return r.json()["eventId"]


def send_many(api, source_id: str, n: int, event_type: str = "page_view") -> list[str]:
    return [send(api, source_id, event_type, properties={"n": i}) for i in range(n)]


# -- status ------------------------------------------------------------------------


def test_status_json(cli, api, source):
    ids = send_many(api, source["id"], 7)
    result = cli("debug", "status", "web", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["connected"] is True
    assert data["eventsToday"] == 7
    assert data["source"]["id"] == source["id"]
    assert [e["id"] for e in data["events"]] == ids[::-1][:5]
    assert data["lastEventAt"] == data["events"][0]["receivedAt"]


def test_status_plain_of_quiet_source(cli, source):
    result = cli("debug", "status", source["id"])
    assert result.exit_code == 0, result.stderr
    assert "connected\tno" in result.stdout.lower()
    assert "No events received yet." in result.stderr


def test_status_plain_labels_are_the_wire_names(cli, api, source):
    send(api, source["id"])

    result = cli("debug", "status", "web")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    labels = [line.split("\t", 1)[0] for line in lines[:5]]
    assert labels == ["source", "status", "connected", "lastEventAt", "eventsToday"]
    fields = dict(line.split("\t", 1) for line in lines[:5])
    assert fields["status"] == "active"
    assert fields["connected"] == "yes"
    assert fields["eventsToday"] == "1"
    assert source["id"] in fields["source"]


def test_status_table_keeps_human_headers(cli, api, source):
    result = cli("debug", "status", "web", "-o", "table")

    assert result.exit_code == 0, result.stderr
    firsts = [line.split("  ")[0] for line in result.stdout.splitlines()]
    assert firsts[:5] == ["Source", "Status", "Connected", "Last event", "Events today"]


def test_status_unknown_source_is_exit_3(cli):
    assert cli("debug", "status", "nope").exit_code == 3


# -- tail ------------------------------------------------------------------------------


def test_tail_history_then_live_in_order_ndjson(tcli, api, source):
    sid = source["id"]
    before = send_many(api, sid, 12)
    live: list[str] = []
    fake = FakeTime(
        {
            0: lambda: live.extend(send_many(api, sid, 3)),
            2: lambda: live.extend(send_many(api, sid, 2)),
        }
    )
    result = tcli("debug", "tail", "web", "-o", "ndjson", "--max-events", "15", time=fake)
    assert result.exit_code == 0, result.stderr
    records = result.ndjson()
    events = [r for r in records if r["kind"] == "event"]
    assert [e["id"] for e in events] == before[-10:] + live
    assert events[0]["type"] == "page_view" and events[0]["sourceId"] == sid
    received = [e["receivedAt"] for e in events]
    assert received == sorted(received)
    assert records[0] == {
        "kind": "connected",
        "sourceId": sid,
        "sourceConnected": True,
        "lastEventAt": events[9]["receivedAt"],
    }
    assert "15 events shown" in result.stderr


def test_tail_piped_prints_one_plain_line_per_event(tcli, api, source):
    sid = source["id"]
    eid = send(api, sid, "signup", userId="user_42", properties={"plan": "pro"})
    result = tcli("debug", "tail", sid, "--max-events", "1")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    received, type_, user, props, id_ = lines[0].split("\t")
    stored = api.get("/streams/events", params={"sourceId": sid}).json()["data"][0]
    assert stored["id"] == eid == id_ and received == stored["receivedAt"]
    assert (type_, user, json.loads(props)) == ("signup", "user_42", {"plan": "pro"})


def test_tail_escape_sequences_are_printed_harmlessly(tcli, api, source):
    evil = "\x1b[2J\x1b]0;pwned\x07red\x9b31m\u202eevil\r\nnext"
    send(api, source["id"], "page_view\x1b[31m", userId="u\x1b[1m", properties={"x": evil})
    for fmt in ("plain", "table"):
        result = tcli("debug", "tail", "web", "-o", fmt, "--max-events", "1", tty=fmt == "table")
        assert result.exit_code == 0, result.stderr
        for bad in ("\x1b", "\x07", "\x9b", "\u202e", "\r"):
            assert bad not in result.stdout, (fmt, bad)
        assert result.stdout.count("\n") == 1, result.stdout
        assert "\\x1b[31m" in result.stdout or "\\u001b[31m" in result.stdout
    ndjson = tcli("debug", "tail", "web", "-o", "ndjson", "--max-events", "1")
    event = next(r for r in ndjson.ndjson() if r["kind"] == "event")
    assert event["properties"]["x"] == evil  # the data itself is kept, only escaped in JSON
    assert "\x1b" not in ndjson.stdout


def test_tail_filters_by_type_and_where(tcli, api, source):
    sid = source["id"]
    send(api, sid, "signup", properties={"plan": "free"})
    wanted = send(api, sid, "signup", properties={"plan": "pro"})
    send(api, sid, "purchase", properties={"plan": "pro"})
    later: list[str] = []

    def more() -> None:
        send(api, sid, "page_view", properties={"plan": "pro"})
        later.append(send(api, sid, "signup", properties={"plan": "pro", "seats": 3}))

    result = tcli(
        "debug",
        "tail",
        sid,
        "-o",
        "ndjson",
        "--type",
        "signup",
        "--type",
        "login",
        "--where",
        "plan=pro",
        "--max-events",
        "2",
        time=FakeTime({0: more}),
    )
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in result.ndjson() if r["kind"] == "event"] == [wanted, *later]


def test_tail_gap_is_reported_when_page_is_forced_small(tcli, api, source):
    sid = source["id"]
    burst: list[str] = []
    fake = FakeTime({0: lambda: burst.extend(send_many(api, sid, 9))})
    ndjson = tcli(
        "debug", "tail", sid, "-o", "ndjson", "--page-size", "4", "--duration", "5s", time=fake
    )
    assert ndjson.exit_code == 0, ndjson.stderr
    records = ndjson.ndjson()
    gaps = [r for r in records if r["kind"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["sourceId"] == sid and gaps[0]["limit"] == 4
    assert [r["id"] for r in records if r["kind"] == "event"] == burst[-4:]
    assert "1 gap" in ndjson.stderr

    fake = FakeTime({0: lambda: send_many(api, sid, 9)})
    plain = tcli(
        "debug", "tail", sid, "--history", "0", "--page-size", "4", "--duration", "5s", time=fake
    )
    assert plain.exit_code == 0
    assert "Warning: gap in web" in plain.stderr
    assert len(plain.stdout.splitlines()) == 4


def test_tail_deleted_source_ends_with_exit_3(tcli, api, source):
    sid = source["id"]
    send(api, sid)
    fake = FakeTime({1: lambda: api.delete(f"/streams/sources/{sid}")})
    result = tcli("debug", "tail", sid, "-o", "ndjson", time=fake)
    assert result.exit_code == 3
    assert len([r for r in result.ndjson() if r["kind"] == "event"]) == 1
    assert '"exitCode": 3' in result.stderr


def test_tail_duration_ends_with_0(tcli, api, source):
    fake = FakeTime()
    result = tcli("debug", "tail", "web", "--duration", "30s", time=fake)
    assert result.exit_code == 0, result.stderr
    assert abs(fake.now - START - timedelta(seconds=30)) < timedelta(milliseconds=1)
    # Idle polling eased off: far fewer polls than 30 s at the shortest pause.
    assert 5 < fake.pauses < 60


def test_tail_max_events_ends_with_0_without_waiting_for_more(tcli, api, source):
    send_many(api, source["id"], 5)
    fake = FakeTime(max_pauses=0)
    result = tcli("debug", "tail", "web", "--max-events", "3", time=fake)
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 3
    assert fake.pauses == 0


def test_tail_all_merges_sources(tcli, api, source):
    other = api.post("/streams/sources", json={"name": "app", "type": "mobile"}).json()
    sent: list[str] = []

    def interleave() -> None:
        for i in range(6):
            sent.append(send(api, (source if i % 2 else other)["id"]))

    result = tcli("debug", "tail", "--all", "--max-events", "6", time=FakeTime({0: interleave}))
    assert result.exit_code == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [cells[1] for cells in lines] == ["app", "web"] * 3
    assert [cells[0] for cells in lines] == sorted(cells[0] for cells in lines)


def test_tail_needs_sources_or_all(tcli, source):
    assert tcli("debug", "tail").exit_code == 2
    assert tcli("debug", "tail", "web", "--all").exit_code == 2
    assert tcli("debug", "tail", "missing").exit_code == 3
    assert tcli("debug", "tail", "web", "--duration", "soon").exit_code == 2
    assert tcli("debug", "tail", "web", "--where", "novalue").exit_code == 2


@pytest.mark.parametrize(
    ("verb", "extra"), [("tail", ()), ("forward", ("--to", "http://127.0.0.1:9/hook"))]
)
def test_tail_and_forward_take_sources_or_all_alike(cli, source, verb, extra):
    # One rule and one set of declarations (SOURCE..., --duration) for both commands.
    for args in ((), ("web", "--all")):
        result = cli("debug", verb, *args, *extra)
        assert result.exit_code == 2
        assert f"name the sources to {verb}, or use --all (not both)" in result.stderr
    bad = cli("debug", verb, "web", "--duration", "soon", *extra)
    assert bad.exit_code == 2 and "invalid --duration 'soon'" in bad.stderr
    assert cli("debug", verb, "missing", *extra).exit_code == 3


def test_tail_ctrl_c_prints_summary_and_exits_130(tcli, api, source):
    send_many(api, source["id"], 2)

    def interrupt() -> None:
        raise KeyboardInterrupt

    result = tcli("debug", "tail", "web", time=FakeTime({3: interrupt}))
    assert result.exit_code == 130
    assert len(result.stdout.splitlines()) == 2
    assert "2 events shown" in result.stderr


def test_tail_terminal_rendering_at_fixed_width(tcli, api, source, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        send(
            api,
            source["id"],
            "purchase",
            userId="user_7",
            properties={"amount": 42.5, "currency": "EUR", "note": "x" * 200},
        )
        result = tcli("debug", "tail", "web", "--max-events", "1", tty=True, env={"COLUMNS": "80"})
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert result.exit_code == 0, result.stderr
    line = result.stdout.rstrip("\n")
    assert "\n" not in line and len(line) == 80
    stored = api.get("/streams/events").json()["data"][0]["receivedAt"]
    event_id = api.get("/streams/events").json()["data"][0]["id"]
    # Columns: time, type (12 below 100 columns), the id (short below 120), user (10),
    # properties.
    expected = (
        f'{stored[11:23]}  {"purchase":12}  evt_…{event_id[-6:]}  {"user_7":10}  {{"amount":42.5'
    )
    assert line.startswith(expected)
    assert line.endswith("…")


def test_status_line_and_event_line_rendering():
    from rich.console import Console

    from boltic_cli.models import Event
    from boltic_cli.output import TailView
    from boltic_cli.tail import TailRecord, TailStats

    when = datetime(2026, 11, 26, 12, 0, 1, 250000, tzinfo=UTC)
    view = TailView(names={"src_1": "web"}, multi_source=True)
    record = TailRecord(
        "event",
        "src_1",
        Event(
            id="evt_1", type="signup", received_at=when, anonymous_id="anon-1", properties={"a": 1}
        ),
    )
    local = when.astimezone()
    console = Console(width=120, color_system=None, file=io.StringIO(), record=True)
    console.print(view.terminal_line(record, 120), no_wrap=True, overflow="ellipsis", crop=True)
    # In columns: the source as wide as its name, type padded, the id, user, properties.
    assert console.export_text() == (
        f"{local:%H:%M:%S}.250  web  {'signup':18}  evt_1  {'anon-1':16}  " + '{"a":1}\n'
    )
    console = Console(width=40, color_system=None, file=io.StringIO(), record=True)
    console.print(view.terminal_line(record, 40), no_wrap=True, overflow="ellipsis", crop=True)
    # Wider than 40: narrower columns, cut with an ellipsis, on one line.
    assert console.export_text() == f"{local:%H:%M:%S}.250  web  {'signup':12}  evt_1 …\n"
    stats = TailStats(started=0.0, shown=30, connected=True, last_event_at=when)
    stats.arrivals.extend([1.0] * 5 + [float(t) for t in range(11, 21)])  # 10 in the last 10 s
    status = view.status_line(stats, elapsed=20.0, now=when + timedelta(seconds=3))
    assert status == "connected · last event 3s ago · 30 shown · 1.0/s"
    stats.connected = False
    assert view.status_line(stats, elapsed=0, now=when).startswith("connecting · ")
    stats.reconnects = 1
    assert view.status_line(stats, elapsed=0, now=when).startswith("reconnecting · ")


# -- wait ---------------------------------------------------------------------------


def test_wait_finds_a_new_matching_event(tcli, api, source):
    sid = source["id"]
    found: list[str] = []

    def script() -> None:
        send(api, sid, "signup", properties={"plan": "free"})
        send(api, sid, "page_view", properties={"plan": "pro"})
        found.append(send(api, sid, "signup", properties={"plan": "pro"}))

    result = tcli(
        "debug",
        "wait",
        "web",
        "--type",
        "signup",
        "--where",
        "plan=pro",
        "--timeout",
        "30s",
        "--json",
        time=FakeTime({2: script}),
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()["id"] == found[0]


def test_wait_is_not_satisfied_by_an_event_already_there_and_times_out(tcli, api, source):
    send(api, source["id"], "signup", properties={"plan": "pro"})
    fake = FakeTime()
    result = tcli("debug", "wait", "web", "--type", "signup", "--timeout", "20s", time=fake)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no matching event arrived at web within 20s" in result.stderr
    assert abs(fake.now - START - timedelta(seconds=20)) < timedelta(milliseconds=1)


def real_now_time(script=None) -> FakeTime:
    """A FakeTime starting at the real now: --since compares with the server's receivedAt."""
    fake = FakeTime(script)
    fake.now = datetime.now(UTC)
    return fake


def test_wait_since_counts_an_event_sent_just_before(tcli, api, source):
    # CI's natural order: send, then wait.
    sent = send(api, source["id"], "signup", properties={"plan": "pro"})
    send(api, source["id"], "page_view")

    fake = real_now_time()
    result = tcli(
        "debug", "wait", "web", "--type", "signup", "--since", "5m", "--timeout", "20s", "--json",
        time=fake,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.json()["id"] == sent
    assert fake.pauses == 0  # found on the first page, no waiting


def test_wait_since_does_not_count_older_events(tcli, api, source):
    send(api, source["id"], "signup")
    fake = real_now_time()
    fake.now += timedelta(minutes=10)  # the event is 10 minutes old by the CLI's clock

    result = tcli("debug", "wait", "web", "--type", "signup", "--since", "5m", "--timeout", "5s",
                  time=fake)  # fmt: skip

    assert result.exit_code == 1
    assert "no matching event arrived at web within 5s" in result.stderr


def test_wait_bad_since_is_a_usage_error(tcli, source):
    result = tcli("debug", "wait", "web", "--since", "soon")
    assert result.exit_code == 2
    assert "--since" in result.stderr


def test_wait_on_a_terminal_says_what_it_waits_for(tcli, api, source):
    fake = FakeTime({1: lambda: send(api, source["id"], "signup", properties={"plan": "pro"})})

    result = tcli(
        "debug", "wait", "web", "--type", "signup", "--where", "plan=pro", "--timeout", "90s",
        time=fake, tty=True,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("Waiting up to 90s for signup event at web")
    assert "where plan=pro" in first


def test_wait_off_a_terminal_prints_nothing_while_waiting(tcli, api, source):
    fake = FakeTime({1: lambda: send(api, source["id"], "signup")})
    result = tcli("debug", "wait", "web", "--timeout", "30s", time=fake)
    assert result.exit_code == 0
    assert "Waiting" not in result.stderr


def test_wait_plain_labels_are_the_wire_names(tcli, api, source):
    fake = FakeTime({1: lambda: send(api, source["id"], "signup", userId="u1")})
    result = tcli("debug", "wait", "web", "--timeout", "30s", time=fake)
    assert result.exit_code == 0
    labels = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert labels == ["receivedAt", "type", "user", "properties", "id"]


# -- tail --all: new sources, merged history, the connected line ---------------------------


def test_tail_all_picks_up_a_new_source_within_seconds_from_its_first_event(tcli, api, source):
    created: list[float] = []
    late: list[str] = []
    fake = FakeTime()

    def create_and_send() -> None:
        new = api.post("/streams/sources", json={"name": "late", "type": "server"}).json()
        created.append((fake.now - START).total_seconds())
        late.extend(send_many(api, new["id"], 3))

    fake.script = {3: create_and_send}
    result = tcli("debug", "tail", "--all", "--history", "0", "--max-events", "3", "-o", "ndjson",
                  time=fake)  # fmt: skip

    assert result.exit_code == 0, result.stderr
    events = [r for r in result.ndjson() if r["kind"] == "event"]
    assert [e["id"] for e in events] == late  # from its first event, --history 0 or not
    assert (fake.now - START).total_seconds() - created[0] <= 3.0


def test_tail_history_is_a_total_over_all_sources(tcli, api, source):
    other = api.post("/streams/sources", json={"name": "app", "type": "mobile"}).json()
    sent = [send(api, (source if n % 2 else other)["id"], properties={"n": n}) for n in range(10)]

    result = tcli("debug", "tail", "--all", "--history", "4", "--duration", "3s", "-o", "ndjson")

    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in result.ndjson() if r["kind"] == "event"] == sent[-4:]


def test_tail_connected_line_names_every_source(tcli, api, source):
    api.post("/streams/sources", json={"name": "app", "type": "mobile"})

    plain = tcli("debug", "tail", "web", "app", "--duration", "1s")
    ndjson = tcli("debug", "tail", "--all", "--duration", "1s", "-o", "ndjson")

    assert "connected to web, app" in plain.stderr
    (connected,) = [r for r in ndjson.ndjson() if r["kind"] == "connected"]
    assert len(connected["sourceIds"]) == 2
    for n in range(6):
        api.post("/streams/sources", json={"name": f"s{n}", "type": "server"})
    many = tcli("debug", "tail", "--all", "--duration", "1s")
    assert "connected to 8 sources" in many.stderr


# -- end to end: the installed boltic against uvicorn ----------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(server_settings, port: int):
    from boltic_cli.server.runner import start_in_thread

    return start_in_thread(server_settings, "127.0.0.1", port)


class LineReader:
    """Reads a subprocess's stdout line by line, as lines arrive, with a deadline per line.

    A thread does the reading: a selector on a buffered pipe would miss lines
    that arrived together with the previous one.
    """

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def record(self, timeout: float = 20.0) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            raise AssertionError("no line in time; stderr: " + self.process.stderr.read()) from None
        assert line, "boltic exited: " + self.process.stderr.read()
        return json.loads(line)

    def until(self, kind: str, timeout: float = 30.0) -> list[dict]:
        seen = []
        while True:
            seen.append(self.record(timeout))
            if seen[-1]["kind"] == kind:
                return seen


@pytest.fixture
def tail_process(cli_env, spawn_boltic):
    def start(url: str, *args: str) -> subprocess.Popen:
        env = {**cli_env, "BOLTIC_API_URL": url, "BOLTIC_TOKEN": ADMIN_TOKEN}
        return spawn_boltic("debug", "tail", *args, "-o", "ndjson", env=env)

    return start


def create_source(url: str) -> str:
    import httpx

    r = httpx.post(
        f"{url}/streams/sources",
        json={"name": "web", "type": "javascript"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    return r.json()["id"]


def post_event(url: str, sid: str, **fields: Any) -> str:
    import httpx

    r = httpx.post(
        f"{url}/streams/events",
        json={"sourceId": sid, "type": "t", **fields},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 202
    return r.json()["eventId"]


@pytest.mark.e2e
def test_ndjson_lines_arrive_through_a_pipe_before_exit(server_settings, tail_process):
    handle = start_server(server_settings, 0)
    try:
        sid = create_source(handle.url)
        process = tail_process(handle.url, sid, "--history", "0")
        reader = LineReader(process)
        assert reader.record()["kind"] == "connected"
        for n in range(3):
            eid = post_event(handle.url, sid, properties={"n": n})
            record = reader.record()
            assert (record["kind"], record["id"]) == ("event", eid)
            assert process.poll() is None  # still running: the line came as it arrived
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
        assert "3 events shown" in process.stderr.read()
    finally:
        handle.stop()


@pytest.mark.e2e
def test_tail_recovers_after_server_restart(server_settings, tail_process):
    port = free_port()
    handle = start_server(server_settings, port)
    stopped = False
    try:
        sid = create_source(handle.url)
        first = post_event(handle.url, sid)
        process = tail_process(handle.url, sid)
        reader = LineReader(process)
        assert [r["kind"] for r in reader.until("event")] == ["connected", "event"]
        handle.stop()
        stopped = True
        reconnecting = reader.record(timeout=30)
        assert reconnecting["kind"] == "reconnecting" and reconnecting["attempt"] == 1
        handle = start_server(server_settings, port)
        stopped = False
        records = reader.until("connected", timeout=60)
        assert all(r["kind"] == "reconnecting" for r in records[:-1])
        second = post_event(handle.url, sid)
        event = reader.record(timeout=30)
        assert (event["kind"], event["id"]) == ("event", second)
        assert second != first
        process.terminate()
        assert process.wait(timeout=10) == 143
    finally:
        if not stopped:
            handle.stop()


def test_tail_refused_token_ends_with_exit_4(tcli, source):
    result = tcli("debug", "tail", source["id"], env={"BOLTIC_TOKEN": "wrong"})
    assert result.exit_code == 4


def test_tail_status_line_drawn_on_a_colour_terminal(tcli, api, source):
    send(api, source["id"], "signup")
    result = tcli(
        "debug",
        "tail",
        "web",
        "--max-events",
        "1",
        tty=True,
        env={"FORCE_COLOR": "1"},
        without=["NO_COLOR"],
    )
    assert result.exit_code == 0, result.stderr
    assert "connected · last event" in result.stdout
    assert "signup" in result.stdout
