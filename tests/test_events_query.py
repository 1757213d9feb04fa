"""boltic events query: one page, --all over a cursorless API, tables, summaries, limits."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from boltic_cli.commands.events.query import bar_chart
from boltic_cli.models import format_time
from tests.conftest import ADMIN_TOKEN, CliResult
from tests.support import AppTransport, invoke_cli

BASE = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def utc_zone(monkeypatch):
    """Tables show local times: pin the zone so rendered text is the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def cli_at(cli_env, api):
    """Like ``cli``, with the CLI's clock fixed at ``now`` (ages in tables are then exact)."""

    def run(*args: str, now: datetime) -> CliResult:
        environ = {**cli_env, "BOLTIC_API_URL": "http://testserver/v1", "BOLTIC_TOKEN": ADMIN_TOKEN}
        return invoke_cli(*args, environ=environ, transport=AppTransport(api), clock=lambda: now)

    return run


def post_event(api, source_id: str, type_: str, when: datetime, **fields) -> str:
    body = {"sourceId": source_id, "type": type_, "timestamp": format_time(when), **fields}
    response = api.post("/streams/events", json=body)
    assert response.status_code == 202, response.text
    return response.json()["eventId"]


def test_one_page_json_has_data_and_summary_of_all_matches(cli, api, source):
    for n in range(12):
        post_event(api, source["id"], "view" if n % 3 else "buy", BASE + timedelta(seconds=n))

    result = cli("events", "query", "--limit", "5", "-o", "json")

    assert result.exit_code == 0, result.stderr
    body = result.json()
    assert [e["timestamp"] for e in body["data"]] == [
        format_time(BASE + timedelta(seconds=n)) for n in (11, 10, 9, 8, 7)
    ]
    assert body["summary"]["totalEvents"] == 12
    assert body["summary"]["uniqueEventTypes"] == 2
    assert body["summary"]["timeRange"] == {
        "from": format_time(BASE),
        "to": format_time(BASE + timedelta(seconds=11)),
    }


def test_filters_source_by_name_type_and_time_window(cli, api, source):
    other = api.post("/streams/sources", json={"name": "app", "type": "mobile"}).json()
    for n in range(6):
        post_event(api, source["id"], "view", BASE + timedelta(hours=n))
        post_event(api, other["id"], "view", BASE + timedelta(hours=n))
    post_event(api, source["id"], "buy", BASE + timedelta(hours=2))

    result = cli(
        "events",
        "query",
        "--source",
        "web",
        "--type",
        "view",
        "--since",
        format_time(BASE + timedelta(hours=1)),
        "--until",
        format_time(BASE + timedelta(hours=4)),
        "-o",
        "ndjson",
    )

    assert result.exit_code == 0, result.stderr
    events = result.ndjson()
    assert {(e["sourceId"], e["type"]) for e in events} == {(source["id"], "view")}
    assert sorted(e["timestamp"] for e in events) == [
        format_time(BASE + timedelta(hours=n)) for n in (1, 2, 3)
    ]


def test_a_date_until_means_the_end_of_that_day(cli, api, source):
    post_event(api, source["id"], "late", datetime(2026, 3, 1, 23, 59, 59, 999000, tzinfo=UTC))
    post_event(api, source["id"], "next", datetime(2026, 3, 2, 0, 0, tzinfo=UTC))

    result = cli("events", "query", "--from", "2026-03-01", "--to", "2026-03-01", "-o", "ndjson")

    assert [e["type"] for e in result.ndjson()] == ["late"]


@pytest.mark.parametrize("limit", ["0", "1001", "-5"])
def test_limit_out_of_range_is_refused_before_any_request(run_cli, limit):
    # Nothing listens on port 9: a request would end in exit 5, not 2.
    result = run_cli(
        "events",
        "query",
        "--limit",
        limit,
        env={"BOLTIC_API_URL": "http://127.0.0.1:9/v1", "BOLTIC_TOKEN": "x"},
    )
    assert result.exit_code == 2
    assert "--limit" in result.stderr


def test_since_after_until_is_a_usage_error(run_cli):
    result = run_cli(
        "events",
        "query",
        "--since",
        "2026-03-02",
        "--until",
        "2026-03-01",
        env={"BOLTIC_API_URL": "http://127.0.0.1:9/v1", "BOLTIC_TOKEN": "x"},
    )
    assert result.exit_code == 2


