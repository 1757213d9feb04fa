"""boltic events send: one event from flags, many from a file; the bulk sender engine."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from boltic_cli.models import MAX_BATCH_ITEMS
from boltic_cli.sender import (
    DEFAULT_BATCH_CONCURRENCY,
    MAX_ITEM_CHARS,
    BulkSender,
    InputItem,
    read_items,
)
from tests.conftest import ADMIN_TOKEN
from tests.support import AppTransport


def stored_events(api, **params) -> dict:
    response = api.get("/streams/events", params={"limit": 1000, **params})
    assert response.status_code == 200
    return response.json()


# One event


def test_send_one_event_with_every_option(cli, api, source, tmp_path):
    context_file = tmp_path / "context.json"
    context_file.write_text('{"locale": "de-DE", "page": {"url": "https://x.example/"}}')

    result = cli(
        "events",
        "send",
        "web",
        "--type",
        "purchase",
        "--properties",
        '{"currency": "EUR", "total": 1}',
        "-p",
        "total:=42.5",
        "-p",
        "sku=A-1",
        "-p",
        'tags:=["a", "b"]',
        "--context",
        f"@{context_file}",
        "--user-id",
        "u-7",
        "--anonymous-id",
        "anon-1",
        "--timestamp",
        "2026-03-01T10:00:00+02:00",
    )

    assert result.exit_code == 0, result.stderr
    event_id = result.stdout.strip()
    assert event_id.startswith("evt_")
    (event,) = stored_events(api)["data"]
    assert event["id"] == event_id
    assert event["sourceId"] == source["id"]
    assert event["type"] == "purchase"
    expected = {"currency": "EUR", "total": 42.5, "sku": "A-1", "tags": ["a", "b"]}
    assert event["properties"] == expected
    assert event["context"]["locale"] == "de-DE"
    assert event["context"]["page"] == {"url": "https://x.example/"}
    assert event["userId"] == "u-7"
    assert event["anonymousId"] == "anon-1"
    assert event["timestamp"] == "2026-03-01T08:00:00.000Z"


def test_send_json_prints_the_accepted_object(cli, api, source):
    result = cli("events", "send", source["id"], "--type", "signup", "-o", "json")

    assert result.exit_code == 0
    accepted = result.json()
    assert accepted["status"] == "accepted"
    assert stored_events(api)["data"][0]["id"] == accepted["eventId"]


def test_properties_from_stdin(cli, api, source):
    result = cli("events", "send", "web", "--type", "x", "--properties", "-", input='{"a": [1]}')

    assert result.exit_code == 0, result.stderr
    assert stored_events(api)["data"][0]["properties"] == {"a": [1]}


@pytest.mark.parametrize(
    "args",
    [
        ["-p", "novalue"],
        ["-p", "n:=not-json"],
        ["--properties", "[1, 2]"],
        ["--timestamp", "yesterday-ish"],
    ],
)
def test_bad_input_is_a_usage_error_and_sends_nothing(cli, api, source, args):
    result = cli("events", "send", "web", "--type", "x", *args)

    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert stored_events(api)["summary"]["totalEvents"] == 0


def test_send_needs_a_source_and_a_type(cli, source):
    assert cli("events", "send", "--type", "x").exit_code == 2
    assert cli("events", "send", "web").exit_code == 2


def test_send_to_unknown_source_exits_3(cli, source):
    result = cli("events", "send", "nope", "--type", "x")
    assert result.exit_code == 3


# Many events from a file


def ndjson_lines(source_id: str, count: int) -> list[str]:
    return [
        json.dumps({"sourceId": source_id, "type": f"t{n % 5}", "properties": {"n": n}})
        for n in range(count)
    ]


def test_file_of_2000_with_3_broken_lines(cli, api, source, tmp_path):
    lines = ndjson_lines(source["id"], 2000)
    lines[9] = '{"sourceId": "' + source["id"] + '", "type": '  # cut short: invalid JSON
    lines[999] = json.dumps({"sourceId": source["id"], "properties": {}})  # no type
    lines[1799] = "[1, 2, 3]"  # not an object
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = cli("events", "send", "--file", str(path), "--concurrency", "8")

    assert result.exit_code == 1
    reported = [int(n) for n in re.findall(r"^line (\d+): ", result.stderr, re.MULTILINE)]
    assert sorted(reported) == [10, 1000, 1800]
    assert "Sent 2,000 events in " in result.stderr
    assert "(1,997 accepted, 3 failed; " in result.stderr
    assert "3 failed" in result.stderr
    assert result.stdout == ""
    query = cli("events", "query", "--source", "web", "-o", "json")
    assert query.json()["summary"]["totalEvents"] == 1997
    stored_n = {e["properties"]["n"] for e in stored_events(api, limit=1000)["data"]}
    assert stored_n <= set(range(2000)) - {9, 999, 1799}


def test_file_in_json_mode_reports_failures_as_json(cli, api, source, tmp_path):
    lines = ndjson_lines(source["id"], 20)
    lines[4] = "{broken"
    lines[11] = json.dumps({"sourceId": "src_doesnotexist0000000000000", "type": "x"})
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines), encoding="utf-8")

    result = cli("events", "send", "--file", str(path), "-o", "json")

    assert result.exit_code == 1
    summary = result.json()
    assert (summary["sent"], summary["failed"]) == (18, 2)
    assert summary["seconds"] >= 0 and summary["rate"] >= 0
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    failures = {r["line"]: r["error"] for r in records if "line" in r}
    assert set(failures) == {5, 12}
    assert failures[5]["message"].startswith("invalid JSON")
    assert failures[12]["code"] in (404, 422)
    assert records[-1]["error"]["exitCode"] == 1
    assert stored_events(api)["summary"]["totalEvents"] == 18


def test_json_array_from_stdin_with_source_filling_missing_source_id(cli, api, source):
    other = api.post("/streams/sources", json={"name": "other", "type": "server"}).json()
    items = [
        {"type": "a"},
        {"type": "b", "sourceId": other["id"]},
        {"type": "c", "properties": {"nested": {"x": [1, 2]}}},
    ]
    text = "[\n" + ",\n".join(json.dumps(item, indent=2) for item in items) + "\n]\n"

    result = cli("events", "send", "web", "--file", "-", "-o", "json", input=text)

    assert result.exit_code == 0, result.stderr
    assert result.json()["sent"] == 3
    by_type = {e["type"]: e["sourceId"] for e in stored_events(api)["data"]}
    assert by_type == {"a": source["id"], "b": other["id"], "c": source["id"]}


def test_file_whose_first_event_has_no_source_id_exits_2_before_sending(cli, api, source):
    text = (
        json.dumps({"type": "orphan"}) + "\n" + json.dumps({"type": "ok", "sourceId": source["id"]})
    )

    result = cli("events", "send", "--file", "-", input=text)

    assert result.exit_code == 2
    assert "line 1" in result.stderr and "sourceId" in result.stderr
    assert "Traceback" not in result.stderr
    assert stored_events(api)["summary"]["totalEvents"] == 0


def test_file_with_a_later_event_without_source_id_fails_that_line(cli, api, source):
    text = (
        json.dumps({"type": "ok", "sourceId": source["id"]}) + "\n" + json.dumps({"type": "orphan"})
    )

    result = cli("events", "send", "--file", "-", input=text)

    assert result.exit_code == 1
    assert re.search(r"^line 2: .*sourceId", result.stderr, re.MULTILINE)
    assert stored_events(api)["summary"]["totalEvents"] == 1


def test_file_mode_rejects_single_event_options(cli, source):
    result = cli("events", "send", "web", "--file", "-", "--type", "x", input="")
    assert result.exit_code == 2
    assert "--type" in result.stderr


def test_missing_file_is_a_usage_error(cli, source, tmp_path):
    result = cli("events", "send", "web", "--file", str(tmp_path / "absent.ndjson"))
    assert result.exit_code == 2
    assert "absent.ndjson" in result.stderr


def test_empty_file_sends_nothing(cli, source):
    result = cli("events", "send", "web", "--file", "-", "-o", "json", input="\n\n")
    assert result.exit_code == 0
    assert result.json()["sent"] == 0


def test_wrong_token_stops_the_run_with_exit_4(cli, source, tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(ndjson_lines(source["id"], 200)), encoding="utf-8")

    result = cli("events", "send", "--file", str(path), env={"BOLTIC_TOKEN": "wrong"})

    assert result.exit_code == 4
    assert "(0 accepted, " in result.stderr


# Reading input


def items_of(text: str, chunk_chars: int = 7) -> list[InputItem]:
    return list(read_items(io.StringIO(text), chunk_chars=chunk_chars))


@pytest.mark.parametrize("chunk_chars", [1, 3, 7, 64, 65536])
def test_ndjson_line_numbers_survive_any_chunking(chunk_chars):
    text = '{"a": 1}\n\n  \n{"b": "x\\ny"}\nnot json\n[1]\r\n{"c": 3}'

    items = items_of(text, chunk_chars)

    assert [(i.line, i.body) for i in items if i.body] == [
        (1, {"a": 1}),
        (4, {"b": "x\ny"}),
        (7, {"c": 3}),
    ]
    assert [(i.line, i.error.split(":")[0]) for i in items if i.error] == [
        (5, "invalid JSON"),
        (6, "expected a JSON object, got an array"),
    ]


@pytest.mark.parametrize("chunk_chars", [1, 2, 5, 64, 65536])
def test_json_array_items_report_the_line_they_start_on(chunk_chars):
    text = '\ufeff  [\n {"a": 1},\n {"b": [1,\n 2]}, 12345,\n {"c": oops},\n {"d": 4}\n]\n'

    items = items_of(text, chunk_chars)

    assert [(i.line, i.body, i.error and i.error.split(":")[0]) for i in items] == [
        (2, {"a": 1}, None),
        (3, {"b": [1, 2]}, None),
        (4, None, "expected a JSON object, got a number"),
        (5, None, "invalid JSON"),
        (6, {"d": 4}, None),
    ]


def test_unclosed_json_array_is_reported():
    items = items_of('[{"a": 1}, {"b": 2}', 4)
    assert [i.body for i in items[:2]] == [{"a": 1}, {"b": 2}]
    assert items[2].error is not None and "not closed" in items[2].error


def test_a_line_longer_than_the_cap_is_one_failure_and_reading_goes_on():
    text = '{"a": 1}\n' + "x" * (MAX_ITEM_CHARS + 10) + '\n{"b": 2}\n'

    items = items_of(text, 64 * 1024)

    assert [(i.line, i.body) for i in items if i.body] == [(1, {"a": 1}), (3, {"b": 2})]
    assert [i.line for i in items if i.error] == [2]


# The engine


def make_client(api):
    from boltic_cli.client import BolticClient

    return BolticClient("http://testserver/v1", ADMIN_TOKEN, transport=AppTransport(api))


@pytest.mark.parametrize("batch", [True, False])
def test_sender_counts_and_progress_callbacks(api, source, batch):
    items = [InputItem(n + 1, body={"type": "x"}) for n in range(60)]
    items.append(InputItem(61, error="invalid JSON: boom"))
    progress: list[int] = []

    with make_client(api) as client:
        sender = BulkSender(
            client,
            concurrency=1 if batch else 4,  # one worker: batches answer in order
            batch=batch,
            batch_size=25,
            default_source_id=source["id"],
            on_sent=lambda s: progress.append(s.sent),
        )
        summary = sender.run(items)

    assert (summary.sent, summary.failed) == (60, 1)
    assert [f.line for f in summary.failures] == [61]
    # Once per request that accepted events: 25 + 25 + 10 in batches, else each one.
    assert sorted(progress) == ([25, 50, 60] if batch else list(range(1, 61)))
    assert (summary.mode, summary.requests) == (("batch", 3) if batch else ("single", 60))
    assert stored_events(api)["summary"]["totalEvents"] == 60


def test_sender_interrupted_stops_feeding_and_keeps_the_figures(api, source):
    def items() -> Iterator[InputItem]:
        for n in range(1, 1000):
            if n == 25:
                raise KeyboardInterrupt
            yield InputItem(n, body={"type": "x", "sourceId": source["id"]})

    with make_client(api) as client:
        sender = BulkSender(client, concurrency=3)
        with pytest.raises(KeyboardInterrupt):
            sender.run(items())
        summary = sender.summary()

    assert summary.interrupted
    assert summary.to_dict()["interrupted"] is True
    assert summary.sent + summary.failed <= 24
    assert stored_events(api)["summary"]["totalEvents"] == summary.sent


def test_file_on_a_terminal_shows_progress_then_the_summary(cli, api, source):
    text = "\n".join([*ndjson_lines(source["id"], 30), "oops"])

    result = cli("events", "send", "--file", "-", tty=True, input=text)

    assert result.exit_code == 1
    assert "line 31: invalid JSON" in result.stderr
    assert "Sent 31 events in " in result.stderr
    assert "(30 accepted, 1 failed; " in result.stderr
    assert stored_events(api)["summary"]["totalEvents"] == 30


@pytest.mark.parametrize(
    "flags, calls",
    [
        ((), [("http://testserver/v1/streams/events/batch", "200")]),
        (
            ("--no-batch",),
            [("http://testserver/v1/streams/events", "202")] * 5
            + [("http://testserver/v1/streams/events", "422")],
        ),
    ],
)
def test_file_with_verbose_logs_one_line_per_request(cli, api, source, flags, calls):
    text = "\n".join([*ndjson_lines(source["id"], 5), json.dumps({"sourceId": source["id"]})])

    result = cli("-v", "events", "send", "--file", "-", "--concurrency", "2", *flags, input=text)

    assert result.exit_code == 1
    logged = re.findall(r"^POST (\S+) (\d+) \d+ms$", result.stderr, re.MULTILINE)
    assert sorted(logged) == sorted(calls)
    assert re.search(r"^line 6: .*type", result.stderr, re.MULTILINE)
    assert ADMIN_TOKEN not in result.stderr
    assert stored_events(api)["summary"]["totalEvents"] == 5


def test_send_event_json_against_the_server_stores_once_per_key(api, source):
    from boltic_cli import errors

    payload = json.dumps({"sourceId": source["id"], "type": "signup", "properties": {"n": 1}})
    with make_client(api) as client:
        first = client.send_event_json(payload.encode(), idempotency_key="bulk-1")
        again = client.send_event_json(payload.encode(), idempotency_key="bulk-1")
        other = client.send_event_json(payload.encode())
        with pytest.raises(errors.APIError) as info:
            client.send_event_json(b'{"sourceId": "%s"}' % source["id"].encode())

    assert first.event_id == again.event_id != other.event_id
    assert info.value.status == 422
    stored = stored_events(api)["data"]
    assert sorted(e["id"] for e in stored) == sorted([first.event_id, other.event_id])
    assert stored[0]["properties"] == {"n": 1}


@pytest.fixture
def live_server(server_settings):
    """The server app on a real loopback port: the client's own connections, no transport."""
    from boltic_cli.server.runner import start_in_thread

    handle = start_in_thread(server_settings)
    try:
        yield handle.url
    finally:
        handle.stop()


