"""Event data is written by strangers' browsers: no escape sequence in it reaches the
terminal raw, whatever the output format (table, plain, csv, json, ndjson, yaml, tail)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import AppTransport, FakeTime

HOSTILE = {
    "type": "\x1b[2J\x1b[31mpwned",
    "userId": "\x1b]0;new title\x07u1",
    "properties": {
        "path": "/\x1b[1;31mred",
        "c1": "\x9b31mcsi",
        "bidi": "\u202eevil\u2066",
        "bell": "ding\x07\x08\x7f",
        "lines": "one\r\ntwo\u2028three",
        "\x1b[6nkey": "a key too",
    },
    "context": {"userAgent": "Mozilla\x1b[6n", "page": {"title": "\x1bPdcs\x1b\\"}},
}
# What must never appear as is: every control a terminal could act on.
RAW = ["\x1b", "\x9b", "\x07", "\x08", "\x7f", "\r", "\u202e", "\u2066", "\u2028"]
# With colour forced Rich writes its own ESC sequences; the event's must still be inert.
RAW_SEQUENCES = ["\x1b[2J", "\x1b]0;", "\x1b[6n", "\x1b[1;31mred", "\x1bP", "\x9b", "\x07"]


@pytest.fixture
def hostile(api) -> dict:
    response = api.post("/streams/sources", json={"name": "\x1b[31mweb\x07", "type": "javascript"})
    assert response.status_code == 201
    source = response.json()
    response = api.post("/streams/events", json={"sourceId": source["id"], **HOSTILE})
    assert response.status_code == 202, response.text
    return source


def assert_inert(result, raw=RAW) -> None:
    assert result.exit_code == 0, result.stderr
    for char in raw:
        assert char not in result.stdout, (char, result.stdout)
        assert char not in result.stderr, (char, result.stderr)


def run(run_cli, api, *args: str, tty: bool = False, color: bool = False):
    fake = FakeTime()
    env = {"BOLTIC_API_URL": "http://testserver/v1", "BOLTIC_TOKEN": ADMIN_TOKEN}
    if color:
        # An empty NO_COLOR counts as unset (no-color.org), so FORCE_COLOR gets its way.
        env.update(FORCE_COLOR="1", NO_COLOR="")
    result = run_cli(
        *args, env=env, transport=AppTransport(api), tty=tty, clock=fake.clock, sleep=fake.sleep
    )
    return result


FORMATS = ["table", "plain", "csv", "json", "ndjson", "yaml"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_events_query_neutralises_event_text(run_cli, api, hostile, fmt):
    result = run(run_cli, api, "events", "query", "-o", fmt, tty=fmt == "table")
    assert_inert(result)
    assert "pwned" in result.stdout  # shown, just harmless
    if fmt != "table":  # the table cuts the properties column short
        assert "csi" in result.stdout


@pytest.mark.parametrize("fmt", ["plain", "ndjson", "json"])
def test_events_query_all_streams_neutralised_text(run_cli, api, hostile, fmt):
    assert_inert(run(run_cli, api, "events", "query", "--all", "-o", fmt))


def test_json_output_keeps_the_data_exact(run_cli, api, hostile):
    result = run(run_cli, api, "events", "query", "-o", "json")
    assert_inert(result)
    event = json.loads(result.stdout)["data"][0]
    assert event["type"] == HOSTILE["type"]
    assert event["properties"] == HOSTILE["properties"]


@pytest.mark.parametrize("fmt", ["table", "plain", "json", "yaml"])
def test_debug_status_neutralises_event_text(run_cli, api, hostile, fmt):
    result = run(run_cli, api, "debug", "status", hostile["id"], "-o", fmt, tty=fmt == "table")
    assert_inert(result)


@pytest.mark.parametrize(
    ("fmt", "tty"), [("plain", False), ("table", True), ("ndjson", False)], ids=str
)
def test_debug_tail_neutralises_event_text(run_cli, api, hostile, fmt, tty):
    args = ["debug", "tail", hostile["id"], "--duration", "2s", "-o", fmt]
    result = run(run_cli, api, *args, tty=tty)
    assert_inert(result)
    # Shown, escaped (on a terminal the type column cuts a long type with an ellipsis).
    assert "pwned" in result.stdout or "\\x1b[2J\\x1b[31mpw…" in result.stdout


def test_debug_tail_of_several_sources_names_them_harmlessly(run_cli, api, hostile):
    result = run(run_cli, api, "debug", "tail", "--all", "--duration", "2s", "-o", "plain")
    assert_inert(result)
    assert "[31mweb" in result.stdout  # the name, made visible, not obeyed


@pytest.mark.parametrize("fmt", ["table", "plain"])
def test_source_names_are_neutralised(run_cli, api, hostile, fmt):
    result = run(run_cli, api, "sources", "list", "-o", fmt, tty=fmt == "table")
    assert_inert(result)


@pytest.mark.parametrize(
    "args",
    [
        ["events", "query", "-o", "table"],
        ["debug", "status", "{id}", "-o", "table"],
        ["debug", "tail", "{id}", "--duration", "2s", "-o", "table"],
    ],
    ids=["query", "status", "tail"],
)
def test_colour_terminal_output_has_only_rich_own_sequences(run_cli, api, hostile, args):
    args = [a.format(id=hostile["id"]) for a in args]
    result = run(run_cli, api, *args, tty=True, color=True)
    assert result.exit_code == 0, result.stderr
    assert "\x1b[" in result.stdout + result.stderr  # colour is on: the check means something
    for sequence in RAW_SEQUENCES:
        assert sequence not in result.stdout and sequence not in result.stderr, sequence
