"""Webhook delivery end to end: the real app (its worker running in the lifespan), real
receivers on loopback, signatures checked with the `standardwebhooks` package.

The retry schedule, timeout and poll interval are server settings, shortened here to
fractions of a second so retries happen within a test.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import ADMIN_TOKEN
from tests.receivers import Receiver, Reply, receiver_fixture, refused_url  # noqa: F401

SCHEDULE = (0.2, 0.2, 0.2)


@pytest.fixture
def server_settings(request, store_kind, tmp_path):
    """On each store (conftest's ``store_kind``), with short delivery periods."""
    from boltic_cli.server.settings import ServerSettings

    url = request.getfixturevalue("pg_database") if store_kind == "postgresql" else None
    return ServerSettings(
        db_path=tmp_path / "server.db",
        database_url=url,
        admin_token=ADMIN_TOKEN,
        delivery_schedule=SCHEDULE,
        delivery_timeout=0.5,
        delivery_poll_interval=0.02,
        delivery_lease=10,
    )


@pytest.fixture
def make_destination(api) -> Callable[..., dict[str, Any]]:
    def make(url: str, **config: Any) -> dict[str, Any]:
        response = api.post(
            "/streams/destinations",
            json={"name": "hook", "type": "webhook", "config": {"url": url, **config}},
        )
        assert response.status_code == 201, response.text
        return response.json()

    return make


def deliveries(api, destination: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    response = api.get(f"/streams/destinations/{destination['id']}/deliveries", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def delivery(api, destination: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    response = api.get(f"/streams/destinations/{destination['id']}/deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def settled(api, destination, status: str = "succeeded", count: int = 1) -> list[dict]:
    return wait_until(
        lambda: (
            (rows := deliveries(api, destination, status=status)) and len(rows) >= count and rows
        ),
        what=f"{count} {status} deliveries",
    )


def verify(destination: dict[str, Any], request) -> Any:
    return Webhook(destination["config"]["signingSecret"]).verify(request.body, request.headers)


def test_body_is_the_event_as_the_api_returns_it_and_signed(
    api, source, send, receiver, make_destination
):
    destination = make_destination(receiver.url)
    assert destination["config"]["signingSecret"].startswith("whsec_")
    event_id = send(source["id"], "signup", properties={"plan": "pro", "n": 2}).json()["eventId"]
    (request,) = receiver.wait_for(1)
    stored = api.get("/streams/events", params={"sourceId": source["id"]}).json()["data"][0]
    assert stored["id"] == event_id
    assert verify(destination, request) == stored
    assert request.method == "POST" and request.path == "/hook"
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("boltic-server/")
    (row,) = settled(api, destination)
    assert headers["webhook-id"] == row["id"] and row["id"].startswith("dlv_")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    assert row["eventId"] == event_id and row["attempts"] == 1
    assert row["responseStatus"] == 200 and row["responseBody"] == "ok"
    assert "nextAttemptAt" not in row


def test_filters_by_event_type_and_source(api, make_source, send, receiver, make_destination):
    web, app = make_source("web"), make_source("app")
    by_type = make_destination(receiver.url, eventTypes=["signup", "purchase"])
    by_source = make_destination(receiver.url, sourceIds=[app["id"]])
    both = make_destination(receiver.url, eventTypes=["signup"], sourceIds=[web["id"]], headers={})
    everything = make_destination(receiver.url, eventTypes=[], sourceIds=[])
    sent = {
        (src["id"], kind): send(src["id"], kind).json()["eventId"]
        for src in (web, app)
        for kind in ("signup", "purchase", "page_view")
    }

    def events_of(destination: dict[str, Any]) -> set[str]:
        return {row["eventId"] for row in deliveries(api, destination)}

    assert events_of(by_type) == {
        sent[(s["id"], k)] for s in (web, app) for k in ("signup", "purchase")
    }
    assert events_of(by_source) == {
        sent[(app["id"], k)] for k in ("signup", "purchase", "page_view")
    }
    assert events_of(both) == {sent[(web["id"], "signup")]}
    assert events_of(everything) == set(sent.values())
    received = receiver.wait_for(4 + 3 + 1 + 6)
    assert len(received) == 14
    # Filters are on the list of deliveries too.
    one = sent[(web["id"], "signup")]
    assert [r["eventId"] for r in deliveries(api, by_type, eventId=one)] == [one]


def test_custom_headers_are_sent(send, source, receiver, make_destination):
    make_destination(receiver.url, headers={"Authorization": "Bearer abc", "X-Team": "data"})
    send(source["id"])
    (request,) = receiver.wait_for(1)
    assert request.headers["authorization"] == "Bearer abc"
    assert request.headers["x-team"] == "data"


def test_500_twice_then_200_is_three_attempts_with_one_webhook_id(
    api, source, send, receiver, make_destination
):
    destination = make_destination(receiver.url)
    receiver.script(Reply(500, body="down"), Reply(503))
    send(source["id"])
    requests = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    for request in requests:
        verify(destination, request)
    (row,) = settled(api, destination)
    assert row["attempts"] == 3 and row["responseStatus"] == 200
    detail = delivery(api, destination, row["id"])
    assert [(a["n"], a["outcome"], a.get("responseStatus")) for a in detail["history"]] == [
        (1, "transient", 500),
        (2, "transient", 503),
        (3, "success", 200),
    ]
    assert detail["history"][0]["responseBody"] == "down"
    # The pauses follow the schedule (0.2 s, +/-20%), not sooner.
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert all(gap >= 0.15 for gap in gaps), gaps


def test_timeout_and_connection_refused_are_retried(api, source, send, receiver, make_destination):
    slow = make_destination(receiver.url)
    receiver.script(Reply(delay=2))
    send(source["id"])
    (row,) = settled(api, slow)
    first = delivery(api, slow, row["id"])["history"][0]
    assert first["outcome"] == "transient" and "no answer within 0.5s" in first["error"]
    assert "responseStatus" not in first
    assert row["attempts"] == 2

    api.delete(f"/streams/destinations/{slow['id']}")
    refused = make_destination(refused_url())
    send(source["id"])
    (row,) = settled(api, refused, "failed")
    assert row["attempts"] == 1 + len(SCHEDULE)
    assert row["error"].startswith("cannot connect")
    history = delivery(api, refused, row["id"])["history"]
    assert [a["outcome"] for a in history] == ["transient"] * 4


def test_429_retry_after_is_honoured(api, source, send, receiver, make_destination):
    destination = make_destination(receiver.url)
    receiver.script(Reply(429, headers={"Retry-After": "1"}))
    send(source["id"])
    first, second = receiver.wait_for(2)
    assert second.at - first.at >= 0.95
    (row,) = settled(api, destination)
    assert row["attempts"] == 2


def test_410_disables_the_destination(api, source, send, receiver, make_destination):
    destination = make_destination(receiver.url)
    receiver.script(Reply(410))
    send(source["id"])
    receiver.wait_for(1)
    got = wait_until(
        lambda: (
            (d := api.get(f"/streams/destinations/{destination['id']}").json())["status"]
            == "inactive"
            and d
        ),
        what="the destination to be disabled",
    )
    assert "410" in got["disabledReason"]
    (row,) = deliveries(api, destination)
    assert row["status"] == "failed" and row["responseStatus"] == 410
    listed = api.get("/streams/destinations").json()["data"]
    assert listed[0]["disabledReason"] == got["disabledReason"]
    # Active again: the reason goes.
    patched = api.patch(f"/streams/destinations/{destination['id']}", json={"status": "active"})
    assert patched.status_code == 200 and "disabledReason" not in patched.json()


def test_302_and_400_are_failures_and_retried(api, source, send, receiver, make_destination):
    destination = make_destination(receiver.url)
    receiver.script(Reply(302, headers={"Location": "/elsewhere"}), Reply(400, body="bad"))
    send(source["id"])
    requests = receiver.wait_for(3)
    assert [r.path for r in requests] == ["/hook"] * 3  # the redirect was not followed
    (row,) = settled(api, destination)
    history = delivery(api, destination, row["id"])["history"]
    assert [(a["outcome"], a["responseStatus"]) for a in history] == [
        ("rejected", 302),
        ("rejected", 400),
        ("success", 200),
    ]


def test_test_route_delivers_a_synthetic_event_and_stores_nothing(
    api, source, receiver, make_destination
):
    destination = make_destination(receiver.url)
    receiver.script(Reply(201, body="thanks"))
    answer = api.post(f"/streams/destinations/{destination['id']}/test")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["outcome"] == "success" and result["responseStatus"] == 201
    assert result["responseBody"] == "thanks"
    (request,) = receiver.wait_for(1)
    event = verify(destination, request)
    assert event["type"] == "boltic.test" and event["id"] == result["eventId"]
    assert request.headers["webhook-id"] == result["webhookId"]
    assert deliveries(api, destination) == []
    assert api.get("/streams/events").json()["summary"]["totalEvents"] == 0
    # A failing receiver is an answer too, not an error of the route.
    receiver.script(Reply(500))
    failed = api.post(f"/streams/destinations/{destination['id']}/test").json()
    assert failed["outcome"] == "transient" and failed["responseStatus"] == 500
    other = api.post(
        "/streams/destinations", json={"name": "x", "type": "bigquery", "config": {}}
    ).json()
    assert api.post(f"/streams/destinations/{other['id']}/test").status_code == 422
    assert api.post("/streams/destinations/dst_nope/test").status_code == 404


def test_replay_queues_failed_deliveries_again(api, source, send, receiver, make_destination):
    destination = make_destination(refused_url())
    send(source["id"])
    (failed,) = settled(api, destination, "failed")
    assert failed["attempts"] == 4
    config = {**destination["config"], "url": receiver.url}
    patched = api.patch(f"/streams/destinations/{destination['id']}", json={"config": config})
    assert patched.json()["config"]["signingSecret"] == destination["config"]["signingSecret"]
    replay = api.post(
        f"/streams/destinations/{destination['id']}/replay",
        json={"status": "failed", "since": "2000-01-01T00:00:00Z"},
    )
    assert replay.status_code == 200 and replay.json() == {"queued": 1}
    (request,) = receiver.wait_for(1)
    assert request.headers["webhook-id"] == failed["id"]
    (row,) = settled(api, destination)
    assert row["attempts"] == 5
    future = api.post(
        f"/streams/destinations/{destination['id']}/replay",
        json={"status": "succeeded", "since": "2999-01-01T00:00:00Z"},
    )
    assert future.json() == {"queued": 0}


def test_inactive_destination_holds_pending_deliveries_and_resumes(
    api, source, send, receiver, make_destination, server_settings
):
    server_settings.delivery_schedule = (1.0,)
    destination = make_destination(receiver.url)
    receiver.script(Reply(500))
    send(source["id"])
    receiver.wait_for(1)
    url = f"/streams/destinations/{destination['id']}"
    assert api.patch(url, json={"status": "inactive"}).json()["status"] == "inactive"
    send(source["id"])  # no delivery: the destination was inactive when it arrived
    time.sleep(1.6)
    assert len(receiver.requests) == 1
    (row,) = deliveries(api, destination)
    assert row["status"] == "pending" and row["nextAttemptAt"]
    api.patch(url, json={"status": "active"})
    receiver.wait_for(2)
    (row,) = settled(api, destination)
    assert row["attempts"] == 2


def test_deleting_a_source_drops_its_pending_deliveries(
    api, make_source, send, make_destination, server_settings
):
    server_settings.delivery_schedule = (30.0,)
    kept, dropped = make_source("kept"), make_source("dropped")
    destination = make_destination(refused_url())
    send(kept["id"])
    send(dropped["id"])
    wait_until(lambda: all(r["attempts"] == 1 for r in deliveries(api, destination)))
    assert api.delete(f"/streams/sources/{dropped['id']}").status_code == 204
    (row,) = deliveries(api, destination, status="pending")
    assert row["status"] == "pending"
    assert api.get("/streams/events").json()["data"][0]["sourceId"] == kept["id"]


def test_retention_prunes_deliveries_with_their_events(
    api, source, send, receiver, make_destination, store, store_call
):
    destination = make_destination(receiver.url)
    send(source["id"])
    (row,) = settled(api, destination)
    assert delivery(api, destination, row["id"])["history"]
    store_call(store.prune_received_before, store.now_ms() + 1)
    assert deliveries(api, destination) == []
    gone = api.get(f"/streams/destinations/{destination['id']}/deliveries/{row['id']}")
    assert gone.status_code == 404


def test_auto_disable_after_failing_for_the_period(
    api, source, send, make_destination, server_settings
):
    server_settings.delivery_auto_disable = 0.5
    server_settings.delivery_schedule = (0.2,) * 10
    destination = make_destination(refused_url())
    send(source["id"])
    got = wait_until(
        lambda: (
            (d := api.get(f"/streams/destinations/{destination['id']}").json())["status"]
            == "inactive"
            and d
        ),
        what="auto-disable",
    )
    assert got["disabledReason"].startswith("every delivery attempt failed for 0.5s")
    (row,) = deliveries(api, destination)
    assert row["status"] == "pending"  # held, not dropped


def test_batch_and_idempotent_sends_get_deliveries(api, source, send, make_destination, receiver):
    destination = make_destination(receiver.url)
    first = api.post(
        "/streams/events",
        json={"sourceId": source["id"], "type": "a"},
        headers={"Idempotency-Key": "k1"},
    )
    again = api.post(
        "/streams/events",
        json={"sourceId": source["id"], "type": "a"},
        headers={"Idempotency-Key": "k1"},
    )
    assert first.json() == again.json()
    (row,) = settled(api, destination)
    assert row["eventId"] == first.json()["eventId"]


def test_a_batch_gets_a_delivery_per_accepted_item(api, source, make_destination, receiver):
    destination = make_destination(receiver.url)
    answer = api.post(
        "/streams/events/batch",
        json={
            "batch": [
                {"sourceId": source["id"], "type": "a", "messageId": "m1"},
                {"sourceId": "src_missing", "type": "b"},
                {"sourceId": source["id"], "type": "c"},
                {"sourceId": source["id"], "type": "a", "messageId": "m1"},  # a duplicate
            ]
        },
    ).json()
    accepted = {item["eventId"] for item in answer["data"] if item["status"] == "accepted"}
    assert answer["accepted"] == 3 and len(accepted) == 2
    rows = settled(api, destination, count=2)
    assert {row["eventId"] for row in rows} == accepted
    assert {r.json()["id"] for r in receiver.wait_for(2)} == accepted


def test_a_webhook_without_a_secret_gets_one_and_long_answers_are_cut(
    api, source, send, receiver, make_destination, db
):
    import json

    destination = make_destination(receiver.url)
    # As a database made before destinations had secrets would have it.
    db.execute("UPDATE destinations SET config = ?", (json.dumps({"url": receiver.url}),))
    receiver.script(Reply(200, body="é" * 3000))
    send(source["id"])
    (request,) = receiver.wait_for(1)
    secret = api.get(f"/streams/destinations/{destination['id']}").json()["config"]
    assert secret["signingSecret"] != destination["config"]["signingSecret"]
    Webhook(secret["signingSecret"]).verify(request.body, request.headers)
    (row,) = settled(api, destination)
    assert row["responseBody"] == "é" * 1024


def test_a_clean_stop_gives_back_what_it_held(server_settings, receiver):
    """Stopping (SIGTERM, Ctrl-C) with an attempt in flight and claims queued: they are
    due again at once, not when their 10 s leases end."""
    from fastapi.testclient import TestClient

    from boltic_cli.server.app import create_app

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    server_settings.delivery_timeout = 30
    receiver.script(Reply(delay=5))  # the first attempt outlives the stop's 2 s grace
    with TestClient(
        create_app(server_settings), base_url="http://testserver/v1", headers=headers
    ) as api:
        source = api.post("/streams/sources", json={"name": "s", "type": "server"}).json()
        api.post(
            "/streams/destinations",
            json={"name": "h", "type": "webhook", "config": {"url": receiver.url}},
        )
        for _ in range(3):
            api.post("/streams/events", json={"sourceId": source["id"], "type": "t"})
        receiver.wait_for(1)
    started = time.monotonic()
    with TestClient(
        create_app(server_settings), base_url="http://testserver/v1", headers=headers
    ) as api:
        (destination,) = api.get("/streams/destinations").json()["data"]
        settled(api, destination, count=3)
    assert time.monotonic() - started < 8


def test_a_slow_receiver_gets_each_delivery_once_though_leases_run_out(
    api, source, send, make_destination, server_settings
):
    """30 deliveries at 4 in flight and 0.3 s each take longer than the 1 s lease: queued
    ones whose lease ran out are claimed again, never sent twice."""
    server_settings.delivery_lease = 1.0
    server_settings.delivery_timeout = 5.0
    with Receiver(default=Reply(delay=0.3)) as slow:
        destination = make_destination(slow.url)
        for _ in range(30):
            send(source["id"])
        settled(api, destination, count=30)
        time.sleep(0.5)
        ids = [r.headers["webhook-id"] for r in slow.requests]
    assert len(ids) == len(set(ids)) == 30


def test_a_new_event_wakes_an_idle_worker(
    source, send, receiver, make_destination, server_settings
):
    server_settings.delivery_poll_interval = 30.0
    make_destination(receiver.url)
    time.sleep(0.3)  # the worker is now waiting out a 30 s poll
    started = time.monotonic()
    send(source["id"])
    receiver.wait_for(1, timeout=5)
    assert time.monotonic() - started < 5


def test_a_failing_store_is_one_warning_per_outage_with_growing_pauses(tmp_path, caplog):
    """The store down for 6 tries: one warning when it fails, one when it answers again
    (not one per poll), and the pauses between tries double (0.02, 0.04, ...)."""
    import asyncio
    import logging

    from boltic_cli.server.delivery import DeliveryWorker
    from boltic_cli.server.settings import ServerSettings
    from boltic_cli.server.store import StoreUnavailable

    class DownThenUp:
        """Only what the worker's claim loop calls, failing the first 6 claims."""

        def __init__(self) -> None:
            self.tries: list[float] = []

        async def claim_deliveries(self, *args: Any) -> list:
            self.tries.append(time.monotonic())
            if len(self.tries) <= 6:
                raise StoreUnavailable("the database cannot be reached: refused")
            return []

    settings = ServerSettings(
        db_path=tmp_path / "unused.db",
        admin_token=ADMIN_TOKEN,
        delivery_poll_interval=0.02,
        delivery_in_loop=True,
    )
    store = DownThenUp()

    async def run() -> None:
        worker = DeliveryWorker(store, settings)  # type: ignore[arg-type]
        await worker.start()
        while len(store.tries) < 8:
            await asyncio.sleep(0.01)
        await worker.stop()

    with caplog.at_level(logging.WARNING, logger="boltic"):
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("delivery:")]
    assert lines == [
        "delivery: the store failed: the database cannot be reached: refused (retrying)",
        "delivery: the store answers again (after 6 failed tries)",
    ]
    pauses = [b - a for a, b in itertools.pairwise(store.tries[:7])]
    assert pauses[-1] > 2 * pauses[0], pauses
