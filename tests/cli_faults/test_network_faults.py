"""What `boltic` does when the network or the server misbehaves.

Faults a real server cannot be made to show (an answer cut short, a slow read,
429 and 503 sequences, garbage bodies) come from a scripted socket server; the
rest runs against the real server app.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ADMIN_TOKEN

from ._support import (
    SOURCE,
    FaultServer,
    Sleeps,
    after,
    assert_clean_failure,
    closed_port,
    cut_short,
    error_reply,
    http_reply,
    json_reply,
)

TOKEN = "fault-matrix-token-5f1c2a9e"
SOURCES_OK = json_reply(200, {"data": [SOURCE]})


@pytest.fixture
def against(run_cli):
    """Run boltic against ``server`` (a FaultServer or a URL) with a recording sleep."""

    def run(target, *args: str, sleeps: Sleeps | None = None):
        url = target if isinstance(target, str) else target.url
        env = {"BOLTIC_API_URL": url, "BOLTIC_TOKEN": TOKEN}
        return run_cli(*args, env=env, sleep=sleeps or Sleeps())

    return run


@pytest.mark.parametrize("json_mode", [False, True])
def test_connection_refused_is_exit_5_after_three_tries(against, json_mode):
    sleeps = Sleeps()
    args = ["sources", "list"] + (["-o", "json"] if json_mode else [])
    result = against(f"http://127.0.0.1:{closed_port()}/v1", *args, sleeps=sleeps)
    line = assert_clean_failure(result, 5, json_mode=json_mode)
    assert "connection refused" in line
    assert len(sleeps.calls) == 2  # three tries, two pauses
    assert result.stdout == ""


def test_answer_cut_short_then_retried_loses_nothing(against):
    with FaultServer([cut_short(SOURCES_OK, 120), SOURCES_OK]) as server:
        result = against(server, "sources", "list", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert [s["id"] for s in json.loads(result.stdout)] == [SOURCE["id"]]
    assert len(server.seen) == 2


def test_answer_always_cut_short_is_exit_5(against):
    with FaultServer([cut_short(SOURCES_OK, 120)]) as server:
        result = against(server, "sources", "list")
    line = assert_clean_failure(result, 5)
    assert "closed" in line
    assert len(server.seen) == 3
    assert result.stdout == ""


def test_answer_cut_inside_the_headers_is_exit_5(against):
    with FaultServer([cut_short(SOURCES_OK, 20)]) as server:
        result = against(server, "sources", "list")
    assert_clean_failure(result, 5)
    assert len(server.seen) == 3


def test_post_answer_cut_short_is_retried_with_the_same_idempotency_key(against):
    accepted = json_reply(202, {"eventId": "evt_1", "status": "accepted"})
    # An id is never looked up (design.md, Ids): the POST is the first request.
    with FaultServer([cut_short(accepted, 30), accepted]) as server:
        result = against(server, "events", "send", SOURCE["id"], "--type", "signup")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "evt_1\n"
    posts = [s for s in server.seen if s.method == "POST"]
    assert len(posts) == 2
    keys = {s.headers["idempotency-key"] for s in posts}
    assert len(keys) == 1 and keys != {""}


def test_read_slower_than_request_timeout_is_exit_5_without_retry(against):
    with FaultServer([after(10, SOURCES_OK)]) as server:
        result = against(server, "--request-timeout", "0.3", "sources", "list")
    line = assert_clean_failure(result, 5)
    assert "timed out after 0.3 s" in line
    assert "--request-timeout" in line
    assert len(server.seen) == 1  # a slow server gets no second chance


def test_429_with_retry_after_is_retried_then_succeeds(against):
    limited = error_reply(429, "slow down", headers={"Retry-After": "2"})
    sleeps = Sleeps()
    with FaultServer([limited, SOURCES_OK]) as server:
        result = against(server, "sources", "list", "-o", "json", sleeps=sleeps)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert [s["id"] for s in json.loads(result.stdout)] == [SOURCE["id"]]
    assert sleeps.calls == [2.0]
    assert len(server.seen) == 2


def test_429_that_never_ends_is_exit_1_with_the_servers_message(against):
    limited = error_reply(429, "slow down", headers={"Retry-After": "1"})
    sleeps = Sleeps()
    with FaultServer([limited]) as server:
        result = against(server, "sources", "list", sleeps=sleeps)
    line = assert_clean_failure(result, 1)
    assert "slow down" in line
    assert sleeps.calls == [1.0, 1.0]
    assert len(server.seen) == 3


@pytest.mark.parametrize("json_mode", [False, True])
def test_persistent_503_is_three_tries_then_exit_1(against, json_mode):
    unavailable = error_reply(503, "store unavailable")
    args = ["sources", "list"] + (["--json"] if json_mode else [])
    with FaultServer([unavailable]) as server:
        result = against(server, *args)
    line = assert_clean_failure(result, 1, json_mode=json_mode)
    assert "store unavailable" in line
    assert len(server.seen) == 3
    assert result.stdout == ""
    if json_mode:
        assert json.loads(result.stderr.splitlines()[1])["error"]["code"] == 503


def test_503_then_success_prints_the_answer_once(against):
    with FaultServer([error_reply(503, "busy"), SOURCES_OK]) as server:
        result = against(server, "sources", "list", "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SOURCE["id"] + "\n"


HTML = "<!doctype html><html><body><h1>502 Bad Gateway</h1>\x1b[2J</body></html>"


@pytest.mark.parametrize(
    ("reply", "exit_code"),
    [
        (http_reply(200, HTML, content_type="text/html"), 1),
        (http_reply(200, b"\x00\xff\xfe garbage \x1b]0;owned\x07", content_type="x/y"), 1),
        (http_reply(200, '{"data": [', content_type="application/json"), 1),
        (json_reply(200, {"data": "not a list"}), 1),
        (http_reply(500, HTML, content_type="text/html"), 1),
        (http_reply(404, HTML, content_type="text/html"), 3),
        (http_reply(200, b"\x1f\x8b garbage", headers={"Content-Encoding": "gzip"}), 1),
    ],
    ids=[
        "html-200",
        "binary-200",
        "truncated-json",
        "wrong-shape",
        "html-500",
        "html-404",
        "bad-gzip",
    ],
)
def test_html_or_garbage_body_is_one_clean_line(against, reply, exit_code):
    with FaultServer([reply]) as server:
        result = against(server, "sources", "list")
    line = assert_clean_failure(result, exit_code)
    assert "\x1b" not in result.stderr and "\x00" not in result.stderr
    assert "<h1>" not in line  # a page of HTML is not an error message
    assert result.stdout == ""


def test_garbage_body_in_json_mode_adds_the_json_error(against):
    with FaultServer([http_reply(200, HTML, content_type="text/html")]) as server:
        result = against(server, "sources", "list", "-o", "json")
    assert_clean_failure(result, 1, json_mode=True)


# Against the real server


def test_401_is_exit_4_with_a_login_hint(cli):
    result = cli("sources", "list", env={"BOLTIC_TOKEN": "not-the-token"})
    line = assert_clean_failure(result, 4)
    assert "boltic auth login" in line
    assert "not-the-token" not in result.stderr


def test_401_in_json_mode(cli):
    result = cli("sources", "list", "-o", "json", env={"BOLTIC_TOKEN": "not-the-token"})
    assert_clean_failure(result, 4, json_mode=True)
    assert json.loads(result.stderr.splitlines()[1])["error"]["code"] == 401


def test_401_from_the_local_server_hints_at_its_token(against):
    with FaultServer([error_reply(401, "unknown token")]) as server:
        result = against(server, "sources", "list")
    line = assert_clean_failure(result, 4)
    assert "boltic server" in line


@pytest.mark.parametrize(
    "args",
    [
        ["sources", "get", "no-such-source"],
        ["sources", "get", "src_01J9ZZZZZZZZZZZZZZZZZZZZZZ"],
        ["events", "send", "no-such-source", "--type", "signup"],
        ["events", "query", "--source", "no-such-source"],
        ["debug", "status", "no-such-source"],
        ["debug", "tail", "no-such-source"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_unknown_source_is_exit_3(cli, api, args):
    result = cli(*args)
    line = assert_clean_failure(result, 3)
    assert "no-such-source" in line or "src_01J9" in line
    assert result.stdout == ""
    total = api.get("/streams/events").json()["summary"]["totalEvents"]
    assert total == 0


def test_unknown_source_in_ndjson_mode(cli):
    result = cli("debug", "tail", "no-such-source", "-o", "ndjson")
    assert_clean_failure(result, 3, json_mode=True)


def test_admin_token_works_against_the_same_server(cli):
    """The control for the cases above: the same commands succeed with the right token."""
    result = cli("sources", "list", "-o", "json", env={"BOLTIC_TOKEN": ADMIN_TOKEN})
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_401_for_a_write_key_hints_at_the_key_not_the_servers_token(run_cli):
    with FaultServer([error_reply(401, "unknown token")]) as server:
        env = {"BOLTIC_API_URL": server.url, "BOLTIC_TOKEN": SOURCE["writeKey"]}
        result = run_cli("events", "send", SOURCE["id"], "--type", "t", env=env, sleep=Sleeps())
    line = assert_clean_failure(result, 4)
    assert "write key" in line and "boltic server" not in line


# -- events generate against a failing server (the rules of events send --file) ----------

UNAVAILABLE = error_reply(503, "service unavailable")


def test_generate_whose_events_all_fail_is_exit_1_with_the_first_reason(against):
    sleeps = Sleeps()
    with FaultServer([UNAVAILABLE]) as server:
        result = against(server, "events", "generate", SOURCE["id"], "--count", "5", sleeps=sleeps)

    assert result.exit_code == 1, (result.stdout, result.stderr)
    summary, error = result.stderr.strip().splitlines()
    assert re.fullmatch(r"Sent 5 events in \S+ \(0 accepted, 5 failed; 0/s\)", summary)
    assert error == "Error: 5 of 5 events failed; the first: service unavailable (HTTP 503)"
    assert len(server.seen) == 3 and len(sleeps.calls) == 2  # retried with backoff
    assert all(seen.target.endswith("/streams/events/batch") for seen in server.seen)


def test_generate_ends_at_its_duration_while_the_server_fails_slowly(against):
    from boltic_cli.models import MAX_BATCH_ITEMS
    from boltic_cli.sender import DEFAULT_BATCH_CONCURRENCY

    # The first batch (which decides the run's way) fails at once; every later try
    # takes a second to fail, so each request holds a worker for three seconds. At
    # the one-second deadline the requests in flight end, and the events queued
    # behind them are dropped unsent instead of failing one slow request after another.
    slow = after(1.0, UNAVAILABLE)
    with FaultServer([UNAVAILABLE] * 3 + [slow]) as server:
        args = ["events", "generate", SOURCE["id"], "--duration", "1s", "-o", "json"]
        result = against(server, *args)

    assert result.exit_code == 1, (result.stdout, result.stderr)
    summary = result.json()
    assert summary["sent"] == 0
    # The first batch and one per worker; never the batches queued at the deadline.
    assert summary["failed"] <= MAX_BATCH_ITEMS * (1 + DEFAULT_BATCH_CONCURRENCY)
    assert summary["seconds"] < 5  # the tries in flight at 1 s end by ~3 s
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["exitCode"] == 1 and "service unavailable" in error["message"]