def test_unknown_source_exits_3(cli, source):
    assert cli("events", "query", "--source", "nope").exit_code == 3


def seed_with_ties(api, source_id: str, total: int, rng: random.Random) -> set[str]:
    """``total`` events over few timestamps, so pages often end inside a group of ties."""
    ids = set()
    n = 0
    while n < total:
        group = min(rng.randint(1, 60), total - n)
        when = BASE + timedelta(milliseconds=n * 7)
        for _ in range(group):
            ids.add(post_event(api, source_id, rng.choice(["a", "b", "c"]), when))
        n += group
    return ids


@pytest.mark.slow
def test_all_returns_exactly_the_stored_set_across_many_tied_pages(cli, api, source):
    stored = seed_with_ties(api, source["id"], 2500, random.Random(4))

    streamed = cli("events", "query", "--all", "--limit", "97", "-o", "ndjson")
    as_json = cli("events", "query", "--all", "-o", "json")

    assert streamed.exit_code == 0, streamed.stderr
    ids = [e["id"] for e in streamed.ndjson()]
    assert len(ids) == len(set(ids)) == 2500
    assert set(ids) == stored
    times = [e["timestamp"] for e in streamed.ndjson()]
    assert times == sorted(times, reverse=True)
    assert "Warning" not in streamed.stderr

    body = as_json.json()
    assert {e["id"] for e in body["data"]} == stored
    assert len(body["data"]) == 2500
    assert body["summary"]["totalEvents"] == 2500


def test_all_fetches_every_tie_even_when_more_share_a_timestamp_than_a_page(client, api, source):
    # The example: 15 events, 10 on one timestamp, pages of 3.
    for _ in range(10):
        post_event(api, source["id"], "tie", BASE + timedelta(seconds=5))
    for n in range(5):
        post_event(api, source["id"], "older", BASE + timedelta(seconds=n))

    events = list(client.iter_events(page_size=3))

    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)) == 15
    assert Counter(e.type for e in events) == {"tie": 10, "older": 5}


def test_all_ignores_limit_and_returns_all_fifteen(cli, api, source):
    for _ in range(10):
        post_event(api, source["id"], "tie", BASE + timedelta(seconds=5))
    for n in range(5):
        post_event(api, source["id"], "older", BASE + timedelta(seconds=n))

    result = cli("events", "query", "--all", "--limit", "3", "-o", "ndjson", "-v")

    assert result.exit_code == 0, result.stderr
    assert Counter(e["type"] for e in result.ndjson()) == {"tie": 10, "older": 5}
    assert "Warning" not in result.stderr
    # The walk's page size is its own (1000): one request, whatever --limit says.
    assert len([line for line in result.stderr.splitlines() if line.startswith("GET ")]) == 1


def test_all_exits_1_with_the_count_when_a_millisecond_holds_more_than_1000(cli, api, source):
    when = format_time(BASE + timedelta(seconds=5))
    for size in (500, 500, 3):
        batch = [{"sourceId": source["id"], "type": "tie", "timestamp": when}] * size
        response = api.post("/streams/events/batch", json={"batch": batch})
        assert response.json()["accepted"] == size, response.text
    post_event(api, source["id"], "older", BASE)

    result = cli("events", "query", "--all", "-o", "ndjson")

    assert result.exit_code == 1
    events = result.ndjson()
    assert len({e["id"] for e in events}) == len(events) == 1001
    assert Counter(e["type"] for e in events) == {"tie": 1000, "older": 1}
    assert "3 matching events could not be fetched" in result.stderr
    assert "2026-03-01T12:00:05.000Z" in result.stderr


