"""The tail engine: dedupe, order, history, gaps, adaptive polling, reconnects.

Most tests drive the engine against the real server app (the ``api`` fixture's
transport) with a scripted sender; a fake clock makes the polling rhythm
observable without waiting. A few tests use a scripted page feed for the
cases a real server cannot be made to show on cue (a 503 mid-tail).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from boltic_cli.errors import NetworkError, NotFound, ServerError
from boltic_cli.models import DebugResult, Event
from boltic_cli.tail import MAX_LIMIT, SeenIds, Tail

from .support import FakeClock


def take(records, n):
    out = []
    for record in records:
        out.append(record)
        if len(out) >= n:
            break
    return out


def events_of(records):
    return [r.event for r in records if r.kind == "event"]


# -- against the real server --------------------------------------------------


@pytest.fixture
def source_id(api) -> str:
    response = api.post("/streams/sources", json={"name": "web", "type": "javascript"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def send(api, source_id: str, n: int, event_type: str = "page_view", start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        r = api.post(
            "/streams/events",
            json={"sourceId": source_id, "type": event_type, "properties": {"n": i}},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["eventId"])
    return ids


class Sender:
    """A sleep function that sends scripted events while the engine 'waits'."""

    def __init__(self, api, source_id: str, clock: FakeClock, script: dict[int, int]):
        self.api, self.source_id, self.clock = api, source_id, clock
        self.script = script  # pause number -> how many events to send during it
        self.pauses = 0
        self.sent: list[str] = []

    def __call__(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        n = self.script.get(self.pauses, 0)
        self.pauses += 1
        self.sent += send(self.api, self.source_id, n, start=len(self.sent))


def test_history_then_live_in_order_without_duplicates(api, client, source_id):
    history_ids = send(api, source_id, 15)
    clock = FakeClock()
    sender = Sender(api, source_id, clock, {0: 3, 1: 0, 2: 4, 3: 0, 4: 2})
    tail = Tail(client, [source_id], history=10, clock=clock, sleep=sender, duration=30)
    shown = events_of(tail.records())
    ids = [e.id for e in shown]
    assert ids == history_ids[-10:] + sender.sent
    assert len(set(ids)) == len(ids)
    received = [e.received_at for e in shown]
    assert received == sorted(received)
    assert tail.stats.gaps == 0


def test_history_zero_shows_only_new(api, client, source_id):
    send(api, source_id, 5)
    clock = FakeClock()
    sender = Sender(api, source_id, clock, {1: 2})
    tail = Tail(client, [source_id], history=0, clock=clock, sleep=sender, duration=10)
    assert [e.id for e in events_of(tail.records())] == sender.sent


def test_gap_reported_when_page_is_forced_small(api, client, source_id):
    clock = FakeClock()
    sender = Sender(api, source_id, clock, {0: 2, 1: 12, 2: 3})
    tail = Tail(
        client, [source_id], history=10, page_size=5, clock=clock, sleep=sender, duration=20
    )
    records = list(tail.records())
    gaps = [r for r in records if r.kind == "gap"]
    assert len(gaps) == 1
    assert gaps[0].to_wire()["kind"] == "gap"
    assert gaps[0].info["limit"] == 5
    shown = [e.id for e in events_of(records)]
    # Before the gap everything, after it the newest page and everything later.
    assert shown[:2] == sender.sent[:2]
    assert shown[2:7] == sender.sent[9:14]
    assert shown[7:] == sender.sent[14:]


def test_no_gap_when_burst_fits_the_largest_page(api, client, source_id):
    clock = FakeClock()
    # 80 events overflow the small idle page (50) but fit in one of 500.
    sender = Sender(api, source_id, clock, {1: 80})
    tail = Tail(client, [source_id], clock=clock, sleep=sender, duration=10)
    records = list(tail.records())
    assert [r for r in records if r.kind == "gap"] == []
    assert [e.id for e in events_of(records)] == sender.sent


def test_filter_applies_to_history_and_live(api, client, source_id):
    send(api, source_id, 3, "signup")
    send(api, source_id, 3, "page_view")
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            send(api, source_id, 2, "signup")
            send(api, source_id, 2, "page_view")

    tail = Tail(
        client,
        [source_id],
        accept=lambda e: e.type == "signup",
        clock=clock,
        sleep=sleep,
        duration=5,
    )
    shown = events_of(tail.records())
    assert [e.type for e in shown] == ["signup"] * 5


def test_deleted_source_raises_not_found(api, client, source_id):
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        api.delete(f"/streams/sources/{source_id}")

    tail = Tail(client, [source_id], clock=clock, sleep=sleep, duration=10)
    with pytest.raises(NotFound):
        list(tail.records())


def test_all_sources_merged_by_received_at(api, client):
    a = api.post("/streams/sources", json={"name": "a", "type": "server"}).json()["id"]
    b = api.post("/streams/sources", json={"name": "b", "type": "server"}).json()["id"]
    clock = FakeClock()
    sent: list[str] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            for i in range(6):
                sent.extend(send(api, a if i % 2 else b, 1))

    def list_sources():
        return [s.id for s in client.list_stream_sources()]

    tail = Tail(client, list_sources, clock=clock, sleep=sleep, duration=5)
    records = list(tail.records())
    assert [r.event.id for r in records if r.kind == "event"] == sent
    assert {r.source_id for r in records if r.kind == "event"} == {a, b}


# -- pacing, seen against the fake clock --------------------------------------


def test_idle_polling_backs_off_towards_interval(api, client, source_id):
    clock = FakeClock()
    tail = Tail(client, [source_id], interval=2.0, clock=clock, sleep=clock.sleep, duration=30)
    list(tail.records())
    assert clock.sleeps[0] < 0.5
    backoff = clock.sleeps[:-1]  # the last pause is cut short by the duration
    assert backoff == sorted(backoff)
    assert max(clock.sleeps) == pytest.approx(2.0)
    assert sum(clock.sleeps) == pytest.approx(30.0)


def test_busy_polling_asks_for_largest_page_and_comes_back_at_once(api, client, source_id):
    clock = FakeClock()
    limits: list[int] = []
    real = client.debug_stream_source

    def spy(source, *, limit=None):
        limits.append(limit)
        return real(source, limit=limit)

    client.debug_stream_source = spy
    sender = Sender(api, source_id, clock, {1: 5, 2: 60})
    tail = Tail(client, [source_id], clock=clock, sleep=sender, duration=20)
    list(tail.records())
    assert limits[0] == MAX_LIMIT  # history
    assert 50 in limits  # idle page
    assert limits.count(MAX_LIMIT) >= 2  # the overflowing burst is re-read whole
    assert 0.0 in clock.sleeps or min(clock.sleeps) <= 0.1


# -- scripted feed: faults a real server does not show on cue ----------------


class ScriptedFeed:
    """debug_stream_source answers from a script: an exception or a list of events."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.calls = 0

    def debug_stream_source(self, source_id, *, limit=None):
        self.calls += 1
        step = self.steps.pop(0) if self.steps else []
        if isinstance(step, Exception):
            raise step
        page = sorted(step, key=lambda e: e.received_at, reverse=True)[:limit]
        return DebugResult(data=page, connected=bool(page))


