"""boltic_cli.stats: exact counts per bucket and per type from queryEvents summaries,
against the real server app (and the same app cut down to the spec's routes)."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from boltic_cli.client import BolticClient
from boltic_cli.errors import UnexpectedResponse, UsageError
from boltic_cli.models import format_time
from boltic_cli.stats import bucket_edges, event_stats, from_ms, to_ms
from tests.conftest import ADMIN_TOKEN
from tests.spec_only import SpecOnlyTransport
from tests.support import AppTransport

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC
MS = timedelta(milliseconds=1)
HOUR = timedelta(hours=1)


@pytest.fixture
def other_source(api) -> dict:
    response = api.post("/streams/sources", json={"name": "api", "type": "server"})
    assert response.status_code == 201
    return response.json()


def zone(monkeypatch, name: str) -> None:
    monkeypatch.setenv("TZ", name)
    time.tzset()


@pytest.fixture
def restore_zone(monkeypatch):
    """Put the time zone back after a test that set one with ``zone``."""
    yield
    monkeypatch.undo()
    time.tzset()


def plant(api, source_id: str, items: list[tuple[str, datetime]]) -> None:
    """Store events of (type, timestamp) straight through the running app's store (fast
    setup; what is measured is only read back through the API). Ids grow in planting
    order, so among ties the first planted is the last on a page."""
    from boltic_cli.server.store import EventRecord
    from boltic_cli.server.store.sqlite import insert_events

    store = api.app.state.runtime.store
    records = []
    for type_, when in items:
        event_id = f"evt_{next(_ids):026d}"
        stamp = to_ms(when)
        wire = {
            "id": event_id,
            "sourceId": source_id,
            "type": type_,
            "timestamp": format_time(when),
            "receivedAt": format_time(when),
        }
        records.append(EventRecord(event_id, source_id, type_, stamp, stamp, json.dumps(wire)))
    store.run_in_writer(lambda conn: insert_events(conn, records)).result()


_ids = itertools.count(1)


def counts(stats) -> list[int]:
    return [bucket.count for bucket in stats.buckets]


def edges(stats) -> list[str]:
    return [format_time(b.start) for b in stats.buckets] + [format_time(stats.buckets[-1].end)]


# -- bucket edges ---------------------------------------------------------------------


def test_edges_fall_on_multiples_of_the_bucket_in_local_time():
    hour = 3_600_000
    since = to_ms(T0 + timedelta(minutes=7))
    until = to_ms(T0 + timedelta(hours=3))
    assert bucket_edges(since, until, hour) == [
        since,
        to_ms(T0 + HOUR),
        to_ms(T0 + 2 * HOUR),
        until,
    ]
    # UTC+5:30: local hours start at half past in UTC.
    half = 1_800_000
    assert bucket_edges(to_ms(T0), to_ms(T0 + 2 * HOUR), hour, offset_ms=11 * half) == [
        to_ms(T0),
        to_ms(T0) + half,
        to_ms(T0) + 3 * half,
        to_ms(T0 + 2 * HOUR),
    ]
    # An aligned window has no partial buckets.
    assert bucket_edges(to_ms(T0), to_ms(T0 + 2 * HOUR), hour) == [
        to_ms(T0),
        to_ms(T0 + HOUR),
        to_ms(T0 + 2 * HOUR),
    ]


def test_edges_refuse_empty_windows_and_too_many_buckets():
    with pytest.raises(UsageError, match="before"):
        bucket_edges(10, 10, 1)
    with pytest.raises(UsageError, match="at most 10,000"):
        bucket_edges(0, 7 * 86_400_000, 1000)


def test_ms_round_trip_floors_microseconds():
    value = datetime(2026, 3, 2, 10, 0, 0, 999_999, tzinfo=UTC)
    assert from_ms(to_ms(value)) == datetime(2026, 3, 2, 10, 0, 0, 999_000, tzinfo=UTC)
    assert to_ms(datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)) == -1


# -- exact counts against the server ----------------------------------------------------


BOUNDARY_EVENTS = [
    ("page_view", T0 - MS),  # before the window: not counted
    ("page_view", T0),  # from is inclusive: first bucket
    ("signup", T0 + HOUR - MS),  # last millisecond of the first bucket
    ("page_view", T0 + HOUR),  # a boundary belongs to the later bucket
    ("page_view", T0 + HOUR + timedelta(minutes=30)),
    ("purchase", T0 + 2 * HOUR + timedelta(minutes=59, seconds=59, milliseconds=999)),
    ("signup", T0 + 3 * HOUR),  # to is exclusive: not counted
]


def test_counts_per_bucket_and_type_are_exact_across_boundaries_in_utc(
    client, api, source, monkeypatch, restore_zone
):
    zone(monkeypatch, "UTC")
    plant(api, source["id"], BOUNDARY_EVENTS)

    stats = event_stats(client, since=T0, until=T0 + 3 * HOUR, by=HOUR)

    assert edges(stats) == [
        "2026-03-02T10:00:00.000Z",
        "2026-03-02T11:00:00.000Z",
        "2026-03-02T12:00:00.000Z",
        "2026-03-02T13:00:00.000Z",
    ]
    assert counts(stats) == [2, 2, 1]
    assert [b.partial for b in stats.buckets] == [False, False, False]
    assert stats.types == [("page_view", 3), ("purchase", 1), ("signup", 1)]
    assert stats.total == 5
    assert stats.unnamed == 0


def test_buckets_follow_local_hours_in_a_half_hour_zone(
    client, api, source, monkeypatch, restore_zone
):
    zone(monkeypatch, "Asia/Kolkata")  # UTC+5:30 all year: local hours begin at :30 UTC
    half = timedelta(minutes=30)
    plant(
        api,
        source["id"],
        [
            ("a", T0),  # 15:30 local: first (partial) bucket starts at since
            ("a", T0 + half - MS),  # 15:59:59.999 local
            ("b", T0 + half),  # 16:00 local: second bucket
            ("a", T0 + 3 * half - MS),  # 16:59:59.999 local
            ("c", T0 + 3 * half),  # 17:00 local: third bucket (partial, cut at until)
            ("c", T0 + 2 * HOUR - MS),
            ("c", T0 + 2 * HOUR),  # until is exclusive
        ],
    )

    stats = event_stats(client, since=T0, until=T0 + 2 * HOUR, by=HOUR)

    assert edges(stats) == [
        "2026-03-02T10:00:00.000Z",
        "2026-03-02T10:30:00.000Z",
        "2026-03-02T11:30:00.000Z",
        "2026-03-02T12:00:00.000Z",
    ]
    assert [b.start.astimezone().strftime("%H:%M") for b in stats.buckets] == [
        "15:30",
        "16:00",
        "17:00",
    ]
    assert counts(stats) == [2, 2, 2]
    assert [b.partial for b in stats.buckets] == [True, False, True]
    assert stats.types == [("a", 3), ("c", 2), ("b", 1)]


def test_daily_buckets_start_at_local_midnight_in_new_york(
    client, api, source, monkeypatch, restore_zone
):
    zone(monkeypatch, "America/New_York")  # UTC-5 in March before the 8th
    midnight = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 local
    plant(
        api,
        source["id"],
        [
            ("x", midnight - MS),
            ("x", midnight),
            ("y", midnight + timedelta(days=1) - MS),
            ("y", midnight + timedelta(days=1)),
        ],
    )

    stats = event_stats(
        client, since=midnight - HOUR, until=midnight + timedelta(days=2), by=timedelta(days=1)
    )

    assert [b.start.astimezone().strftime("%m-%d %H:%M") for b in stats.buckets] == [
        "03-01 23:00",
        "03-02 00:00",
        "03-03 00:00",
    ]
    assert counts(stats) == [1, 2, 1]
    assert stats.types == [("x", 2), ("y", 2)]


def test_exact_beyond_one_page_and_rare_types_hidden_behind_common_ones_are_found(
    client, api, source
):
    # 2,400 page_views newest, with three rare types older than any page would show,
    # one of them in the same millisecond as common events.
    start = T0
    items = [("page_view", start + timedelta(seconds=10 + i)) for i in range(2400)]
    items += [
        ("rare_old", start + timedelta(seconds=1)),
        ("rare_mid", start + timedelta(seconds=700, milliseconds=500)),
        ("rare_tied", start + timedelta(seconds=900)),
    ]
    plant(api, source["id"], items)

    stats = event_stats(client, since=start, until=start + HOUR, by=timedelta(minutes=10))

    assert stats.total == 2403
    assert dict(stats.types) == {"page_view": 2400, "rare_old": 1, "rare_mid": 1, "rare_tied": 1}
    assert stats.unnamed == 0
    expected = [0] * 6
    for _, when in items:
        expected[int((when - start).total_seconds() // 600)] += 1
    assert counts(stats) == expected == [591, 602, 600, 600, 10, 0]


def test_more_than_a_page_in_one_millisecond_leaves_unseen_types_unnamed(client, api, source):
    # Ties are ordered by id, newest first: the lone "b" sent first is beyond the page.
    plant(api, source["id"], [("b", T0)])
    plant(api, source["id"], [("a", T0)] * 1000)

    stats = event_stats(client, since=T0, until=T0 + HOUR, by=HOUR)

    assert stats.total == 1001
    assert stats.types == [("a", 1000)]
    assert stats.unnamed == 1
    assert stats.to_wire()["uniqueEventTypes"] == 2
    assert stats.to_wire()["unnamedEvents"] == 1


def test_source_and_type_filters_each_counted_and_summed(
    client, api, source, other_source, monkeypatch, restore_zone
):
    zone(monkeypatch, "UTC")
    plant(api, source["id"], [("a", T0), ("b", T0 + HOUR), ("c", T0 + HOUR)])
    plant(api, other_source["id"], [("a", T0 + HOUR), ("b", T0 + 5 * HOUR)])

    one = event_stats(client, since=T0, until=T0 + 2 * HOUR, by=HOUR, source_ids=[source["id"]])
    both = event_stats(
        client,
        since=T0,
        until=T0 + 2 * HOUR,
        by=HOUR,
        source_ids=[source["id"], other_source["id"]],
        event_types=["a", "b"],
    )

    assert counts(one) == [1, 2]
    assert one.types == [("a", 1), ("b", 1), ("c", 1)]
    assert counts(both) == [1, 2]
    assert both.types == [("a", 2), ("b", 1)]
    wire = both.to_wire()
    assert wire["sourceIds"] == [source["id"], other_source["id"]]
    assert wire["eventTypes"] == ["a", "b"]
    assert wire["totalEvents"] == 3


def test_types_asked_for_are_listed_with_zero(client, api, source):
    plant(api, source["id"], [("a", T0), ("b", T0)])

    stats = event_stats(
        client, since=T0, until=T0 + HOUR, by=HOUR, event_types=["a", "never"], utc_offset=HOUR * 0
    )

    assert stats.types == [("a", 1), ("never", 0)]
    assert stats.total == 1
    assert stats.to_wire()["uniqueEventTypes"] == 1


def test_json_shape_and_progress_reaches_every_request(
    client, api, source, monkeypatch, restore_zone
):
    zone(monkeypatch, "UTC")
    plant(api, source["id"], [("a", T0 + timedelta(minutes=20))])
    seen: list[tuple[int, int]] = []

    stats = event_stats(
        client,
        since=T0 + timedelta(minutes=15),
        until=T0 + 2 * HOUR,
        by=HOUR,
        on_progress=lambda done, planned: seen.append((done, planned)),
    )

    assert stats.to_wire() == {
        "from": "2026-03-02T10:15:00.000Z",
        "to": "2026-03-02T12:00:00.000Z",
        "bucketSeconds": 3600.0,
        "totalEvents": 1,
        "uniqueEventTypes": 1,
        "buckets": [
            {"from": "2026-03-02T10:15:00.000Z", "to": "2026-03-02T11:00:00.000Z", "count": 1,
             "partial": True},
            {"from": "2026-03-02T11:00:00.000Z", "to": "2026-03-02T12:00:00.000Z", "count": 0},
        ],
        "types": [{"type": "a", "count": 1}],
        "queries": 4,
    }  # fmt: skip
    assert seen[-1] == (4, 4)
    assert all(done <= planned for done, planned in seen)


# -- spec-only servers ----------------------------------------------------------------------


def test_against_a_spec_only_server_only_query_events_is_called(
    api, source, monkeypatch, restore_zone
):
    zone(monkeypatch, "Europe/Berlin")  # UTC+1 in March: hours line up with UTC's
    plant(api, source["id"], [("p", T0 + timedelta(minutes=i)) for i in range(0, 180, 7)])
    plant(api, source["id"], [("q", T0 + timedelta(minutes=100))])
    transport = SpecOnlyTransport(AppTransport(api))
    with BolticClient("http://testserver/v1", ADMIN_TOKEN, transport=transport) as spec_client:
        stats = event_stats(spec_client, since=T0, until=T0 + 3 * HOUR, by=HOUR, concurrency=3)

    # minutes 0, 7, ..., 175 plus one q at minute 100
    assert counts(stats) == [9, 9 + 1, 8]
    assert stats.types == [("p", 26), ("q", 1)]
    assert transport.refused == []
    assert {request for request in transport.requests} == {("GET", "/streams/events")}
    assert len(transport.requests) == stats.queries


def test_a_server_without_unique_types_still_names_every_type(source, api):
    """uniqueEventTypes is optional: without it, windows are split until pages hold all."""

    inner = SpecOnlyTransport(AppTransport(api))

    def drop_unique(request: httpx.Request) -> httpx.Response:
        response = inner.handle_request(request)
        body = response.read()
        data = json.loads(body)
        data.get("summary", {}).pop("uniqueEventTypes", None)
        return httpx.Response(response.status_code, json=data)

    plant(api, source["id"], [("common", T0 + timedelta(seconds=i)) for i in range(1500)])
    plant(api, source["id"], [("rare", T0 + timedelta(milliseconds=1))])
    transport = httpx.MockTransport(drop_unique)
    with BolticClient("http://testserver/v1", ADMIN_TOKEN, transport=transport) as c:
        stats = event_stats(c, since=T0, until=T0 + HOUR, by=HOUR)

    assert stats.types == [("common", 1500), ("rare", 1)]
    assert stats.unnamed == 0


def test_an_answer_without_a_summary_is_an_unexpected_response():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"data": []}))
    with (
        BolticClient("http://testserver/v1", ADMIN_TOKEN, transport=transport) as c,
        pytest.raises(UnexpectedResponse, match=r"summary\.totalEvents"),
    ):
        event_stats(c, since=T0, until=T0 + HOUR, by=HOUR)


def test_a_failing_request_ends_the_run_with_that_error():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("limit") == "1":
            return httpx.Response(404, json={"code": 404, "message": "no such source"})
        return httpx.Response(200, json={"data": [], "summary": {"totalEvents": 0}})

    from boltic_cli.errors import NotFound

    with (
        BolticClient(
            "http://testserver/v1", ADMIN_TOKEN, transport=httpx.MockTransport(answer)
        ) as c,
        pytest.raises(NotFound),
    ):
        event_stats(c, since=T0, until=T0 + 5 * HOUR, by=HOUR)


# -- the terminal view ------------------------------------------------------------------------


def render_stats(stats, width: int) -> str:
    from io import StringIO

    from rich.console import Console, Group

    from boltic_cli.output import stats_lines

    buffer = StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
    console.print(Group(*stats_lines(stats, width)))
    return buffer.getvalue()


STATS_KOLKATA_60 = """\
Events per hour  2026-03-02 15:30 to 2026-03-02 17:30 (IST)
15:30* 2 ███████████████████████████████████████████████████
16:00  2 ███████████████████████████████████████████████████
17:00* 2 ███████████████████████████████████████████████████
* partial bucket: cut by the window's start or end

