"""Values the CLI and server must survive (design.md; issue 11), kind by kind, through the
CLI against the real server app: numbers JSON cannot hold, invalid text, nesting, times
at the edge of the calendar, NUL, output a stream cannot encode, byte-order marks and
CRLF, display width, spreadsheet formulas, and a keyring that hangs or fails.

Every refusal is checked for its exit code, its one stderr line, and that nothing was
stored; every output for still parsing as JSON where it is JSON.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from keyring.backend import KeyringBackend

from tests.support import FakeTime, MemoryKeyring

# --- helpers -----------------------------------------------------------------------


def stored(api, source_id: str) -> list[dict]:
    response = api.get("/streams/events", params={"sourceId": source_id, "limit": 1000})
    assert response.status_code == 200
    return response.json()["data"]


def send(api, source_id: str, event_type: str = "t", **fields: Any) -> str:
    response = api.post(
        "/streams/events", json={"sourceId": source_id, "type": event_type, **fields}
    )
    assert response.status_code == 202, response.text
    return response.json()["eventId"]


def one_line(result) -> str:
    """The single stderr line of a refusal (no traceback, never "unexpected")."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    assert "unexpected" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


def refused(result, *words: str, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    line = one_line(result)
    for word in words:
        assert word in line, (word, line)
    return line


def deep_text(depth: int, leaf: str = "1") -> str:
    """``depth`` arrays around ``leaf`` as JSON text (json.dumps recurses too deep)."""
    return "[" * depth + leaf + "]" * depth


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` arrays around ``leaf`` (``nested(2) == [[1]]``)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# --- numbers JSON cannot hold --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-p", "x:=NaN"], ["'x:=NaN'", "NaN"]),
        (["-p", "x:=Infinity"], ["'x:=Infinity'", "Infinity"]),
        (["-p", "x:=-Infinity"], ["'x:=-Infinity'", "-Infinity"]),
        (["-p", "x:=1e999"], ["'x:=1e999'", "1e999", "beyond the range"]),
        (["-p", "x:=[1, -2.5e400]"], ["-2.5e400"]),
        (["-p", 'x:={"deep": {"n": 1E+309}}'], ["1E+309"]),
        (["--properties", '{"x": NaN}'], ["--properties", "NaN"]),
        (["--properties", '{"x": 1e999}'], ["--properties", "1e999"]),
        (["--context", '{"screen": {"dpi": Infinity}}'], ["--context", "Infinity"]),
    ],
)
def test_numbers_json_cannot_hold_are_refused_before_sending(cli, api, source, args, words):
    result = cli("events", "send", "web", "--type", "t", *args)
    line = refused(result, *words)
    assert line.startswith(f"Error: {args[0]}: ")  # the option, then the value
    assert stored(api, source["id"]) == []


def test_numbers_json_cannot_hold_in_files_and_stdin(cli, api, source, tmp_path):
    (tmp_path / "p.json").write_text('{"big": 1e999}', encoding="utf-8")
    result = cli("events", "send", "web", "--type", "t", "--properties", f"@{tmp_path}/p.json")
    refused(result, "--properties", str(tmp_path / "p.json"), "1e999")
    result = cli("events", "send", "web", "--type", "t", "--context", "-", input='{"a": NaN}')
    refused(result, "--context", "stdin", "NaN")
    assert stored(api, source["id"]) == []


def test_numbers_json_cannot_hold_in_destination_config(cli, api):
    result = cli(
        "destinations", "create", "--name", "d", "--type", "custom", "--config", '{"w": NaN}'
    )
    refused(result, "--config", "NaN")
    result = cli("destinations", "create", "--name", "d", "--type", "custom", "-c", "w:=-1e500")
    refused(result, "-c: ", "'w:=-1e500'")
    assert api.get("/streams/destinations").json()["data"] == []


def test_numbers_json_cannot_hold_are_per_line_failures_in_file(cli, api, source, tmp_path):
    lines = [
        '{"type": "t", "properties": {"n": 1}}',
        '{"type": "t", "properties": {"n": NaN}}',
        '{"type": "t", "properties": {"n": 3}}',
        '{"type": "t", "properties": {"n": -Infinity}}',
        '{"type": "t", "properties": {"n": 1e999}}',
        '{"type": "t", "properties": {"n": 6}}',
    ]
    file = tmp_path / "events.ndjson"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("events", "send", "web", "--file", str(file), "--concurrency", "2")
    assert result.exit_code == 1
    failures = sorted(result.stderr.splitlines()[:-2])
    assert [f.split(":")[0] for f in failures] == ["line 2", "line 4", "line 5"]
    assert "NaN" in failures[0] and "-Infinity" in failures[1] and "1e999" in failures[2]
    assert sorted(e["properties"]["n"] for e in stored(api, source["id"])) == [1, 3, 6]


def test_numbers_json_cannot_hold_inside_a_json_array_file(cli, api, source, tmp_path):
    file = tmp_path / "events.json"
    file.write_text(
        '[\n{"type": "t", "properties": {"n": 1}},\n{"type": "t", "properties": {"n": NaN}},\n'
        '{"type": "t", "properties": {"n": 9e9999}},\n{"type": "t", "properties": {"n": 4}}\n]\n',
        encoding="utf-8",
    )
    result = cli("events", "send", "web", "--file", str(file), "-o", "json")
    assert result.exit_code == 1
    failures = [json.loads(line) for line in result.stderr.splitlines()[:-2]]
    assert sorted((f["line"], f["item"]) for f in failures) == [(3, 2), (4, 3)]
    assert json.loads(result.stdout)["sent"] == 2
    assert sorted(e["properties"]["n"] for e in stored(api, source["id"])) == [1, 4]


BIG = [
    123456789012345678901234567890,
    -(10**300),
    int("9" * 4300),  # Python's (and the server parser's) digit limit
    2**64,
    -(2**63) - 1,
]


def test_integers_of_any_size_round_trip_unchanged(cli, api, source):
    props = {f"n{i}": n for i, n in enumerate(BIG)} | {"f": 1.7976931348623157e308, "g": -5e-324}
    text = "{" + ", ".join(f'"{k}": {v!r}' for k, v in props.items()) + "}"
    result = cli("events", "send", "web", "--type", "big", "--properties", text, "-o", "json")
    assert result.exit_code == 0, result.stderr
    query = cli("events", "query", "--source", "web", "-o", "json")
    assert query.json()["data"][0]["properties"] == props
    # The digits themselves, not a float's rounding of them, are printed.
    assert str(BIG[0]) in query.stdout and str(BIG[2]) in query.stdout
    ndjson = cli("events", "query", "--source", "web", "-o", "ndjson")
    assert ndjson.ndjson()[0]["properties"] == props


def test_integers_beyond_the_digit_limit_are_refused_cleanly(cli, api, source):
    result = cli("events", "send", "web", "--type", "t", "-p", "n:=" + "7" * 4301)
    refused(result, "4301 digits")
    assert stored(api, source["id"]) == []


# --- invalid text -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-p", 'x:="half \\ud83d"'],
        ["-p", 'x:="\\udc00 low half first"'],
        ["-p", 'x:=["ok", "\\udbff"]'],
        ["--properties", '{"\\ud800": 1}'],
        ["--context", '{"page": {"title": "a \\ude00 b"}}'],
    ],
)
def test_lone_surrogates_are_refused_with_one_line(cli, api, source, args):
    result = cli("events", "send", "web", "--type", "t", *args)
    refused(result, "lone surrogate")
    assert stored(api, source["id"]) == []


def test_a_proper_surrogate_pair_escape_is_text(cli, api, source):
    result = cli("events", "send", "web", "--type", "t", "-p", 'x:="\\ud83d\\ude00 ok"')
    assert result.exit_code == 0, result.stderr
    assert stored(api, source["id"])[0]["properties"] == {"x": "😀 ok"}


def test_lone_surrogate_line_in_file_is_reported_and_the_rest_sent(cli, api, source, tmp_path):
    file = tmp_path / "events.ndjson"
    file.write_text(
        '{"type": "t", "properties": {"n": 1}}\n'
        '{"type": "t", "properties": {"n": 2, "s": "half \\ud83d"}}\n'
        '{"type": "t\\udfff", "properties": {"n": 3}}\n'
        '{"type": "t", "properties": {"n": 4, "s": "\\u00e9 fine"}}\n',
        encoding="utf-8",
    )
    result = cli("events", "send", "web", "--file", str(file), "--concurrency", "1")
    assert result.exit_code == 1
    failures = result.stderr.splitlines()[:-2]
    assert [f.split(":")[0] for f in failures] == ["line 2", "line 3"]
    assert all("lone surrogate" in f for f in failures)
    assert "unexpected" not in result.stderr
    assert sorted(e["properties"]["n"] for e in stored(api, source["id"])) == [1, 4]


@pytest.mark.parametrize(
    ("args", "name", "shown"),
    [
        (["events", "send", "web", "--type", "\udce9"], "--type", "\\xe9"),
        (["events", "send", "web", "--type=sign\udcffup"], "--type", "sign\\xffup"),
        (["events", "send", "web", "--type", "t", "-p", "plan=\udcc3pro"], "-p", "\\xc3"),
        (["events", "send", "w\udce9b", "--type", "t"], "argument 3", "w\\xe9b"),
        (["sources", "create", "--name", "caf\udce9", "--type", "server"], "--name", "\\xe9"),
    ],
)
def test_arguments_that_are_not_utf8_are_exit_2_naming_the_option(cli, api, args, name, shown):
    result = cli(*args)
    line = refused(result, name, shown, "not valid UTF-8")
    assert line.startswith(f"Error: {name}:")
    assert api.get("/streams/sources").json()["data"] == []  # nothing was created


@pytest.mark.e2e
def test_argument_bytes_that_are_not_utf8_through_the_installed_cli(tmp_path):
    """The real process: bytes from the shell arrive as surrogates (PEP 383)."""
    env = {"PATH": "/usr/bin:/bin", "BOLTIC_CONFIG_DIR": str(tmp_path), "LANG": "C.UTF-8"}
    process = subprocess.run(
        [sys.executable, "-m", "boltic_cli", "events", "send", "web", "--type", b"\xe9"],
        capture_output=True,
        env={**env, "BOLTIC_API_URL": "http://127.0.0.1:9/v1", "BOLTIC_TOKEN": "x" * 20},
        timeout=60,
    )
    assert process.returncode == 2, process.stderr
    assert process.stderr.decode().splitlines() == [
        "Error: --type: '\\xe9' is not valid UTF-8 text "
        "(check the shell's quoting and the locale's encoding)"
    ]


# --- nesting ------------------------------------------------------------------------


def test_nesting_beyond_the_server_depth_is_refused_before_sending(cli, api, source, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' + deep_text(1500) + "}", encoding="utf-8")
    result = cli("events", "send", "web", "--type", "t", "--properties", f"@{deep}")
    refused(result, "--properties", "nested deeper than")
    result = cli("events", "send", "web", "--type", "t", "-p", "x:=" + "[" * 5000 + "]" * 5000)
    refused(result, "'x:=[[[", "nested deeper than")
    result = cli("events", "send", "web", "--type", "t", "--context", "-", input="{" * 3000)
    refused(result, "--context", "nested deeper than")
    # The body is one level more: properties may nest 199 levels, 200 is refused.
    too_deep = json.dumps({"a": nested(199)})
    refused(cli("events", "send", "web", "--type", "t", "--properties", too_deep), "nested")
    refused(cli("events", "send", "web", "--type", "t", "-p", "a.b:=" + json.dumps(nested(198))))
    assert stored(api, source["id"]) == []


def test_nesting_at_the_limit_is_sent_and_rendered_in_every_format(cli, api, source):
    props = {"a": nested(197, {"k": "v"})}  # properties: 199 levels; the body: 200
    result = cli("events", "send", "web", "--type", "deep", "--properties", json.dumps(props))
    assert result.exit_code == 0, result.stderr
    assert stored(api, source["id"])[0]["properties"] == props
    for fmt in ("json", "ndjson", "yaml", "csv", "plain", "table"):
        out = cli("events", "query", "--source", "web", "-o", fmt, tty=fmt == "table")
        assert out.exit_code == 0, (fmt, out.stderr)
        assert "RecursionError" not in out.stderr
    assert cli("events", "query", "-o", "json").json()["data"][0]["properties"] == props
    status = cli("debug", "status", "web", "-o", "yaml")
    assert status.exit_code == 0, status.stderr


def test_deep_lines_in_a_file_are_per_line_failures(cli, api, source, tmp_path):
    ok = json.dumps({"type": "t", "properties": {"n": 1}})
    file = tmp_path / "events.ndjson"
    file.write_text(
        "\n".join([ok, '{"type": "t", "properties": {"n": ' + deep_text(1500) + "}}", ok]) + "\n",
        encoding="utf-8",
    )
    result = cli("events", "send", "web", "--file", str(file))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("line 2: invalid JSON: nested deeper than")
    array = tmp_path / "events.json"
    deep_item = json.dumps({"type": "t", "properties": {"n": nested(300)}})
    deeper_item = '{"type": "t", "properties": {"n": ' + deep_text(3000) + "}}"
    array.write_text(f"[\n{ok},\n{deep_item},\n{deeper_item},\n{ok}\n]\n", encoding="utf-8")
    result = cli("events", "send", "web", "--file", str(array))
    assert result.exit_code == 1
    failures = result.stderr.splitlines()[:-2]
    assert [f.split(":")[0] for f in failures] == ["line 3, item 2", "line 4, item 3"]
    assert "RecursionError" not in result.stderr and "unexpected" not in result.stderr
    assert len(stored(api, source["id"])) == 4


def test_an_answer_nested_beyond_any_parser_is_one_line_not_a_recursion_error(run_cli):
    """Only a server other than ours can answer this (ours refuses such bodies)."""
    import httpx

    body = '{"data": [{"id": "src_1", "name": ' + deep_text(5000, '"x"') + "}]}"
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, text=body, headers={"content-type": "application/json"})
    )
    env = {"BOLTIC_API_URL": "http://api.test/v1", "BOLTIC_TOKEN": "t" * 20}
    for fmt in ("json", "table", "yaml"):
        result = run_cli("sources", "list", "-o", fmt, env=env, transport=transport)
        assert result.exit_code == 1
        assert result.stderr.splitlines()[0] == "Error: the data is nested too deeply to handle"
        assert "RecursionError" not in result.stderr
        if fmt == "json":
            error = json.loads(result.stderr.splitlines()[1])["error"]
            assert error["exitCode"] == 1


def test_a_deep_where_value_is_plain_text():
    from boltic_cli.params import parse_where

    (where,) = parse_where(["a=" + "[" * 5000])
    assert where.value == "[" * 5000


# --- times at the edge of the calendar ----------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "0001-01-01T00:59:59.999+01:00"],
)
def test_times_outside_the_calendar_in_utc_are_exit_2(cli, api, source, timestamp):
    result = cli("events", "send", "web", "--type", "t", "--timestamp", timestamp)
    refused(result, "--timestamp", timestamp, "out of range")
    assert stored(api, source["id"]) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "0001-01-01T00:00:00+00:01"],
        ["--until", "9999-12-31"],  # a date means its end: the first moment of year 10000
        ["--since", "100000000d"],
    ],
)
def test_query_times_outside_the_calendar_are_exit_2(cli, args):
    refused(cli("events", "query", *args), args[0], "out of range")


@pytest.mark.parametrize(
    "timestamp",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59.9999-00:01"],
)
def test_server_answers_422_for_times_outside_the_calendar(api, source, timestamp):
    body = {"sourceId": source["id"], "type": "t", "timestamp": timestamp}
    response = api.post("/streams/events", json=body)
    assert response.status_code == 422
    assert response.json()["details"].startswith("timestamp: ")
    assert "outside years 1..9999" in response.json()["details"]
    query = api.get("/streams/events", params={"from": timestamp})
    assert query.status_code == 422
    assert "from: " in query.json()["details"] and "1..9999" in query.json()["details"]
    assert stored(api, source["id"]) == []


def test_times_at_the_edges_in_a_file_are_per_line_failures(cli, api, source, tmp_path):
    file = tmp_path / "events.ndjson"
    file.write_text(
        '{"type": "t", "timestamp": "9999-12-31T23:59:59.999Z"}\n'
        '{"type": "t", "timestamp": "9999-12-31T23:59:59-01:00"}\n'
        '{"type": "t", "timestamp": "0001-01-01T00:00:00Z"}\n',
        encoding="utf-8",
    )
    result = cli("events", "send", "web", "--file", str(file), "--concurrency", "1")
    assert result.exit_code == 1
    # The CLI checks the EventInput before sending: the server would answer 422.
    assert result.stderr.splitlines()[0].startswith("line 2: invalid ")
    assert "timestamp" in result.stderr and "1..9999" in result.stderr
    times = sorted(e["timestamp"] for e in stored(api, source["id"]))
    assert times == ["0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"]


@pytest.fixture(params=["Pacific/Kiritimati", "Etc/GMT+12", "UTC"])
def zone(request, monkeypatch):
    """The machine's time zone: far east (+14), far west (-12), UTC."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_extreme_stored_times_render_in_every_zone_and_format(cli, api, source, zone):
    send(api, source["id"], "future", timestamp="9999-12-31T23:59:59.999Z")
    send(api, source["id"], "past", timestamp="0001-01-01T00:00:00Z")
    send(api, source["id"], "now")
    table = cli("events", "query", "--source", "web", tty=True, env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.stderr
    assert "9999-12-31" in table.stdout and "0001-01-01" in table.stdout
    if zone != "UTC":
        assert "UTC" in table.stdout  # the one that cannot be local is marked
    for fmt in ("json", "ndjson", "yaml", "csv", "plain"):
        out = cli("events", "query", "--source", "web", "-o", fmt)
        assert out.exit_code == 0, (fmt, out.stderr)
        assert "9999-12-31T23:59:59.999Z" in out.stdout
    status = cli("debug", "status", "web", tty=True)
    assert status.exit_code == 0, status.stderr
    fake = FakeTime()
    tail = cli(
        "debug", "tail", "web", "--duration", "1s", tty=False, sleep=fake.sleep, clock=fake.clock
    )
    assert tail.exit_code == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == 3


@pytest.mark.parametrize(
    "window",
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T05:00:00Z"),
        ("9999-12-31T20:00:00Z", "9999-12-31T23:00Z"),
    ],
)
def test_stats_windows_at_the_calendar_edges_render_in_every_zone(cli, api, source, zone, window):
    send(api, source["id"], "edge", timestamp=window[0])
    args = ("events", "stats", "--since", window[0], "--until", window[1], "--by", "1h")
    for tty in (True, False):
        out = cli(*args, tty=tty, env={"COLUMNS": "100"})
        assert out.exit_code == 0, out.stderr
    data = cli(*args, "-o", "json")
    assert data.exit_code == 0, data.stderr
    assert sum(bucket["count"] for bucket in data.json()["buckets"]) == 1
    # The window's end as a date means its end: the first moment of year 10000.
    refused(cli("events", "stats", "--since", window[0], "--until", "9999-12-31"), "out of range")


def test_format_local_time_falls_back_to_utc(zone):
    from boltic_cli.output import format_local_time

    now = datetime(2026, 11, 30, tzinfo=UTC)
    late = format_local_time(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), now)
    early = format_local_time(datetime(1, 1, 1, 0, 0, tzinfo=UTC), now)
    if zone == "Pacific/Kiritimati":
        assert late.startswith("9999-12-31 23:59:59 UTC (in ")
        # Local time where the platform can convert it, else UTC marked as such.
        assert early.startswith(("0001-01-01 14:00:00 (", "0001-01-01 00:00:00 UTC ("))
    elif zone == "Etc/GMT+12":
        assert late.startswith("9999-12-31 11:59:59 (in ")
        assert early.startswith("0001-01-01 00:00:00 UTC (")
    else:
        assert late.startswith("9999-12-31 23:59:59 (") and early.startswith("0001-01-01 00:00")


# --- NUL ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "a\u0000b"),
        ("userId", "u\u0000"),
        ("anonymousId", "\u0000"),
        ("sourceId", "src_\u0000"),
    ],
)
def test_nul_in_identifiers_is_422(api, source, field, value):
    body = {"sourceId": source["id"], "type": "t", field: value}
    response = api.post("/streams/events", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["details"].startswith(f"{field}: ")
    assert "U+0000" in response.json()["details"]
    assert stored(api, source["id"]) == []


def test_nul_in_names_is_422(api):
    response = api.post("/streams/sources", json={"name": "we\u0000b", "type": "server"})
    assert response.status_code == 422 and "name: " in response.json()["details"]
    body = {"name": "d\u0000", "type": "custom", "config": {}}
    response = api.post("/streams/destinations", json=body)
    assert response.status_code == 422 and "U+0000" in response.json()["details"]


def test_nul_through_the_cli_identifiers_refused_properties_kept(cli, api, source, tmp_path):
    file = tmp_path / "events.ndjson"
    file.write_text(
        '{"type": "a\\u0000b"}\n{"type": "t", "properties": {"k\\u0000": "v\\u0000w"}}\n',
        encoding="utf-8",
    )
    result = cli("events", "send", "web", "--file", str(file), "--concurrency", "1")
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith("line 1: invalid ") and "type" in first and "U+0000" in first
    sent = cli(
        "events",
        "send",
        "web",
        "--type",
        "t",
        "-p",
        'x:="a\\u0000b"',
        "--context",
        '{"c": "\\u0000"}',
    )
    assert sent.exit_code == 0, sent.stderr
    events = cli("events", "query", "--source", "web", "-o", "json").json()["data"]
    assert {"k\u0000": "v\u0000w"} in [e.get("properties") for e in events]
    assert {"x": "a\u0000b"} in [e.get("properties") for e in events]
    assert any(e["context"].get("c") == "\u0000" for e in events)
    plain = cli("events", "query", "--source", "web", "-o", "plain")
    assert "\x00" not in plain.stdout and "\\u0000" in plain.stdout


# --- output a stream cannot encode ---------------------------------------------------

WORDS = {"jp": "注文完了", "emoji": "🎉 party", "accent": "café", "mixed": "a\u2028b\u0085c"}


@pytest.fixture
def unicode_events(api, source) -> list[str]:
    ids = [send(api, source["id"], "注文完了", properties=WORDS, userId="ユーザー")]
    ids.append(send(api, source["id"], "결제", properties={"amount": 5}))
    return ids


@pytest.mark.parametrize("charset", ["cp1252", "ascii", "latin-1"])
def test_json_output_falls_back_to_escapes_and_still_parses(cli, unicode_events, charset):
    out = cli("events", "query", "--source", "web", "-o", "json", charset=charset)
    assert out.exit_code == 0, out.stderr
    out.stdout.encode(charset)  # nothing the stream could not hold
    data = out.json()["data"]
    assert data[1]["properties"] == WORDS and data[1]["userId"] == "ユーザー"
    nd = cli("events", "query", "--source", "web", "-o", "ndjson", charset=charset)
    assert nd.exit_code == 0 and nd.ndjson()[1]["type"] == "注文完了"
    single = cli("sources", "get", "web", "-o", "json", charset=charset)
    assert single.exit_code == 0 and single.json()["name"] == "web"


@pytest.mark.parametrize("charset", ["cp1252", "ascii"])
@pytest.mark.parametrize("fmt", ["table", "plain", "csv", "yaml"])
def test_text_output_falls_back_to_visible_escapes(cli, unicode_events, charset, fmt):
    out = cli("events", "query", "--source", "web", "-o", fmt, charset=charset, tty=fmt == "table")
    assert out.exit_code == 0, out.stderr
    assert "unexpected" not in out.stderr
    assert "\\u6ce8\\u6587" in out.stdout.lower()  # 注文 as visible escapes
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(out.stdout)))
        assert rows[0][:3] == ["id", "sourceId", "type"] and len(rows) == 3


@pytest.mark.parametrize("charset", ["cp1252", "ascii"])
def test_debug_commands_survive_an_encoding_that_lacks_characters(cli, api, source, charset):
    send(api, source["id"], "注文完了", properties={"e": "🎉"})
    for fmt in ("table", "json", "csv"):
        stats = cli("events", "stats", "-o", fmt, charset=charset, tty=fmt == "table")
        assert stats.exit_code == 0, (fmt, stats.stderr)
        assert "\\u6ce8" in stats.stdout.lower()
    for fmt in ("json", "table", "plain", "yaml"):
        status = cli("debug", "status", "web", "-o", fmt, charset=charset, tty=fmt == "table")
        assert status.exit_code == 0, (fmt, status.stderr)
        if fmt == "json":
            assert status.json()["events"][0]["type"] == "注文完了"
    for fmt in ("ndjson", "plain"):
        fake = FakeTime()
        tail = cli(
            "debug", "tail", "web", "--duration", "1s", "-o", fmt,
            charset=charset, sleep=fake.sleep, clock=fake.clock,
        )  # fmt: skip
        assert tail.exit_code == 0, (fmt, tail.stderr)
        assert "\\u6ce8" in tail.stdout
        if fmt == "ndjson":
            events = [r for r in tail.ndjson() if r["kind"] == "event"]
            assert events[0]["properties"] == {"e": "🎉"}


class _Scripted(FakeTime):
    """FakeTime that sends an event at its second pause (the CLI is waiting by then)."""

    def __init__(self, action) -> None:
        super().__init__()
        self.pauses = 0
        self.action = action

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.pauses += 1
        if self.pauses == 2:
            self.action()


@pytest.mark.parametrize("fmt", ["json", "plain", "table"])
def test_debug_wait_prints_a_match_on_an_ascii_stream_and_exits_0(cli, api, source, fmt):
    fake = _Scripted(lambda: send(api, source["id"], "注文完了", properties={"e": "🎉"}))
    result = cli(
        "debug", "wait", "web", "--type", "注文完了", "--timeout", "30s", "-o", fmt,
        charset="ascii", sleep=fake.sleep, clock=fake.clock, tty=fmt == "table",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr  # exit 1 would read as "timed out"
    if fmt == "json":
        assert result.json()["properties"] == {"e": "🎉"}


def test_errors_naming_event_text_survive_an_ascii_stderr(cli, api, source):
    result = cli("sources", "get", "ソース", charset="ascii")
    assert result.exit_code == 3
    line = one_line(result)
    assert "\\u30bd" in line


@pytest.mark.e2e
def test_output_escapes_through_the_installed_cli_and_a_real_server(tmp_path):
    """PYTHONIOENCODING=cp1252 / ascii and LANG=C against `boltic server` on loopback."""
    from tests.support import reap, start_server

    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "BOLTIC_CONFIG_DIR": str(tmp_path / "config"),
        "BOLTIC_DATA_DIR": str(tmp_path / "data"),
        "BOLTIC_TOKEN": "tok-values-0123456789",
    }
    server, url = start_server(tmp_path / "s.db", base, "--token", base["BOLTIC_TOKEN"])
    try:
        env = {**base, "BOLTIC_API_URL": url}

        def boltic(*args: str, **extra: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [sys.executable, "-m", "boltic_cli", *args],
                capture_output=True,
                env={**env, **extra},
                timeout=60,
            )

        assert boltic("sources", "create", "--name", "web", "--type", "server").returncode == 0
        sent = boltic("events", "send", "web", "--type", "注文", "-p", "e=🎉", "-p", "c=café")
        assert sent.returncode == 0, sent.stderr
        for extra in (
            {"PYTHONIOENCODING": "cp1252"},
            {"PYTHONIOENCODING": "ascii"},
            {"LANG": "C", "LC_ALL": "C"},
        ):
            for fmt in ("json", "ndjson", "plain", "csv", "yaml"):
                out = boltic("events", "query", "--source", "web", "-o", fmt, **extra)
                assert out.returncode == 0, (extra, fmt, out.stderr)
                assert b"unexpected" not in out.stderr
                if fmt == "json":
                    encoding = extra.get("PYTHONIOENCODING", "utf-8")
                    event = json.loads(out.stdout.decode(encoding))["data"][0]
                    assert event["type"] == "注文" and event["properties"]["e"] == "🎉"
            status = boltic("debug", "status", "web", "-o", "json", **extra)
            assert status.returncode == 0, status.stderr
            encoding = extra.get("PYTHONIOENCODING", "utf-8")
            assert json.loads(status.stdout.decode(encoding))["events"][0]["type"] == "注文"
    finally:
        reap(server)


@pytest.mark.e2e
def test_stdin_is_read_as_utf8_whatever_the_locale(tmp_path):
    process = subprocess.run(
        [sys.executable, "-c", "import sys; from boltic_cli.params import load_json_object; "
         "from boltic_cli.context import utf8_input; "
         "print(ascii(load_json_object('-', utf8_input(sys.stdin))))"],
        input='\ufeff{"plan": "注文"}\r\n'.encode(),
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "ascii"},
        timeout=60,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    assert process.stdout.decode().strip() == "{'plan': '\\u6ce8\\u6587'}"


# --- byte-order marks and CRLF -----------------------------------------------------------

BOM = b"\xef\xbb\xbf"


def test_bom_and_crlf_in_option_files_and_stdin(cli, api, source, tmp_path):
    (tmp_path / "p.json").write_bytes(BOM + b'{"plan":"pro"}')
    result = cli("events", "send", "web", "--type", "p", "--properties", f"@{tmp_path}/p.json")
    assert result.exit_code == 0, result.stderr
    (tmp_path / "c.json").write_bytes(BOM + b'{\r\n  "locale": "fr",\r\n  "x": "\xc3\xa9"\r\n}\r\n')
    result = cli("events", "send", "web", "--type", "c", "--context", f"@{tmp_path}/c.json")
    assert result.exit_code == 0, result.stderr
    result = cli(
        "events", "send", "web", "--type", "s", "--properties", "-", input='\ufeff{"n": 3}\r\n'
    )
    assert result.exit_code == 0, result.stderr
    events = {e["type"]: e for e in stored(api, source["id"])}
    assert events["p"]["properties"] == {"plan": "pro"}
    assert events["c"]["context"]["locale"] == "fr" and events["c"]["context"]["x"] == "é"
    assert events["s"]["properties"] == {"n": 3}
    (tmp_path / "cfg.json").write_bytes(BOM + b'{"url": "https://example.com/in"}\r\n')
    dest = cli(
        "destinations", "create", "--name", "d", "--type", "webhook",
        "--config", f"@{tmp_path}/cfg.json", "-o", "json",
    )  # fmt: skip
    assert dest.exit_code == 0, dest.stderr
    assert dest.json()["config"]["url"] == "https://example.com/in"


@pytest.mark.parametrize("shape", ["ndjson", "array"])
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_bom_and_crlf_in_file_input(cli, api, source, tmp_path, shape, via):
    items = [{"type": "t", "properties": {"n": n}} for n in range(1, 5)]
    if shape == "ndjson":
        text = "\r\n".join(json.dumps(i) for i in items) + "\r\n"
    else:
        text = "[\r\n" + ",\r\n".join(json.dumps(i) for i in items) + "\r\n]\r\n"
    data = BOM + text.encode()
    if via == "file":
        (tmp_path / "in.txt").write_bytes(data)
        result = cli("events", "send", "web", "--file", str(tmp_path / "in.txt"))
    else:
        result = cli("events", "send", "web", "--file", "-", input=data.decode("utf-8"))
    assert result.exit_code == 0, result.stderr
    assert sorted(e["properties"]["n"] for e in stored(api, source["id"])) == [1, 2, 3, 4]


# --- width -----------------------------------------------------------------------------


def test_bar_chart_lays_out_by_display_cells():
    from collections import Counter

    from rich.cells import cell_len

    from boltic_cli.commands.events.query import bar_chart

    lines = bar_chart(Counter({"注文完了": 4, "결제": 2, "signup": 1, "🎉": 1}), 8)
    starts = [cell_len(line.split("█")[0]) for line in lines]
    assert len(set(starts)) == 1, lines
    clipped = bar_chart(Counter({"注文完了注文完了注文完了注文完了": 1}), 4, max_label=9)
    assert cell_len(clipped[0].split("  ")[0]) <= 9 and "…" in clipped[0]


def test_query_chart_and_table_align_on_a_terminal(cli, api, source):
    for event_type, n in (("注文完了", 3), ("결제", 2), ("signup", 1)):
        for _ in range(n):
            send(api, source["id"], event_type)
    out = cli("events", "query", "--source", "web", tty=True)
    assert out.exit_code == 0, out.stderr
    from rich.cells import cell_len

    chart = [line for line in out.stdout.splitlines() if "█" in line]
    assert len(chart) == 3
    assert len({cell_len(line.split("█")[0]) for line in chart}) == 1, chart
    rows = [line for line in out.stdout.splitlines() if "│" in line]
    assert len({cell_len(line) for line in rows}) == 1  # every table row as wide


def test_cell_helpers():
    from boltic_cli.output import cell_width, clip_cells, pad_cells

    assert cell_width("注文") == 4 and pad_cells("注文", 6) == "注文  "
    assert clip_cells("注文完了", 5) == "注文…" and cell_width(clip_cells("注文完了", 5)) <= 5
    assert clip_cells("abc", 3) == "abc"


# --- spreadsheet formulas ------------------------------------------------------------------


def test_csv_cells_that_would_be_formulas_are_quoted(cli, api):
    api.post("/streams/sources", json={"name": "+csvx", "type": "server"})
    source_id = api.get("/streams/sources").json()["data"][0]["id"]
    for event_type in ("=1+1", "@SUM(A1)", "-cmd|' /C calc'!A0", "\tlead", "\rlead", "ok"):
        send(api, source_id, event_type, properties={"n": -5}, userId="-5")
    send(api, source_id, "+2", userId='=HYPERLINK("http://x")')
    out = cli("events", "query", "--source", source_id, "-o", "csv")
    assert out.exit_code == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    types = sorted(row["type"] for row in rows)
    assert types == sorted(
        ["'=1+1", "'@SUM(A1)", "'-cmd|' /C calc'!A0", "'\\tlead", "'\\rlead", "ok", "+2"]
    )
    assert {row["userId"] for row in rows} == {"-5", '\'=HYPERLINK("http://x")'}
    sources = list(csv.DictReader(io.StringIO(cli("sources", "list", "-o", "csv").stdout)))
    assert sources[0]["name"] == "'+csvx"
    # JSON keeps the data as it is.
    data = cli("events", "query", "--source", source_id, "-o", "json").json()["data"]
    assert "=1+1" in [e["type"] for e in data]


def test_csv_send_then_query_the_issue_example(cli, api):
    assert cli("sources", "create", "--name", "csvx", "--type", "server").exit_code == 0
    assert cli("events", "send", "csvx", "--type", "=1+1").exit_code == 0
    out = cli("events", "query", "--source", "csvx", "-o", "csv")
    assert next(csv.DictReader(io.StringIO(out.stdout)))["type"] == "'=1+1"


# --- a keyring that hangs or fails -------------------------------------------------------------


class HangingKeyring(MemoryKeyring):
    """A keyring whose every call blocks until released (a wedged D-Bus secret service)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.release.wait(60)
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self.release.wait(60)
        super().set_password(service, username, password)


class BrokenKeyring(KeyringBackend):
    """A keyring whose backend fails the way a D-Bus secret service does."""

    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown: no Secret Service\nmore")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise OSError("D-Bus connection refused")

    def delete_password(self, service: str, username: str) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def keyring_backend(monkeypatch, request):
    import keyring

    from boltic_cli import credentials

    monkeypatch.setattr(credentials, "KEYRING_TIMEOUT", 0.5)
    previous = keyring.get_keyring()
    backend = request.param()
    keyring.set_keyring(backend)
    yield backend
    if isinstance(backend, HangingKeyring):
        backend.release.set()
    keyring.set_keyring(previous)


def cloud_profile(cli_env) -> None:
    config = Path(cli_env["BOLTIC_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(
        'current_profile = "cloud"\n[profiles.cloud]\napi_url = "http://127.0.0.1:9/v1"\n'
    )


@pytest.mark.parametrize("keyring_backend", [HangingKeyring], indirect=True)
def test_a_hanging_keyring_is_bounded_exit_4(run_cli, cli_env, keyring_backend):
    cloud_profile(cli_env)
    started = time.monotonic()
    result = run_cli("sources", "list")
    assert time.monotonic() - started < 5
    line = refused(result, "keyring", "HangingKeyring", "0.5s", "BOLTIC_TOKEN", code=4)
    assert line.startswith("Error: cannot read the system keyring")
    login = run_cli("auth", "login", "--profile", "other", "--with-token", input="tok_" + "x" * 20)
    refused(login, "cannot store the token in the system keyring", "BOLTIC_TOKEN", code=4)
    # BOLTIC_TOKEN wins without asking the keyring.
    token = run_cli("auth", "token", env={"BOLTIC_TOKEN": "tok_env_0123456789"})
    assert (token.exit_code, token.stdout) == (0, "tok_env_0123456789\n"), token.stderr


@pytest.mark.parametrize("keyring_backend", [BrokenKeyring], indirect=True)
def test_a_failing_keyring_is_one_line_exit_4(run_cli, cli_env, keyring_backend):
    cloud_profile(cli_env)
    result = run_cli("sources", "list", "-o", "json")
    assert result.exit_code == 4
    first, error_json = result.stderr.splitlines()
    assert first.startswith("Error: cannot read the system keyring (")
    assert "BrokenKeyring): " in first
    assert "ServiceUnknown" in first and "BOLTIC_TOKEN" in first and "more" not in first
    assert json.loads(error_json)["error"]["exitCode"] == 4
    login = run_cli("auth", "login", "--profile", "other", "--with-token", input="tok_" + "x" * 20)
    refused(login, "D-Bus connection refused", code=4)


# --- boltic api prints the answer's bytes ---------------------------------------------------


def _answer(body: bytes, content_type: str = "application/json"):
    import httpx

    return httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers={"content-type": content_type})
    )


API_ENV = {"BOLTIC_API_URL": "http://api.test/v1", "BOLTIC_TOKEN": "t" * 20}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"a":2}',  # duplicate keys: a parser would keep one
        b'{ "n" : 1.10, "big": 123456789012345678901234567890e-5 }\n',
        b'{"s":"\\u00e9\\ud83d\\ude00","t":"caf\xc3\xa9"}',
        b"[1, 2]\n\n",
        b'\xef\xbb\xbf{"bom": true}',
    ],
)
def test_api_prints_the_answer_bytes_unchanged_when_piped(run_cli, body):
    result = run_cli("api", "GET", "/anything", env=API_ENV, transport=_answer(body))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.encode("utf-8") == body


def test_api_pretty_prints_on_a_terminal_only(run_cli):
    result = run_cli(
        "api", "GET", "/x", env=API_ENV, transport=_answer(b'{"a":1,"b":[2]}'), tty=True
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == '{\n  "a": 1,\n  "b": [\n    2\n  ]\n}\n'


def test_api_bytes_from_the_real_server(cli, api, source):
    send(api, source["id"], "注文", properties={"e": "🎉", "n": 10**30})
    result = cli("api", "GET", "/streams/events")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.encode() == api.get("/streams/events").content


def test_api_input_file_with_a_bom_and_crlf(cli, api, source, tmp_path):
    body = {"sourceId": source["id"], "type": "bom", "properties": {"x": "é"}}
    path = tmp_path / "event.json"
    path.write_bytes(BOM + json.dumps(body, indent=1).replace("\n", "\r\n").encode())
    result = cli("api", "POST", "/streams/events", "--input", str(path))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert stored(api, source["id"])[0]["properties"] == {"x": "é"}
