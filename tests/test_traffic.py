"""Sample traffic: realistic events, stable users, pacing, and the summary."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from boltic_cli.errors import NotFound
from boltic_cli.models import EventInput
from boltic_cli.traffic import TrafficRunner, TrafficSummary, make_event, make_users, run_traffic

from .support import FakeClock

NOW = datetime(2026, 11, 26, 12, 0, 0, 123000, tzinfo=UTC)


def sample(n: int = 500, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    users = make_users(rng)
    return [make_event(rng, "src_x", users, NOW) for _ in range(n)]


def test_events_are_valid_event_input_wire_dicts():
    for event in sample():
        parsed = EventInput.model_validate(event)
        assert parsed.to_wire() == event
        assert event["sourceId"] == "src_x"
        assert event["timestamp"] == "2026-11-26T12:00:00.123Z"


def test_mix_of_page_views_signups_and_purchases():
    events = sample()
    by_type = defaultdict(list)
    for event in events:
        by_type[event["type"]].append(event)
    assert {"page_view", "signup", "purchase"} <= set(by_type)
    assert len(by_type["page_view"]) > len(events) / 3
    for view in by_type["page_view"]:
        page = view["context"]["page"]
        assert page["url"].startswith("https://") and page["title"]
        assert view["properties"]["path"] == page["url"].split(".example", 1)[1]
    assert any("referrer" in v["context"]["page"] for v in by_type["page_view"])
    for purchase in by_type["purchase"]:
        props = purchase["properties"]
        assert props["amount"] > 0 and props["currency"] in {"USD", "EUR", "GBP", "INR", "JPY"}
        assert props["items"]
    assert all(e["context"]["userAgent"].startswith("Mozilla/5.0 (") for e in events)


def test_users_keep_their_ids_and_browser():
    per_anonymous: dict[str, set] = defaultdict(set)
    for event in sample(1000):
        per_anonymous[event["anonymousId"]].add(
            (event.get("userId"), event["context"]["userAgent"], event["context"]["locale"])
        )
    assert len(per_anonymous) > 5
    assert all(len(v) == 1 for v in per_anonymous.values())
    with_user = [v for v in per_anonymous.values() if next(iter(v))[0] is not None]
    assert with_user and len(with_user) < len(per_anonymous)  # some browse anonymously


def test_same_seed_same_traffic():
    assert sample(50, seed=3) == sample(50, seed=3)
    assert sample(50, seed=3) != sample(50, seed=4)


def test_requested_type_is_used():
    rng = random.Random(1)
    event = make_event(rng, "src_x", make_users(rng), NOW, event_type="checkout_started")
    assert event["type"] == "checkout_started"


# -- run_traffic against the real server ------------------------------------


@pytest.fixture
def source_id(api) -> str:
    return api.post("/streams/sources", json={"name": "gen", "type": "server"}).json()["id"]


def test_count_sends_and_stores_that_many(api, client, source_id):
    seen: list[dict] = []
    summary = run_traffic(
        client,
        source_id,
        rate=None,
        count=25,
        duration=None,
        types=None,
        on_sent=seen.append,
        seed=1,
    )
    assert summary.sent == 25 and summary.failed == 0
    stored = api.get("/streams/events", params={"sourceId": source_id, "limit": 100}).json()
    assert stored["summary"]["totalEvents"] == 25
    assert {e["id"] for e in stored["data"]} == {s["eventId"] for s in seen}


def test_rate_paces_sends_with_the_given_clock(client, source_id):
    clock = FakeClock(start=0.0)
    summary = run_traffic(
        client,
        source_id,
        rate=10,
        count=None,
        duration=2.0,
        types=["signup"],
        clock=clock,
        sleep=clock.sleep,
    )
    assert summary.sent == 20
    assert summary.rate == pytest.approx(10, rel=0.1)
    assert sum(clock.sleeps) == pytest.approx(2.0, abs=0.11)


def test_types_restrict_what_is_sent(api, client, source_id):
    run_traffic(
        client, source_id, rate=None, count=12, duration=None, types=["purchase", "signup"], seed=2
    )
    stored = api.get("/streams/events", params={"sourceId": source_id}).json()["data"]
    assert {e["type"] for e in stored} <= {"purchase", "signup"}


def test_stop_event_ends_it(api, client, source_id):
    stop = threading.Event()
    sent: list[dict] = []

    def on_sent(event: dict) -> None:
        sent.append(event)
        if len(sent) == 3:
            stop.set()

    summary = run_traffic(
        client,
        source_id,
        rate=None,
        count=None,
        duration=None,
        types=None,
        on_sent=on_sent,
        stop=stop,
    )
    # Events already batched when the stop came are still sent (and counted): the
    # stop ends the generating, not the sends in flight.
    assert 3 <= summary.sent <= 1001 and summary.failed == 0
    assert len(sent) == summary.sent
    stored = api.get("/streams/events", params={"sourceId": source_id, "limit": 1}).json()
    assert stored["summary"]["totalEvents"] == summary.sent


def test_missing_source_raises_with_summary(client):
    with pytest.raises(NotFound) as info:
        run_traffic(client, "src_missing", rate=None, count=5, duration=None, types=None)
    assert info.value.traffic_summary.sent == 0


def test_summary_is_typed_and_prints_like_the_senders():
    from boltic_cli.sender import SendSummary

    summary = TrafficSummary(sent=30, failed=2, seconds=3.0)
    assert summary.rate == pytest.approx(10.0)
    assert summary.to_dict() == {"sent": 30, "failed": 2, "seconds": 3.0, "rate": 10.0}
    summary.interrupted = True
    assert summary.to_dict()["interrupted"] is True
    # One shape and one rate rule for events generate and events send, in every case.
    for figures in [
        {"sent": 7, "failed": 1, "seconds": 0.0},
        {"sent": 3, "failed": 0, "seconds": 1.23456, "interrupted": True},
    ]:
        sender = SendSummary(**figures, mode="batch", requests=2)
        assert TrafficSummary(**figures).to_dict() == sender.to_dict()


def test_runner_counts_then_stop_marks_an_unfinished_run_interrupted(api, client, source_id):
    with TrafficRunner(client, source_id, count=4) as runner:
        summary = runner.wait()
    assert summary.sent == 4 and not summary.interrupted
    with TrafficRunner(client, source_id, rate=1000.0) as runner:
        while runner.summary.sent < 2 and runner.error is None:
            threading.Event().wait(0.01)
        stopped = runner.stop()
    assert stopped.interrupted and stopped.sent >= 2
    total = api.get("/streams/events", params={"sourceId": source_id}).json()["summary"]
    assert total["totalEvents"] == 4 + stopped.sent


def test_runner_wait_raises_what_ended_the_run(client):
    with TrafficRunner(client, "src_missing", count=3) as runner, pytest.raises(NotFound):
        runner.wait()
    assert runner.summary.sent == 0
