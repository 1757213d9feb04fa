"""Each attempt goes where its destination says when the attempt starts (issue 19, "no
per-process state that can go stale"), not where it said when the worker claimed it:
pausing, deleting or re-pointing a destination reaches the claims a worker already
queued.

How each test gets claims queued: one batch of ``N`` events is claimed at once; the
slow receiver holds the first 4 requests (``MAX_IN_FLIGHT``) for ``HOLD`` seconds, so
the other ``N - 4`` wait in the worker's queue when the PATCH or DELETE lands (on a
machine so loaded that the change comes later, more were sent before it: the tests
count what came before the change, and fail only if too few were left queued to
tell). The receiver notes when each request arrived; the tests compare that with when
the change's answer came back. Leases are 30 s, so deliveries that are not given back could not be
claimed again within a test.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from boltic_cli import webhooks
from tests.conftest import ADMIN_TOKEN
from tests.receivers import Receiver, Reply
from tests.server import test_delivery
from tests.server import test_store_contract as contract
from tests.server.test_delivery import deliveries, settled, wait_until
from tests.server.test_delivery_store import SECRET, URL, new_destination

# Fixtures shared with test_delivery.py: short delivery periods on each store, and a
# destination made through the API.
server_settings = test_delivery.server_settings
make_destination = test_delivery.make_destination

N = 30
HOLD = 3.0


@pytest.fixture
def fresh_settings(server_settings):
    server_settings.delivery_lease = 30.0
    server_settings.delivery_timeout = 10.0
    return server_settings


def queue_behind_held_requests(api, server_app, source, rx: Receiver) -> list[str]:
    """Send ``N`` events in one batch with ``rx`` holding the first 4 requests; returns
    once all ``N`` are claimed (4 in flight, the rest queued in the worker)."""
    rx.script(*[Reply(delay=HOLD)] * 4)
    answer = api.post(
        "/streams/events/batch",
        json={"batch": [{"sourceId": source["id"], "type": "t"} for _ in range(N)]},
    ).json()
    assert answer["accepted"] == N
    worker = server_app.state.runtime.delivery
    wait_until(lambda: worker.claimed == N, what="every delivery claimed")
    rx.wait_for(4)
    return [item["eventId"] for item in answer["data"]]


def sent_before(rx: Receiver, at: float) -> int:
    """How many requests ``rx`` got before ``at``; fails unless most of the ``N`` were
    still queued then (else the test shows nothing)."""
    count = sum(r.at < at for r in rx.requests)
    assert count <= N // 2, f"{count} of {N} were sent before the change: too loaded?"
    return count


def test_pausing_stops_queued_claims_and_they_resume_when_active(
    api, server_app, source, make_destination, fresh_settings
):
    with Receiver(default=Reply()) as rx:
        destination = make_destination(rx.url)
        queue_behind_held_requests(api, server_app, source, rx)
        url = f"/streams/destinations/{destination['id']}"
        response = api.patch(url, json={"status": "inactive"})
        paused_at = time.time()
        assert response.status_code == 200, response.text
        sent = sent_before(rx, paused_at)
        # The held attempts finish (they started before the pause)...
        settled(api, destination, count=sent)
        time.sleep(0.5)
        # ...and nothing starts after it, though the rest were claimed and queued.
        assert all(r.at < paused_at for r in rx.requests)
        assert len(rx.requests) == sent
        pending = deliveries(api, destination, status="pending")
        assert len(pending) == N - sent
        assert all(row["attempts"] == 0 for row in pending)
        # Given back, due now: not held until their 30 s leases end.
        now = time.time()
        assert all(_seconds(row["nextAttemptAt"]) <= now for row in pending), (
            "paused claims kept their lease"
        )
        assert api.patch(url, json={"status": "active"}).status_code == 200
        settled(api, destination, count=N)
        ids = [r.headers["webhook-id"] for r in rx.requests]
        assert len(ids) == len(set(ids)) == N


def test_deleting_stops_queued_claims(api, server_app, source, make_destination, fresh_settings):
    with Receiver(default=Reply()) as rx:
        destination = make_destination(rx.url)
        queue_behind_held_requests(api, server_app, source, rx)
        response = api.delete(f"/streams/destinations/{destination['id']}")
        deleted_at = time.time()
        assert response.status_code == 204
        sent = sent_before(rx, deleted_at)
        time.sleep(HOLD + 0.5)
        assert len(rx.requests) == sent
        assert all(r.at < deleted_at for r in rx.requests)


def test_a_new_signing_secret_signs_every_attempt_started_after_the_change(
    api, server_app, source, make_destination, fresh_settings
):
    with Receiver(default=Reply()) as rx:
        destination = make_destination(rx.url)
        old = destination["config"]["signingSecret"]
        new = webhooks.new_signing_secret()
        queue_behind_held_requests(api, server_app, source, rx)
        response = api.patch(
            f"/streams/destinations/{destination['id']}",
            json={"config": {"url": rx.url, "signingSecret": new}},
        )
        changed_at = time.time()
        assert response.status_code == 200, response.text
        assert response.json()["config"]["signingSecret"] == new
        received = rx.wait_for(N)
        settled(api, destination, count=N)
    before = [r for r in received if r.at < changed_at]
    after = [r for r in received if r.at >= changed_at]
    assert len(before) <= N // 2 and len(before) + len(after) == N
    for request in before:
        Webhook(old).verify(request.body, request.headers)
    for request in after:
        Webhook(new).verify(request.body, request.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(request.body, request.headers)


def test_a_new_url_gets_every_attempt_started_after_the_change(
    api, server_app, source, make_destination, fresh_settings
):
    with Receiver(default=Reply()) as first, Receiver(default=Reply()) as second:
        destination = make_destination(first.url, headers={"X-Team": "a"})
        queue_behind_held_requests(api, server_app, source, first)
        response = api.patch(
            f"/streams/destinations/{destination['id']}",
            json={"config": {"url": second.url, "headers": {"X-Team": "b"}}},
        )
        changed_at = time.time()
        assert response.status_code == 200, response.text
        sent = sent_before(first, changed_at)
        moved = second.wait_for(N - sent)
        settled(api, destination, count=N)
        time.sleep(0.3)
        assert len(first.requests) == sent and len(second.requests) == N - sent
    assert all(r.at < changed_at for r in first.requests)
    assert all(r.at >= changed_at and r.headers["x-team"] == "b" for r in moved)
    # The secret was kept (the PATCH gave none): the new URL gets the same signature.
    for request in moved:
        Webhook(destination["config"]["signingSecret"]).verify(request.body, request.headers)
    ids = {r.headers["webhook-id"] for r in [*first.requests, *moved]}
    assert len(ids) == N


def test_a_pause_on_another_process_stops_this_ones_queued_claims(
    api, server_app, source, make_destination, fresh_settings, store_kind
):
    """Two apps on one PostgreSQL database, each with its own store and pool (as two
    `boltic server` processes): the one that pauses does not deliver."""
    if store_kind == "sqlite":
        pytest.skip("one process per SQLite file (design.md, Several server processes)")
    from fastapi.testclient import TestClient

    from boltic_cli.server.app import create_app

    other_settings = dataclasses.replace(fresh_settings, delivery=False)
    with (
        Receiver(default=Reply()) as rx,
        TestClient(
            create_app(other_settings),
            base_url="http://testserver/v1",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as other,
    ):
        destination = make_destination(rx.url)
        queue_behind_held_requests(api, server_app, source, rx)
        response = other.patch(
            f"/streams/destinations/{destination['id']}", json={"status": "inactive"}
        )
        paused_at = time.time()
        assert response.status_code == 200, response.text
        sent = sent_before(rx, paused_at)
        settled(api, destination, count=sent)
        time.sleep(0.5)
        assert len(rx.requests) == sent
        assert all(r.at < paused_at for r in rx.requests)
        assert other.patch(
            f"/streams/destinations/{destination['id']}", json={"status": "active"}
        ).is_success
        settled(api, destination, count=N)


def _seconds(wire_time: str) -> float:
    """An API time (``2026-01-02T03:04:05.678Z``) as seconds since the epoch."""
    return datetime.fromisoformat(wire_time.replace("Z", "+00:00")).timestamp()


run = contract.run  # the store contract's fixture: one freshly opened store per kind


def test_delivery_targets_answers_active_webhooks_as_committed_now(run):
    async def scenario(store) -> None:
        await new_destination(store, "dst_a")
        await new_destination(store, "dst_b")
        await new_destination(store, "dst_c")
        targets = await store.delivery_targets(["dst_a", "dst_b", "dst_missing"])
        assert set(targets) == {"dst_a", "dst_b"}
        assert targets["dst_a"]["url"] == URL and targets["dst_a"]["signingSecret"] == SECRET
        config = json.dumps({"url": "http://127.0.0.1:8/new", "signingSecret": SECRET})
        await store.update_destination("dst_a", {"config": config})
        await store.update_destination("dst_b", {"status": "inactive"})
        await store.delete_destination("dst_c")
        targets = await store.delivery_targets(["dst_a", "dst_b", "dst_c"])
        assert targets == {"dst_a": json.loads(config)}
        assert await store.delivery_targets([]) == {}

    run(scenario)
