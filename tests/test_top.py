"""boltic_cli.top (the debug top aggregator and feed) and its terminal view."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from boltic_cli.models import Event
from boltic_cli.output import bar, clip_cells, sparkline, top_lines, top_view
from boltic_cli.tail import Tail, TailRecord
from boltic_cli.top import OTHER, TopAggregator, TopFeed
from tests.support import AppTransport, FakeClock

WALL = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
_ids = iter(range(1, 10**9))


class Scripted:
    """A fake monotonic clock and the matching wall clock, moved by ``sleep``."""

    def __init__(self) -> None:
        self.clock = FakeClock(1000.0)

    def now(self) -> datetime:
        return WALL + timedelta(seconds=self.clock.now - 1000.0)

    def aggregator(self, sources=(), **kwargs) -> TopAggregator:
        return TopAggregator(sources, clock=self.clock, now=self.now, **kwargs)

    def event(self, source_id: str, type_: str, received: datetime | None = None) -> TailRecord:
        event = Event(
            id=f"evt_{next(_ids):026d}",
            source_id=source_id,
            type=type_,
            received_at=received or self.now(),
        )
        return TailRecord("event", source_id, event)


@pytest.fixture
def script() -> Scripted:
    return Scripted()


def render(snapshot, width: int) -> str:
    buffer = StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
    console.print(top_view(snapshot, width))
    return buffer.getvalue()


def scripted_snapshot(script: Scripted):
    """Three sources over 30 s: a busy one, a quiet one that loses its connection, one
    with a CJK and emoji name; a gap; and an event type carrying an escape sequence."""
    agg = script.aggregator(
        ["src_web", "src_api", "src_jp"],
        names={"src_web": "web", "src_api": "api-backend", "src_jp": "日本のショップ🎉"},
    )
    agg.set_events_today("src_web", 1200, script.now())
    agg.add(TailRecord("connected", "src_web", info={}))
    agg.add(TailRecord("connected", "src_api", info={}))
    for second in range(30):
        for i in range(second % 7 + 1):
            agg.add(script.event("src_web", "page_view" if i % 3 else "signup"))
        if second % 5 == 0:
            agg.add(script.event("src_api", "order.completed"))
            agg.add(script.event("src_jp", "カート追加🛒"))
        script.clock.sleep(1)
    agg.add(TailRecord("gap", "src_web", info={"limit": 500}))
    agg.add(TailRecord("reconnecting", "src_api", info={"attempt": 1}))
    agg.add(script.event("src_web", "\x1b[31mevil"))
    return agg.snapshot()


TOP_80 = """\
boltic debug top  3 sources · 4.2/s now · 128 in 60s · 128 since start · up 30s
! 1 gap (more arrived between two polls than a page holds: some events not coun…

SOURCE     STATUS  LAST 60s              NOW/s   1m/s   TODAY    LAST GAPS RECON
web        ● live           ▁▄█▃▇▅▆▇▄█▂    4.2    3.9    1315     now    1     0
api-backe… ↻ retry          █ █ ██ █ █     0.0    0.2       —  5s ago    0     1
日本のシ…  ● live           █ █ ██ █ █     0.0    0.2       —  5s ago    0     0

TOP TYPES (last 60s)
page_view       65  51% ████████████████████████████████████████████████████████
signup          50  39% ███████████████████████████████████████████▏
order.completed  6   5% █████▏
カート追加🛒     6   5% █████▏
\\x1b[31mevil     1   1% ▉
"""

TOP_120_ROWS = """\
SOURCE                  STATUS  LAST 60s                                         NOW/s   1m/s   TODAY    LAST GAPS RECON
web                     ● live                                 ▁▄▆█▂▅▇▅▄▆█▂▅▇▅▂    4.2    3.9    1315     now    1     0
api-backend             ↻ retry                                █  █ █  █ █  █      0.0    0.2       —  5s ago    0     1
日本のショップ🎉        ● live                                 █  █ █  █ █  █      0.0    0.2       —  5s ago    0     0
"""  # noqa: E501


def test_top_renders_at_80_columns_as_text(script):
    text = render(scripted_snapshot(script), 80)

    assert text == TOP_80
    assert all(cell_len(line) <= 80 for line in text.splitlines())
    assert "\x1b" not in text


def test_top_renders_at_120_columns_as_text(script):
    text = render(scripted_snapshot(script), 120)
    lines = text.splitlines()

    assert all(cell_len(line) <= 120 for line in lines)
    assert lines[1] == (
        "! 1 gap (more arrived between two polls than a page holds: some events not counted);"
        " 1 reconnect"
    )
    assert "\n".join(lines[3:7]) + "\n" == TOP_120_ROWS
    assert lines[9].startswith("page_view       65  51% ████")
    assert cell_len(lines[9]) == 120
    assert "\x1b" not in text


@pytest.mark.parametrize("width", [20, 40, 60, 80, 100, 120, 200])
def test_top_never_wider_than_the_terminal(script, width):
    lines = top_lines(scripted_snapshot(script), width)
    assert all(cell_len(line.plain) <= max(width, 20) for line in lines)


def test_height_limits_the_types_shown_and_says_how_many_more(script):
    agg = script.aggregator(["src_a"])
    for n in range(15):
        for _ in range(n + 1):
            agg.add(script.event("src_a", f"type_{n:02d}"))
    lines = [line.plain for line in top_lines(agg.snapshot(), 80, height=12)]

    assert len(lines) == 12
    assert lines[-1] == "… 10 more types"
    assert lines[-6].startswith("type_14 15  12% ███")
    assert lines[-2].startswith("type_10 11   9% ███")


# -- the aggregator --------------------------------------------------------------------


def test_rates_series_and_window_counts(script):
    agg = script.aggregator(["src_a"])
    for second in range(90):
        for _ in range(2 if second < 80 else 10):
            agg.add(script.event("src_a", "a" if second % 2 else "b"))
        script.clock.sleep(1)

    snap = agg.snapshot()
    (source,) = snap.sources
    # Now at second 90 (no events yet in it): the window is seconds 31..90.
    assert source.series == [2] * 49 + [10] * 10 + [0]
    assert source.events_window == 198
    assert source.events_total == 80 * 2 + 10 * 10
    assert source.rate_now == pytest.approx(40 / 4)  # seconds 86..90, 4 s elapsed of them
    assert source.rate_minute == pytest.approx(198 / 59)
    # odd seconds: 25 of them at 2 (31..79) and 5 at 10 (81..89); even: 24 and 5
    assert source.types_window == {"a": 100, "b": 98}
    assert source.types_total == {"a": 130, "b": 130}
    assert snap.types == [("a", 100), ("b", 98)]


def test_rates_at_the_start_do_not_spike(script):
    agg = script.aggregator(["src_a"])
    script.clock.sleep(0.2)
    for _ in range(10):
        agg.add(script.event("src_a", "a"))
    (source,) = agg.snapshot().sources
    assert source.rate_now == 10.0  # divided by at least one second
    assert source.rate_minute == 10.0


def test_sources_sorted_busiest_first_and_status_follows_the_records(script):
    agg = script.aggregator(["src_quiet", "src_busy", "src_new"], names={"src_busy": "busy"})
    agg.add(TailRecord("connected", "src_quiet", info={"lastEventAt": "2026-03-02T11:00:00.000Z"}))
    for _ in range(5):
        agg.add(script.event("src_busy", "x"))
    agg.add(TailRecord("reconnecting", "src_quiet", info={}))
    agg.add(TailRecord("reconnecting", "src_quiet", info={}))
    agg.add(TailRecord("gap", "src_busy", info={}))

    snap = agg.snapshot()
    assert [s.source_id for s in snap.sources] == ["src_busy", "src_new", "src_quiet"]
    by_id = {s.source_id: s for s in snap.sources}
    assert by_id["src_busy"].status == "connected"
    assert by_id["src_busy"].name == "busy"
    assert by_id["src_quiet"].status == "reconnecting"
    assert by_id["src_quiet"].reconnects == 2
    assert by_id["src_quiet"].last_event_at == WALL - timedelta(hours=1)
    assert by_id["src_quiet"].last_event_age == 3600
    assert by_id["src_new"].status == "connecting"
    assert by_id["src_new"].last_event_age is None
    assert snap.gaps == 1 and snap.reconnects == 2

    agg.add(TailRecord("connected", "src_quiet", info={}))
    agg.polled("src_new")
    statuses = {s.source_id: s.status for s in agg.snapshot().sources}
    assert statuses == {"src_busy": "connected", "src_quiet": "connected", "src_new": "connected"}


def test_events_today_adds_what_arrives_after_the_listing_and_resets_at_utc_midnight(script):
    agg = script.aggregator(["src_a"])
    script.clock.sleep(86_400 - 12 * 3600 - 30)  # 23:59:30 UTC
    listed_at = script.now()
    agg.add(script.event("src_a", "a", received=listed_at - timedelta(seconds=1)))  # in the base
    agg.set_events_today("src_a", 40, listed_at)
    agg.add(script.event("src_a", "a", received=listed_at))  # listed already
    script.clock.sleep(10)
    agg.add(script.event("src_a", "a"))
    agg.add(script.event("src_a", "a"))
    assert agg.snapshot().sources[0].events_today == 42

    script.clock.sleep(25)  # 00:00:05 the next day
    agg.add(script.event("src_a", "a"))
    assert agg.snapshot().sources[0].events_today == 1
    # A new listing replaces the base; events it already counts are not added twice.
    agg.set_events_today("src_a", 3, script.now())
    assert agg.snapshot().sources[0].events_today == 3


def test_events_today_unknown_without_a_listing(script):
    agg = script.aggregator(["src_a"])
    agg.add(script.event("src_a", "a"))
    assert agg.snapshot().sources[0].events_today is None
    assert "eventsToday" not in agg.snapshot().sources[0].to_wire()


def test_distinct_types_since_start_are_bounded(script):
    agg = script.aggregator(["src_a"], max_types=3)
    for n in range(5):
        agg.add(script.event("src_a", f"t{n}"))
    (source,) = agg.snapshot().sources
    assert source.types_total == {OTHER: 2, "t0": 1, "t1": 1, "t2": 1}
    assert source.events_total == 5


def test_snapshot_wire_shape(script):
    agg = script.aggregator(["src_a"], names={"src_a": "web"}, window=3)
    agg.add(script.event("src_a", "page_view"))
    script.clock.sleep(1)
    wire = agg.snapshot().to_wire()
    assert wire == {
        "kind": "snapshot",
        "at": "2026-03-02T12:00:01.000Z",
        "elapsedSeconds": 1.0,
        "windowSeconds": 3,
        "rateNow": 1.0,
        "eventsInWindow": 1,
        "eventsSinceStart": 1,
        "gaps": 0,
        "reconnects": 0,
        "sources": [
            {
                "sourceId": "src_a",
                "name": "web",
                "status": "connected",
                "rateNow": 1.0,
                "rateMinute": 1.0,
                "eventsInWindow": 1,
                "eventsSinceStart": 1,
                "lastEventAt": "2026-03-02T12:00:00.000Z",
                "lastEventAgeSeconds": 1.0,
                "gaps": 0,
                "reconnects": 0,
                "series": [0, 1, 0],
                "typesInWindow": {"page_view": 1},
                "typesSinceStart": {"page_view": 1},
            }
        ],
        "types": [{"type": "page_view", "count": 1}],
    }


# -- the chart pieces ----------------------------------------------------------------------


def test_sparkline_groups_to_fit_and_blanks_idle_seconds():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7, 8], 9) == " ▁▂▃▄▅▆▇█"
    assert sparkline([1] * 60, 12) == "█" * 12
    assert sparkline([0] * 5 + [5] * 5, 2) == " █"
    assert sparkline([3], 4) == "   █"


def test_bar_in_eighths_with_a_sliver_for_small_values():
    assert bar(10, 10, 4) == "████"
    assert bar(5, 10, 4) == "██"
    assert bar(1, 1000, 4) == "▏"
    assert bar(0, 10, 4) == ""


def test_clip_counts_display_cells():
    assert clip_cells("日本のショップ", 5) == "日本…"
    assert cell_len(clip_cells("日本のショップ", 6)) == 6
    assert clip_cells("short", 10) == "short"


# -- the feed, against the real server ------------------------------------------------------


def test_feed_counts_what_was_sent_per_source_and_type(client, api, script):
    """Known traffic into two sources while the feed runs: the last snapshot holds
    exactly those counts, per source and per type, in the window and since start."""
    web = api.post("/streams/sources", json={"name": "web", "type": "javascript"}).json()
    shop = api.post("/streams/sources", json={"name": "shop", "type": "server"}).json()
    before = {"sourceId": web["id"], "type": "old_history"}
    assert api.post("/streams/events", json=before).status_code == 202  # not counted
    plan = {
        2: [(web, "page_view")] * 5 + [(shop, "purchase")] * 2,
        4: [(web, "signup")] * 3,
        6: [(shop, "purchase")] + [(web, "page_view")] * 2,
    }
    snapshots = []

    def on_snapshot(snapshot) -> None:
        snapshots.append(snapshot)
        for source, type_ in plan.pop(len(snapshots), []):
            body = {"sourceId": source["id"], "type": type_}
            assert api.post("/streams/events", json=body).status_code == 202

    def make_tail(sources, **kwargs):
        return Tail(client, sources, interval=0.5, duration=10.0, clock=script.clock, **kwargs)

    feed = TopFeed(
        make_tail,
        script.aggregator(),
        list_sources=client.list_stream_sources,
        follow_all=True,
        interval=1.0,
        sleep=script.clock.sleep,
    )
    last = feed.run(on_snapshot)

    assert plan == {}
    by_name = {source.name: source for source in last.sources}
    assert set(by_name) == {"web", "shop"}
    assert by_name["web"].types_total == {"page_view": 7, "signup": 3}
    assert by_name["shop"].types_total == {"purchase": 3}
    assert by_name["web"].types_window == {"page_view": 7, "signup": 3}
    assert by_name["web"].events_total == 10 and by_name["shop"].events_total == 3
    assert dict(last.types) == {"page_view": 7, "signup": 3, "purchase": 3}
    assert by_name["web"].status == by_name["shop"].status == "connected"
    assert by_name["web"].events_today == 11  # the server's count includes old_history
    assert by_name["shop"].events_today == 3
    assert last.gaps == 0
    # One snapshot per interval of the (fake) clock, the last at the end.
    assert 10 <= len(snapshots) <= 12
    assert snapshots[-1] is last


# -- boltic debug top -----------------------------------------------------------------------


class ScriptedTime:
    """The command's wall clock, moved only by its sleeps; ``at[n]`` runs once the clock
    has passed n seconds (where the test sends its traffic). It starts at the real time:
    the server stamps receivedAt (and counts eventsToday) by its own clock."""

    def __init__(self, at: dict[float, Any]) -> None:
        self.start = self.now = datetime.now(UTC)
        self.at = dict(at)

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=max(seconds, 0.001))
        elapsed = (self.now - self.start).total_seconds()
        for when in sorted(self.at):
            if when <= elapsed:
                self.at.pop(when)()


def post(api, source: dict, type_: str, n: int = 1) -> None:
    for _ in range(n):
        body = {"sourceId": source["id"], "type": type_}
        assert api.post("/streams/events", json=body).status_code == 202


def test_top_ndjson_snapshots_count_what_was_sent_per_source_and_type(cli, api):
    web = api.post("/streams/sources", json={"name": "web", "type": "javascript"}).json()
    shop = api.post("/streams/sources", json={"name": "shop", "type": "server"}).json()
    post(api, web, "before_start", 4)  # history: in eventsToday, not in the counts
    fake = ScriptedTime(
        {
            1.5: lambda: (post(api, web, "page_view", 6), post(api, shop, "purchase", 2)),
            3.5: lambda: post(api, web, "signup", 3),
            5.5: lambda: (post(api, shop, "purchase"), post(api, web, "page_view", 2)),
        }
    )

    result = cli(
        "debug", "top", "-o", "ndjson", "--duration", "8", sleep=fake.sleep, clock=fake.clock
    )

    assert result.exit_code == 0, result.stderr
    snapshots = result.ndjson()
    assert all(s["kind"] == "snapshot" for s in snapshots)
    assert 7 <= len(snapshots) <= 9  # one per second, and the last at the end
    last = snapshots[-1]
    by_name = {s["name"]: s for s in last["sources"]}
    assert by_name["web"]["typesSinceStart"] == {"page_view": 8, "signup": 3}
    assert by_name["shop"]["typesSinceStart"] == {"purchase": 3}
    assert by_name["web"]["typesInWindow"] == {"page_view": 8, "signup": 3}
    assert by_name["web"]["eventsSinceStart"] == 11
    assert by_name["web"]["eventsToday"] == 15
    assert by_name["shop"]["eventsToday"] == 3
    assert {t["type"]: t["count"] for t in last["types"]} == {
        "page_view": 8,
        "signup": 3,
        "purchase": 3,
    }
    assert last["gaps"] == 0 and last["reconnects"] == 0
    assert {s["status"] for s in last["sources"]} == {"connected"}
    # Counts only grow, snapshot by snapshot.
    totals = [s["eventsSinceStart"] for s in snapshots]
    assert totals == sorted(totals) and totals[0] == 0
    assert "14 events from 2 sources" in result.stderr


def test_top_named_sources_only_and_both_forms_refused(cli, api):
    web = api.post("/streams/sources", json={"name": "web", "type": "javascript"}).json()
    other = api.post("/streams/sources", json={"name": "other", "type": "server"}).json()
    fake = ScriptedTime({1.5: lambda: (post(api, web, "a"), post(api, other, "b"))})

    result = cli(
        "debug", "top", "web", "-o", "ndjson", "--duration", "3", sleep=fake.sleep,
        clock=fake.clock,
    )  # fmt: skip
    both = cli("debug", "top", "web", "--all")
    unknown = cli("debug", "top", "nope")

    assert result.exit_code == 0, result.stderr
    last = result.ndjson()[-1]
    assert [s["name"] for s in last["sources"]] == ["web"]
    assert last["types"] == [{"type": "a", "count": 1}]
    assert both.exit_code == 2
    assert unknown.exit_code == 3


def test_top_on_a_spec_only_server(run_cli, api):
    from tests.conftest import ADMIN_TOKEN
    from tests.spec_only import SpecOnlyTransport

    web = api.post("/streams/sources", json={"name": "web", "type": "javascript"}).json()
    fake = ScriptedTime({1.5: lambda: post(api, web, "a", 3)})
    transport = SpecOnlyTransport(AppTransport(api))

    result = run_cli(
        "debug", "top", "-o", "ndjson", "--duration", "3",
        env={"BOLTIC_API_URL": "http://testserver/v1", "BOLTIC_TOKEN": ADMIN_TOKEN},
        transport=transport, sleep=fake.sleep, clock=fake.clock,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.ndjson()[-1]["types"] == [{"type": "a", "count": 3}]
    assert transport.refused == []
    assert {path for _, path in transport.requests} == {
        "/streams/sources",
        f"/streams/sources/{web['id']}/debug",
    }


@pytest.mark.e2e
def test_top_through_a_pipe_against_a_real_server(server_settings, tmp_path):
    """The installed boltic against uvicorn on a loopback port: snapshots arrive as the
    traffic does, per source and type exactly what was sent; Ctrl-C ends it with 130
    and a summary."""
    import json
    import os
    import signal
    import subprocess

    import httpx

    from boltic_cli.server.runner import start_in_thread
    from tests.conftest import ADMIN_TOKEN
    from tests.support import BOLTIC, reap

    handle = start_in_thread(server_settings, "127.0.0.1", 0)
    process = None
    try:
        http = httpx.Client(base_url=handle.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        web = http.post("/streams/sources", json={"name": "web", "type": "javascript"}).json()
        shop = http.post("/streams/sources", json={"name": "shop", "type": "server"}).json()
        env = {
            **os.environ,
            "BOLTIC_API_URL": handle.url,
            "BOLTIC_TOKEN": ADMIN_TOKEN,
            "BOLTIC_CONFIG_DIR": str(tmp_path / "config"),
            "BOLTIC_DATA_DIR": str(tmp_path / "data"),
        }
        process = subprocess.Popen(
            [BOLTIC, "debug", "top", "--interval", "0.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())  # piped: JSON lines by default
        assert first["kind"] == "snapshot" and first["eventsSinceStart"] == 0
        sent = {("web", "page_view"): 5, ("web", "signup"): 2, ("shop", "purchase"): 3}
        ids = {"web": web["id"], "shop": shop["id"]}
        for (name, type_), n in sent.items():
            for _ in range(n):
                body = {"sourceId": ids[name], "type": type_}
                assert http.post("/streams/events", json=body).status_code == 202
        deadline = time.monotonic() + 20
        while True:
            snapshot = json.loads(process.stdout.readline())
            if snapshot["eventsSinceStart"] >= 10 or time.monotonic() > deadline:
                break
        got = {
            (source["name"], type_): count
            for source in snapshot["sources"]
            for type_, count in source["typesSinceStart"].items()
        }
        assert got == sent
        assert snapshot["gaps"] == 0
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
        assert "10 events from 2 sources" in process.stderr.read()
    finally:
        if process is not None:
            reap(process)
        handle.stop()


def test_top_on_a_terminal_draws_full_screen_and_restores_it_on_ctrl_c(cli, api):
    web = api.post("/streams/sources", json={"name": "web", "type": "javascript"}).json()

    def interrupt() -> None:
        raise KeyboardInterrupt

    fake = ScriptedTime({1.2: lambda: post(api, web, "page_view", 2), 2.5: interrupt})
    result = cli(
        "debug", "top", tty=True, sleep=fake.sleep, clock=fake.clock,
        env={"FORCE_COLOR": "1", "NO_COLOR": "", "COLUMNS": "80", "LINES": "24"},
    )  # fmt: skip

    assert result.exit_code == 130
    out = result.stdout
    assert out.index("\x1b[?1049h") < out.index("boltic debug top")  # alternate screen
    last_frame = out.rindex("page_view")
    assert out.rindex("\x1b[?1049l") > last_frame  # and back: the terminal is as it was
    assert "\x1b[?25h" in out[last_frame:]  # the cursor shown again
    assert "2 events from 1 source" in result.stderr


@pytest.mark.parametrize("fmt", ["yaml", "csv"])
def test_top_refuses_a_format_it_cannot_print(cli, api, fmt):
    """Issue 13: -o is never silently ignored; refused before any request."""
    result = cli("debug", "top", "-o", fmt, "--duration", "1")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"debug top does not print {fmt}" in result.stderr
