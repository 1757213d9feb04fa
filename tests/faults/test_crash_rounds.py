"""A 202 is a promise: acknowledged events survive SIGKILL under concurrent load.

Five rounds on one database: start ``boltic server``, let concurrent senders
(keep-alive connections, half with the admin token, half with the write key)
post as fast as the server answers, SIGKILL it mid-load, start it again. Then
every event id that got a 202 must be stored. The same with batches
(``POST /streams/events/batch``, 50 events each, with messageIds): every item a 200
answered ``accepted`` must be stored, and re-sending an acknowledged batch after the
crashes stores nothing twice. Both on SQLite and on PostgreSQL. Figures are printed
(``pytest -s``) and recorded as test properties (``--junitxml``).
"""

from __future__ import annotations

import itertools
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
BATCH_SIZE = 50
BATCH_ROUNDS = 3
BATCH_ACKS_PER_ROUND = 6000


@dataclass
class Round:
    acknowledged: list[str] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)  # non-202 statuses before the kill
    seconds: float = 0.0
    batches: list[tuple[list[dict], list[str]]] = field(default_factory=list)  # sent, ids

    @property
    def rate(self) -> float:
        return len(self.acknowledged) / self.seconds if self.seconds else 0.0


MESSAGE_IDS = itertools.count()


def send_until_killed(
    url: str,
    token: str,
    source_id: str,
    stamps: UniqueTimestamps,
    round_: Round,
    stop,
    batch_size: int = 0,
) -> None:
    """One sender: a keep-alive connection posting events (or batches of ``batch_size``)
    until the server dies."""
    import httpx

    def item() -> dict:
        return {"sourceId": source_id, "type": "crash_test", "timestamp": stamps.next()}

    with httpx.Client(base_url=url, headers=auth(token), timeout=10) as client:
        while not stop.is_set():
            try:
                if batch_size:
                    items = [
                        {**item(), "messageId": f"m{next(MESSAGE_IDS)}"} for _ in range(batch_size)
                    ]
                    response = client.post("/streams/events/batch", json={"batch": items})
                else:
                    response = client.post("/streams/events", json=item())
            except httpx.HTTPError:
                return  # the kill: whatever was in flight has no answer and promised nothing
            if response.status_code == 202:
                round_.acknowledged.append(response.json()["eventId"])
            elif response.status_code == 200 and batch_size:
                data = response.json()["data"]
                ids = [d["eventId"] for d in data if d["status"] == "accepted"]
                round_.acknowledged.extend(ids)
                round_.refused.extend(d["error"]["code"] for d in data if d["status"] != "accepted")
                round_.batches.append((items, ids))
            else:
                round_.refused.append(response.status_code)


def run_round(
    server: ServerProcess,
    source: dict,
    stamps: UniqueTimestamps,
    batch_size: int = 0,
    acks_per_round: int = ACKS_PER_ROUND,
) -> Round:
    round_ = Round()
    stop = threading.Event()
    tokens = [TOKEN, source["writeKey"]]
    senders = [
        threading.Thread(
            target=send_until_killed,
            args=(server.url, tokens[i % 2], source["id"], stamps, round_, stop, batch_size),
        )
        for i in range(SENDERS)
    ]
    started = time.monotonic()
    for sender in senders:
        sender.start()
    deadline = started + LOAD_SECONDS
    while len(round_.acknowledged) < acks_per_round and time.monotonic() < deadline:
        time.sleep(0.01)
    round_.seconds = time.monotonic() - started
    server.kill()
    stop.set()
    for sender in senders:
        sender.join(15)
    return round_


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """The database every round serves: a SQLite file, or a fresh PostgreSQL database's
    URL (tests/pg.py)."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_database")
    return tmp_path / "crash.db"


def test_acknowledged_events_survive_sigkill_rounds(
    tmp_path: Path, crash_db: Path | str, record_property
) -> None:
    import httpx

    db = crash_db
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


@pytest.mark.slow
def test_acknowledged_batch_items_survive_sigkill_rounds(
    tmp_path: Path, crash_db: Path | str, record_property
) -> None:
    import httpx

    db = crash_db
    stamps = UniqueTimestamps()
    rounds: list[Round] = []
    source: dict = {}
    for _ in range(BATCH_ROUNDS):
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
        rounds.append(run_round(server, source, stamps, BATCH_SIZE, BATCH_ACKS_PER_ROUND))
        assert not any(line.startswith("Traceback") for line in server.stderr_lines), (
            server.stderr_text()
        )

    with ServerProcess(db, token=TOKEN, home=tmp_path) as server:
        client = httpx.Client(base_url=server.url, headers=auth(TOKEN), timeout=30)
        with client:
            stored = list(all_event_ids(client, source["id"]))
            # Re-sending acknowledged batches (a sender that lost the answers) stores
            # nothing twice: their messageIds answer with the first ids.
            resent = [batch for r in rounds for batch in r.batches[-2:]]
            for items, ids in resent:
                again = client.post("/streams/events/batch", json={"batch": items})
                assert again.status_code == 200, again.text
                assert [d["eventId"] for d in again.json()["data"]] == ids
            after = list(all_event_ids(client, source["id"]))

    acknowledged = [event_id for round_ in rounds for event_id in round_.acknowledged]
    lost = set(acknowledged) - set(stored)
    figures = {
        "rounds": BATCH_ROUNDS,
        "senders": SENDERS,
        "batch_size": BATCH_SIZE,
        "acknowledged": len(acknowledged),
        "lost": len(lost),
        "stored": len(stored),
        "stored_without_ack": len(set(stored) - set(acknowledged)),
        "refused_before_kill": sum(len(r.refused) for r in rounds),
        "resent_batches": len(resent),
        "acks_per_second_by_round": [round(r.rate) for r in rounds],
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"\ncrash rounds (batches): {figures}")

    assert all(r.acknowledged for r in rounds), figures
    assert not lost, f"{len(lost)} acknowledged items lost, e.g. {sorted(lost)[:5]}"
    assert len(stored) == len(set(stored)), "an event is stored twice"
    assert sorted(after) == sorted(stored), "a re-sent batch stored events again"
    assert resent, "no batch was acknowledged"
    assert not any(r.refused for r in rounds), [r.refused[:5] for r in rounds]