def test_all_respects_the_time_window_and_type(cli, api, source):
    for n in range(30):
        post_event(api, source["id"], "x" if n % 2 else "y", BASE + timedelta(minutes=n))

    result = cli(
        "events",
        "query",
        "--all",
        "--limit",
        "4",
        "--type",
        "x",
        "--since",
        format_time(BASE + timedelta(minutes=10)),
        "--until",
        format_time(BASE + timedelta(minutes=20)),
        "-o",
        "ndjson",
    )

    minutes = sorted(
        int((datetime.fromisoformat(e["timestamp"]) - BASE).total_seconds() // 60)
        for e in result.ndjson()
    )
    assert minutes == [11, 13, 15, 17, 19]


def test_table_with_summary_and_chart_at_fixed_width(cli_at, api, source, utc_zone):
    post_event(api, source["id"], "page_view", BASE, userId="u1", properties={"path": "/"})
    post_event(api, source["id"], "page_view", BASE + timedelta(seconds=1), anonymousId="an-2")
    post_event(api, source["id"], "signup", BASE + timedelta(seconds=2), userId="u1")

    result = cli_at("events", "query", "-o", "table", now=BASE + timedelta(minutes=5))

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 120 for line in lines)
    assert lines[0].split() == ["TIME", "TYPE", "SOURCE", "USER", "PROPERTIES", "ID"]
    ids = [e["id"] for e in api.get("/streams/events").json()["data"]]
    assert lines[1].split() == [
        "2026-03-01", "12:00:02", "(4m", "ago)", "signup", "web", "u1", ids[0]
    ]  # fmt: skip
    assert lines[2].split() == [
        "2026-03-01", "12:00:01", "(4m", "ago)", "page_view", "web", "an-2", ids[1]
    ]  # fmt: skip
    assert lines[3].split() == [
        "2026-03-01", "12:00:00", "(5m", "ago)", "page_view", "web", "u1", '{"path":"/"}', ids[2]
    ]  # fmt: skip
    summary = "\n".join(lines[4:])
    assert "Total events:  3" in summary
    assert "Unique types:  2" in summary
    assert "Time range:    2026-03-01 12:00:00 (5m ago) to 2026-03-01 12:00:02 (4m ago)" in summary
    assert "page_view  " + "█" * 40 + " 2" in summary
    assert "signup     " + "█" * 20 + " 1" in summary


def test_plain_rows_and_hostile_event_text_is_neutralised(cli, api, source):
    post_event(api, source["id"], "evil\x1b[31mred", BASE, properties={"x": "\x1b]0;title\x07"})

    plain = cli("events", "query")
    table = cli("events", "query", "-o", "table")

    for shown in (plain, table):
        assert shown.exit_code == 0
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    row = plain.stdout.splitlines()[0].split("\t")
    assert row[0] == format_time(BASE)
    assert row[1] == "evil\\x1b[31mred"
    assert row[2] == source["id"]


def test_all_in_table_mode_charts_every_page(cli_at, api, source, utc_zone):
    for n in range(7):
        post_event(api, source["id"], "a" if n < 5 else "b", BASE + timedelta(seconds=n))

    result = cli_at("events", "query", "--all", "--limit", "2", "-o", "table", now=BASE)

    assert result.exit_code == 0
    assert "Events per type (all pages):" in result.stdout
    assert "a  " + "█" * 40 + " 5" in result.stdout
    assert "b  " + "█" * 16 + " 2" in result.stdout


def test_bar_chart_scales_and_sanitises():
    chart = bar_chart(Counter({"big": 100, "small": 1, "\x1b[2J": 50}), 10)
    assert chart == [
        "big      ██████████ 100",
        "\\x1b[2J  █████ 50",
        "small    █ 1",
    ]
    assert bar_chart(Counter(), 10) == []


# -- the library: BolticClient.iter_events --------------------------------------------


def test_iter_events_walks_every_match_from_python(client, api, source):
    stored = seed_with_ties(api, source["id"], 300, random.Random(9))
    summaries: list = []
    warnings: list[str] = []
    walk = client.iter_events(
        source_id=source["id"],
        page_size=61,  # more than the largest group of ties: every event is reachable
        on_summary=summaries.append,
        on_warning=warnings.append,
    )
    events = list(walk)
    assert {e.id for e in events} == stored
    assert len(events) == 300
    times = [e.timestamp for e in events]
    assert times == sorted(times, reverse=True)
    assert len(summaries) == 1 and summaries[0].total_events == 300
    assert warnings == []


def test_iter_events_is_lazy_and_reaches_ties_beyond_a_page(client, api, source):
    for _ in range(6):
        post_event(api, source["id"], "tie", BASE + timedelta(seconds=5))
    post_event(api, source["id"], "older", BASE)
    warnings: list[str] = []
    walk = client.iter_events(page_size=4, on_warning=warnings.append)
    assert warnings == []  # nothing is asked before the first item is wanted
    types = Counter(e.type for e in walk)
    assert types == {"tie": 6, "older": 1}
    assert warnings == []


def test_an_unknown_source_id_is_not_found_not_an_empty_result(cli, api, source):
    result = cli("events", "query", "--source", "src_00000000000000000000000000")
    assert result.exit_code == 3
