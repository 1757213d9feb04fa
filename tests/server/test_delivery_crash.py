"""Crash safety of delivery: under a steady stream of events to a webhook destination,
`boltic server` is SIGKILLed 5 times and restarted on the same database. At the end
every event that was answered 202 has reached the receiver at least once (by event
id), on either store. At-least-once allows duplicates (a kill between a receiver's 200 and the
recording of it); their number is printed and kept as a test property."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.receivers import Receiver

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ENV = {
    # A short lease: deliveries a killed server held are claimed again after 1 s.
    "BOLTIC_SERVER_DELIVERY_LEASE": "1s",
    "BOLTIC_SERVER_DELIVERY_SCHEDULE": "200ms,500ms,1s,1s,1s,1s,1s,1s",
}
KILLS = 5


@pytest.mark.slow
@pytest.mark.e2e
def test_every_accepted_event_is_delivered_across_sigkills(
    server_process, server_db, record_property
):
    with Receiver() as receiver:
        server = server_process(ENV, db=server_db)
        source = httpx.post(
            f"{server.url}/streams/sources", json={"name": "s", "type": "server"}, headers=AUTH
        ).json()
        created = httpx.post(
            f"{server.url}/streams/destinations",
            json={"name": "hook", "type": "webhook", "config": {"url": receiver.url}},
            headers=AUTH,
        )
        assert created.status_code == 201
        accepted: list[str] = []
        current = {"url": server.url}
        stop = threading.Event()

        def send() -> None:
            with httpx.Client(timeout=2.0) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        response = client.post(
                            f"{current['url']}/streams/events",
                            json={"sourceId": source["id"], "type": "tick", "properties": {"n": n}},
                            headers=AUTH,
                        )
                    except httpx.HTTPError:
                        time.sleep(0.02)  # the server is down: try the next URL
                        continue
                    if response.status_code == 202:
                        accepted.append(response.json()["eventId"])
                    time.sleep(0.002)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        for _ in range(KILLS):
            time.sleep(1.0)
            server.kill()
            server = server_process(ENV, db=server_db)
            current["url"] = server.url
        time.sleep(1.0)
        stop.set()
        sender.join(10)
        assert len(accepted) > 100, "the sender did not get going"

        deadline = time.monotonic() + 60
        while True:
            received = [r.json()["id"] for r in receiver.requests]
            missing = set(accepted) - set(received)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        duplicates = len(received) - len(set(received))
        record_property("accepted", len(accepted))
        record_property("received", len(received))
        record_property("duplicates", duplicates)
        print(
            f"\ncrash test: {len(accepted)} accepted, {len(received)} received, "
            f"{duplicates} duplicates, {len(missing)} missing after {KILLS} SIGKILLs"
        )
        assert not missing, f"{len(missing)} accepted events never reached the receiver"
        server.terminate()