_ids = count()
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ev(offset_ms: int) -> Event:
    return Event(
        id=f"evt_{next(_ids):08d}",
        source_id="src_1",
        type="t",
        received_at=T0 + timedelta(milliseconds=offset_ms),
    )


def test_reconnects_with_backoff_then_carries_on():
    first, later = ev(0), ev(10)
    feed = ScriptedFeed(
        [
            [first],
            NetworkError("connection refused"),
            ServerError(503, "store unavailable"),
            NetworkError("connection refused"),
            [first, later],
        ]
    )
    clock = FakeClock()
    tail = Tail(feed, ["src_1"], clock=clock, sleep=clock.sleep, duration=60)
    records = take(tail.records(), 7)
    kinds = [r.kind for r in records]
    assert kinds == [
        "connected",
        "event",
        "reconnecting",
        "reconnecting",
        "reconnecting",
        "connected",
        "event",
    ]
    assert [r.info["attempt"] for r in records if r.kind == "reconnecting"] == [1, 2, 3]
    retry = [r.info["retryIn"] for r in records if r.kind == "reconnecting"]
    assert retry == sorted(retry) and retry[0] < retry[-1]
    assert records[-1].event.id == later.id


def test_seen_ids_stay_bounded_and_forgotten_ids_stay_old():
    seen = SeenIds(capacity=100)
    events = [ev(i) for i in range(1000)]
    for e in events:
        seen.add(e)
    assert len(seen) == 100
    assert not seen.is_new(events[0])  # forgotten, but older than the floor
    assert not seen.is_new(events[-1])
    assert seen.is_new(ev(5000))


def test_late_committed_event_still_shown():
    a, b = ev(100), ev(200)
    late = ev(150)  # committed after b was already seen
    feed = ScriptedFeed([[a], [a, b], [a, b, late]])
    clock = FakeClock()
    tail = Tail(feed, ["src_1"], clock=clock, sleep=clock.sleep, duration=60)
    shown = events_of(take((r for r in tail.records() if r.kind == "event"), 3))
    assert [e.id for e in shown] == [a.id, b.id, late.id]


def test_gap_record_wire_shape():
    feed = ScriptedFeed([[ev(0)], [ev(i) for i in range(1, 20)]])
    clock = FakeClock()
    tail = Tail(feed, ["src_1"], page_size=5, clock=clock, sleep=clock.sleep, duration=60)
    gap = next(r for r in tail.records() if r.kind == "gap")
    wire = gap.to_wire()
    assert wire["kind"] == "gap" and wire["sourceId"] == "src_1"
    assert wire["after"] == "2026-11-26T12:00:00.000Z"
    assert wire["before"] == "2026-11-26T12:00:00.015Z"


def test_on_idle_runs_before_each_pause_and_not_while_busy(api, client, source_id):
    clock = FakeClock(start=0.0)
    sender = Sender(api, source_id, clock, {0: 5})
    moments: list[tuple[float, int]] = []  # (clock, sleeps so far) at each idle call
    tail = Tail(client, [source_id], history=0, page_size=5, clock=clock, sleep=sender, duration=5)
    shown = events_of(tail.records(on_idle=lambda: moments.append((clock(), sender.pauses))))
    assert len(shown) == 5
    # One call per pause, just before it: a status line is fresh whenever the tail waits.
    assert [pauses for _, pauses in moments] == list(range(sender.pauses))
    # The full page of 5 made the engine poll again at once: one pause fewer than polls.
    assert tail.stats.polls > sender.pauses


def test_the_engine_imports_no_rendering():
    import subprocess
    import sys

    code = (
        "import sys, boltic_cli.tail; "
        "bad = [m for m in ('boltic_cli.output', 'rich') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