def test_bulk_send_over_real_connections_one_per_worker(api, source, live_server):
    from boltic_cli.client import BolticClient

    items = [InputItem(n + 1, body={"type": "t", "properties": {"n": n}}) for n in range(300)]
    items.insert(100, InputItem(1000, body={"type": ""}))
    payload = json.dumps({"sourceId": source["id"], "type": "k"}).encode()
    with BolticClient(live_server, ADMIN_TOKEN) as client:
        summary = BulkSender(client, concurrency=4, default_source_id=source["id"]).run(items)
        with client.event_sender() as events:
            first = events.send_event_json(payload, idempotency_key="same")
            again = events.send_event_json(payload, idempotency_key="same")

    assert (summary.sent, summary.failed) == (300, 1)
    assert summary.failures[0].line == 1000
    assert summary.failures[0].error["code"] == 422  # the server judges every item
    assert first.event_id == again.event_id
    stored = stored_events(api, limit=1000)
    assert stored["summary"]["totalEvents"] == 301
    sent_n = sorted(e["properties"]["n"] for e in stored["data"] if e["type"] != "k")
    assert sent_n == list(range(300))


# events generate


def test_generate_count_and_types(cli, api, source):
    result = cli(
        "events", "generate", "web", "--count", "12", "--type", "signup", "--type", "login",
        "-o", "json",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    summary = result.json()
    assert (summary["sent"], summary["failed"]) == (12, 0)
    events = stored_events(api)
    assert events["summary"]["totalEvents"] == 12
    assert {e["type"] for e in events["data"]} <= {"signup", "login"}
    assert {e["sourceId"] for e in events["data"]} == {source["id"]}


def test_generate_on_a_terminal_prints_the_summary_on_stderr(cli, source):
    result = cli("events", "generate", source["id"], "--count", "3", tty=True)
    sent = cli("events", "send", "web", "--file", "-", input='{"type": "a"}\n')

    assert result.exit_code == 0, result.stderr
    assert sent.exit_code == 0, sent.stderr
    # One summary line for generate and send --file (commands/events/send.report_send_figures).
    line = re.compile(r"Sent (\d+) events in \d+\.\ds \((\d+) accepted, 0 failed; [\d,]+/s\)")
    generated = line.fullmatch(result.stderr.strip().splitlines()[-1])
    one = line.fullmatch(sent.stderr.strip().splitlines()[-1])
    assert generated and generated.groups() == ("3", "3")
    assert one and one.groups() == ("1", "1")


def test_the_summary_line_counts_events_tried_then_accepted_and_failed(cli, api, source):
    # 3 good lines and 2 the server refuses: 5 events were sent, 3 accepted, 2 failed.
    lines = ['{"type": "a"}', '{"type": ""}', '{"type": "b"}', '{"type": ""}', '{"type": "c"}']
    result = cli("events", "send", "web", "--file", "-", input="\n".join(lines), tty=True)

    assert result.exit_code == 1
    summary = [line for line in result.stderr.splitlines() if line.startswith("Sent ")]
    assert len(summary) == 1
    assert re.fullmatch(r"Sent 5 events in \d+\.\ds \(3 accepted, 2 failed; [\d,]+/s\)", summary[0])
    assert result.stderr.strip().splitlines()[-1] == "Error: 2 of 5 events failed"
    assert stored_events(api)["summary"]["totalEvents"] == 3


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_generate_against_an_unreachable_server_stops_with_exit_5(run_cli, fmt):
    # As events send --file: the first request that cannot reach the server ends the
    # run (after the client's retries), with the reason, the summary first.
    from tests.cli_faults._support import Sleeps, closed_port

    env = {"BOLTIC_API_URL": f"http://127.0.0.1:{closed_port()}/v1", "BOLTIC_TOKEN": ADMIN_TOKEN}
    for limit in (["--count", "5"], ["--duration", "1m"]):
        sleeps = Sleeps()
        result = run_cli(
            "events", "generate", "src_01J0000000000000000000000", *limit, "-o", fmt,
            env=env, sleep=sleeps,
        )  # fmt: skip

        assert result.exit_code == 5, (limit, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        if fmt == "json":
            summary = result.json()
            error = json.loads(lines[-1])["error"]
            assert error["exitCode"] == 5 and "connection refused" in error["message"]
            lines = lines[:-1]
        else:
            figures = re.fullmatch(
                r"Sent (\d+) events in .* \(0 accepted, (\d+) failed; 0/s\)", lines[0]
            )
            assert figures and figures[1] == figures[2]
            summary = {"sent": 0, "failed": int(figures[2])}
            lines = lines[1:]
        assert len(lines) == 1 and lines[0].startswith("Error: cannot reach ")
        assert "connection refused" in lines[0]
        # Nothing accepted; one batch failed (5 events, or up to 500 without --count),
        # the run did not go on failing for the whole minute.
        assert summary["sent"] == 0
        assert 1 <= summary["failed"] <= MAX_BATCH_ITEMS
        if limit[0] == "--count":
            assert summary["failed"] == 5
        assert len(sleeps.calls) == 2  # the client's three tries, backing off between


def test_generate_when_the_server_stops_mid_run_ends_with_exit_5(
    run_cli, api, source, server_settings
):
    from boltic_cli.server.runner import start_in_thread

    handle = start_in_thread(server_settings)
    env = {"BOLTIC_API_URL": handle.url, "BOLTIC_TOKEN": ADMIN_TOKEN}

    def stop_after_some_events() -> None:
        deadline = time.monotonic() + 30
        while stored_events(api)["summary"]["totalEvents"] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        handle.stop()

    stopper = threading.Thread(target=stop_after_some_events)
    stopper.start()
    try:
        args = ["events", "generate", source["id"], "--rate", "200", "--duration", "60s"]
        result = run_cli(*args, "-o", "json", env=env, sleep=lambda s: None)
    finally:
        stopper.join()
        handle.stop()

    assert result.exit_code == 5, (result.stdout, result.stderr)
    summary = result.json()
    stored = stored_events(api)["summary"]["totalEvents"]
    # Every event it counted as accepted was stored; it stopped at the first request
    # that could not reach the server instead of failing for the rest of the minute.
    assert summary["sent"] == stored >= 20
    assert 1 <= summary["failed"] <= MAX_BATCH_ITEMS * DEFAULT_BATCH_CONCURRENCY
    assert summary["seconds"] < 60
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["exitCode"] == 5 and "cannot reach" in error["message"]


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_generate_stopped_by_a_signal_prints_its_summary_first(
    api, source, live_server, cli_env, sig, status
):
    from tests.support import BOLTIC, reap

    env = {**cli_env, "BOLTIC_API_URL": live_server, "BOLTIC_TOKEN": ADMIN_TOKEN}
    process = subprocess.Popen(
        [BOLTIC, "events", "generate", source["id"], "--rate", "50", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while stored_events(api)["summary"]["totalEvents"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        reap(process)
    assert process.returncode == status, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True and summary["failed"] == 0
    # Every event it counted was stored, and it counted every one it stored.
    assert summary["sent"] == stored_events(api)["summary"]["totalEvents"] >= 3


def test_generate_bad_duration_is_a_usage_error(cli, api, source):
    result = cli("events", "generate", "web", "--duration", "soon")

    assert result.exit_code == 2
    assert stored_events(api)["summary"]["totalEvents"] == 0


def test_items_of_a_one_line_json_array_are_told_apart(cli, api):
    source = api.post("/streams/sources", json={"name": "arr", "type": "server"}).json()
    text = '[{"type": "ok"}, {"nope": 1}, {"type": "ok2"}]'
    result = cli("events", "send", source["id"], "--file", "-", input=text)
    assert result.exit_code == 1
    assert "line 1, item 2:" in result.stderr
    assert "item 1" not in result.stderr and "item 3" not in result.stderr
    as_json = cli("events", "send", source["id"], "--file", "-", "-o", "json", input=text)
    failures = [json.loads(line) for line in as_json.stderr.splitlines() if '"line"' in line]
    assert [(f["line"], f["item"]) for f in failures] == [(1, 2)]
    events = api.get("/streams/events", params={"sourceId": source["id"]}).json()
    assert events["summary"]["totalEvents"] == 4