TYPE                  COUNT  SHARE
\\x1b[2J日本語カート🛒     3  50.0% █████████████████████████
b                         2  33.3% ████████████████▋
c                         1  16.7% ████████▍

6 events, 3 types; exact counts from 7 queries
"""


def test_stats_view_in_local_time_by_display_width_and_sanitised(
    client, api, source, monkeypatch, restore_zone
):
    from rich.cells import cell_len

    zone(monkeypatch, "Asia/Kolkata")
    half = timedelta(minutes=30)
    hostile = "\x1b[2J日本語カート🛒"
    plant(
        api,
        source["id"],
        [
            (hostile, T0),
            (hostile, T0 + half - MS),
            ("b", T0 + half),
            ("b", T0 + 3 * half - MS),
            (hostile, T0 + 3 * half),
            ("c", T0 + 2 * HOUR - MS),
        ],
    )
    stats = event_stats(client, since=T0, until=T0 + 2 * HOUR, by=HOUR)

    assert render_stats(stats, 60) == STATS_KOLKATA_60
    for width in (30, 40, 80, 120):
        text = render_stats(stats, width)
        assert all(cell_len(line) <= width for line in text.splitlines())
        assert "\x1b" not in text


def test_stats_rows_for_csv_and_plain(client, api, source, monkeypatch, restore_zone):
    from boltic_cli.output import stats_rows

    zone(monkeypatch, "UTC")
    plant(api, source["id"], [("a", T0), ("b", T0 + HOUR)])
    stats = event_stats(client, since=T0, until=T0 + 2 * HOUR, by=HOUR)

    assert stats_rows(stats) == [
        {"kind": "bucket", "from": "2026-03-02T10:00:00.000Z", "to": "2026-03-02T11:00:00.000Z",
         "type": "", "count": 1},
        {"kind": "bucket", "from": "2026-03-02T11:00:00.000Z", "to": "2026-03-02T12:00:00.000Z",
         "type": "", "count": 1},
        {"kind": "type", "from": "2026-03-02T10:00:00.000Z", "to": "2026-03-02T12:00:00.000Z",
         "type": "a", "count": 1},
        {"kind": "type", "from": "2026-03-02T10:00:00.000Z", "to": "2026-03-02T12:00:00.000Z",
         "type": "b", "count": 1},
    ]  # fmt: skip


# -- boltic events stats ----------------------------------------------------------------------


def test_command_json_is_exact_across_boundaries(cli, api, source, monkeypatch, restore_zone):
    zone(monkeypatch, "UTC")
    plant(api, source["id"], BOUNDARY_EVENTS)

    result = cli(
        "events", "stats", "--since", format_time(T0), "--until", format_time(T0 + 3 * HOUR),
        "--by", "1h", "-o", "json",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    body = result.json()
    assert [b["count"] for b in body["buckets"]] == [2, 2, 1]
    assert [b["from"] for b in body["buckets"]] == [
        "2026-03-02T10:00:00.000Z",
        "2026-03-02T11:00:00.000Z",
        "2026-03-02T12:00:00.000Z",
    ]
    assert body["types"] == [
        {"type": "page_view", "count": 3},
        {"type": "purchase", "count": 1},
        {"type": "signup", "count": 1},
    ]
    assert body["totalEvents"] == 5


def test_command_in_a_non_utc_zone_labels_local_hours(cli, api, source, monkeypatch, restore_zone):
    zone(monkeypatch, "Asia/Kolkata")
    half = timedelta(minutes=30)
    plant(api, source["id"], [("a", T0 + half - MS), ("a", T0 + half), ("b", T0 + 3 * half)])

    as_json = cli(
        "events", "stats", "--since", format_time(T0), "--until", format_time(T0 + 2 * HOUR),
        "-o", "json",
    )  # fmt: skip
    as_table = cli(
        "events", "stats", "--since", format_time(T0), "--until", format_time(T0 + 2 * HOUR),
        "-o", "table",
    )  # fmt: skip

    assert [b["count"] for b in as_json.json()["buckets"]] == [1, 1, 1]
    assert [b["to"] for b in as_json.json()["buckets"]] == [
        "2026-03-02T10:30:00.000Z",
        "2026-03-02T11:30:00.000Z",
        "2026-03-02T12:00:00.000Z",
    ]
    lines = as_table.stdout.splitlines()
    assert lines[0].startswith("Events per hour  2026-03-02 15:30 to 2026-03-02 17:30 (IST)")
    assert [line.split()[:2] for line in lines[1:4]] == [["15:30*", "1"], ["16:00", "1"],
                                                           ["17:00*", "1"]]  # fmt: skip
    assert all(cell_len_of(line) <= 120 for line in lines)


def cell_len_of(text: str) -> int:
    from rich.cells import cell_len

    return cell_len(text)


def test_command_csv_and_repeated_filters(
    cli, api, source, other_source, monkeypatch, restore_zone
):
    zone(monkeypatch, "UTC")
    plant(api, source["id"], [("a", T0), ("b", T0), ("c", T0)])
    plant(api, other_source["id"], [("a", T0 + HOUR)])

    result = cli(
        "events", "stats", "--source", "web", "--source", other_source["id"], "--type", "a",
        "--type", "c", "--since", format_time(T0), "--until", format_time(T0 + 2 * HOUR),
        "-o", "csv",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["kind"], r["type"], r["count"]) for r in rows] == [
        ("bucket", "", "2"),
        ("bucket", "", "1"),
        ("type", "a", "2"),
        ("type", "c", "1"),
    ]


def test_command_against_a_spec_only_server_calls_only_spec_operations(
    run_cli, api, source, monkeypatch, restore_zone
):
    zone(monkeypatch, "UTC")
    plant(api, source["id"], [("a", T0), ("b", T0 + HOUR)])
    transport = SpecOnlyTransport(AppTransport(api))

    result = run_cli(
        "events", "stats", "--source", "web", "--since", format_time(T0),
        "--until", format_time(T0 + 2 * HOUR), "-o", "json",
        env={"BOLTIC_API_URL": "http://testserver/v1", "BOLTIC_TOKEN": ADMIN_TOKEN},
        transport=transport,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert [b["count"] for b in result.json()["buckets"]] == [1, 1]
    assert transport.refused == []
    assert {path for _, path in transport.requests} == {"/streams/events", "/streams/sources"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "0"], "--by"),
        (["--by", "1s", "--since", "7d"], "at most 10,000"),
        (["--since", "2026-03-02", "--until", "2026-03-01"], "before"),
        (["--since", "yesterday"], "--since"),
    ],
)
def test_bad_windows_are_usage_errors_before_any_request(run_cli, args, message):
    # No server at this address: a request would end in exit 5, not 2.
    env = {"BOLTIC_API_URL": "http://127.0.0.1:9/v1", "BOLTIC_TOKEN": ADMIN_TOKEN}
    result = run_cli("events", "stats", *args, env=env)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_source_exits_3(cli, source):
    result = cli("events", "stats", "--source", "nope")
    assert result.exit_code == 3


def test_types_asked_for_by_name_are_listed_even_without_events(cli, api, source):
    plant(api, source["id"], [("a", T0)])

    result = cli(
        "events", "stats", "--type", "a", "--type", "never", "--since", format_time(T0),
        "--until", format_time(T0 + HOUR), "-o", "json",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.json()["types"] == [{"type": "a", "count": 1}, {"type": "never", "count": 0}]
    assert result.json()["uniqueEventTypes"] == 1


def test_ctrl_c_while_counting_exits_130_without_a_traceback(run_cli, api, source):
    plant(api, source["id"], [("a", T0)])
    inner = AppTransport(api)
    calls = []

    class Interrupting(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            calls.append(request.url.path)
            if len(calls) == 5:
                raise KeyboardInterrupt
            return inner.handle_request(request)

    result = run_cli(
        "events", "stats", "--since", format_time(T0), "--until", format_time(T0 + 10 * HOUR),
        env={"BOLTIC_API_URL": "http://testserver/v1", "BOLTIC_TOKEN": ADMIN_TOKEN},
        transport=Interrupting(),
    )  # fmt: skip

    assert result.exit_code == 130
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
