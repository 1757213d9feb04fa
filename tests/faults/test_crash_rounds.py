"""A 202 is a promise: acknowledged events survive SIGKILL under concurrent load.

Five rounds on one database: start ``boltic server``, let concurrent senders
(keep-alive connections, half with the admin token, half with the write key)
post as fast as the server answers, SIGKILL it mid-load, start it again. Then
every event id that got a 202 must be stored. Figures are printed (``pytest -s``)
and recorded as test properties (``--junitxml``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults._server import ServerProcess, UniqueTimestamps, all_event_ids, auth

pytestmark = pytest.mark.e2e

TOKEN = "crash-test-admin-token-0123456789abcdef"
ROUNDS = 5
SENDERS = 8
# A round kills the server once this many events were acknowledged in it (or after
# LOAD_SECONDS), so the kill always lands while every sender has requests in flight.
ACKS_PER_ROUND = 1500
LOAD_SECONDS = 3.0


@dataclass
class Round:
    acknowledged: list[str] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)  # non-202 statuses before the kill
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.acknowledged) / self.seconds if self.seconds else 0.0


def send_until_killed(
    url: str, token: str, source_id: str, stamps: UniqueTimestamps, round_: Round, stop
) -> None:
    """One sender: a keep-alive connection posting events until the server dies."""
    import httpx

    with httpx.Client(base_url=url, headers=auth(token), timeout=10) as client:
        while not stop.is_set():
            body = {"sourceId": source_id, "type": "crash_test", "timestamp": stamps.next()}
            try:
                response = client.post("/streams/events", json=body)
            except httpx.HTTPError:
                return  # the kill: whatever was in flight has no 202 and promised nothing
            if response.status_code == 202:
                round_.acknowledged.append(response.json()["eventId"])
            else:
                round_.refused.append(response.status_code)


def run_round(server: ServerProcess, source: dict, stamps: UniqueTimestamps) -> Round:
    round_ = Round()
    stop = threading.Event()
    tokens = [TOKEN, source["writeKey"]]
    senders = [
        threading.Thread(
            target=send_until_killed,
            args=(server.url, tokens[i % 2], source["id"], stamps, round_, stop),
        )
        for i in range(SENDERS)
    ]
    started = time.monotonic()
    for sender in senders:
        sender.start()
    deadline = started + LOAD_SECONDS
    while len(round_.acknowledged) < ACKS_PER_ROUND and time.monotonic() < deadline:
        time.sleep(0.01)
    round_.seconds = time.monotonic() - started
    server.kill()
    stop.set()
    for sender in senders:
        sender.join(15)
    return round_


def test_acknowledged_events_survive_sigkill_rounds(tmp_path: Path, record_property) -> None:
    import httpx

    db = tmp_path / "crash.db"
    stamps = UniqueTimestamps()
    rounds: list[Round] = []
    source: dict = {}
    for _ in range(ROUNDS):
        server = ServerProcess(db, token=TOKEN, home=tmp_path)
        server.start()
        if not source:
            created = httpx.post(
                server.url + "/streams/sources",
                json={"name": "crash", "type": "server"},
                headers=auth(TOKEN),
            )
            assert created.status_code == 201, created.text
            source = created.json()
        rounds.append(run_round(server, source, stamps))
        assert not any(line.startswith("Traceback") for line in server.stderr_lines), (
            server.stderr_text()
        )

    with ServerProcess(db, token=TOKEN, home=tmp_path) as server:
        client = httpx.Client(base_url=server.url, headers=auth(TOKEN), timeout=30)
        with client:
            stored = list(all_event_ids(client, source["id"]))

    acknowledged = [event_id for round_ in rounds for event_id in round_.acknowledged]
    lost = set(acknowledged) - set(stored)
    figures = {
        "rounds": ROUNDS,
        "senders": SENDERS,
        "acknowledged": len(acknowledged),
        "lost": len(lost),
        "stored": len(stored),
        "stored_without_ack": len(set(stored) - set(acknowledged)),
        "refused_before_kill": sum(len(r.refused) for r in rounds),
        "acks_per_second_by_round": [round(r.rate) for r in rounds],
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"\ncrash rounds: {figures}")

    assert all(r.acknowledged for r in rounds), figures
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:5]}"
    assert len(stored) == len(set(stored)), "an event is stored twice"
    assert not any(r.refused for r in rounds), [r.refused[:5] for r in rounds]
