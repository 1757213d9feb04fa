"""Two ``boltic server`` processes on ONE PostgreSQL database, over real HTTP (design.md,
"Several server processes"; issue 19's "Show").

A and B are separate subprocesses (``ServerProcess`` on the ``pg_database`` URL) with
nothing shared but the database, so whatever one process remembers by itself shows up
here as a stale answer on the other:

- a source made on A is usable on B at once; deleted on A (204), its write key is
  refused on B at once with the 401 any gone key gets (as on SQLite), B's debug read
  of it is 404; paused on A, B refuses its events with 403 (each 20 rounds, to catch
  a process answering from something older than the 204);
- one Idempotency-Key, or one ``messageId`` (single and in a batch), sent to A and B
  at the same moment stores one event, and both answers carry its id;
- 8 concurrent senders split over A and B, A SIGKILLed mid-run, a sender whose
  request died with A sending the same event (same ``messageId``) to B: every event
  acknowledged with 202 by either is stored, none twice;
- a webhook destination's deliveries are made by both processes (each holds
  connections to the receiver: read from /proc), every event delivered; A SIGKILLed
  with deliveries in flight: B makes them after the lease (``--delivery-lease 2s``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.receivers import Received, Receiver, Reply
from tests.support import ServerProcess

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Deliveries a killed process held are taken by the other after 2 s; a failed attempt
# is retried within a second (the default schedule starts at 5 s).
DELIVERY_ENV = {
    "BOLTIC_SERVER_DELIVERY_LEASE": "2s",
    "BOLTIC_SERVER_DELIVERY_SCHEDULE": "200ms,500ms,1s,1s,1s,1s,1s,1s",
}
ROUNDS = 20


Pair = tuple[ServerProcess, ServerProcess]


def start_both(
    database: str, home: Path, started: list[ServerProcess], env: dict[str, str] | None = None
) -> Pair:
    """Processes A and B on the PostgreSQL ``database`` (a URL), each with a home dir of
    its own under ``home``; appended to ``started`` before they start (for the kill)."""
    for name in ("a", "b"):
        server = ServerProcess(database, token=ADMIN_TOKEN, home=home / name, extra_env=env)
        started.append(server)
        server.start()
    return started[-2], started[-1]


@pytest.fixture(scope="module")
def two(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """(A, B, database URL), started once for the tests that kill neither (each test
    makes sources of its own); killed, and the database dropped, after the module."""
    name = pg_server.new_database()
    started: list[ServerProcess] = []
    try:
        a, b = start_both(pg_server.url(name), tmp_path_factory.mktemp("two"), started)
        yield a, b, pg_server.url(name)
    finally:
        for server in started:
            server.kill()
        pg_server.drop_database(name)


@pytest.fixture
def start_two(pg_database: str, tmp_path: Path) -> Iterator[Callable[..., Pair]]:
    """``start_two(env)``: A and B of their own on a fresh database, for a test that
    kills one; both are killed at the end."""
    started: list[ServerProcess] = []
    yield lambda env=None: start_both(pg_database, tmp_path, started, env)
    for server in started:
        server.kill()


def new_source(url: str, name: str = "web") -> dict[str, Any]:
    body = {"name": name, "type": "javascript"}
    created = httpx.post(f"{url}/streams/sources", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    return created.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored_count(url: str, source_id: str) -> int:
    answer = httpx.get(
        f"{url}/streams/events", params={"sourceId": source_id, "limit": 1}, headers=AUTH
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["summary"]["totalEvents"]


def stored_rows(pg_server: Any, database: str, source_id: str) -> list[tuple[str, str]]:
    """(event id, messageId) of every event of ``source_id``, read in the database
    (``database``: its URL)."""
    out = pg_server.psql(
        f"SELECT id, coalesce(body::json->>'messageId', '') FROM events "
        f"WHERE source_id = '{source_id}'",
        db=database.rsplit("/", 1)[1],
    )
    return [tuple(line.split("\t")) for line in out.splitlines() if line]  # type: ignore[misc]


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run ``calls`` in threads released together by a barrier; their answers in order."""
    barrier = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], httpx.Response]) -> None:
        barrier.wait()
        try:
            answers[i] = call()
        except BaseException as e:  # handed back to the test
            answers[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers


# sources


@pytest.mark.e2e
def test_a_source_made_on_one_process_is_usable_on_the_other_at_once(two):
    a, b, _ = two
    source = new_source(a.url)
    sent = httpx.post(
        f"{b.url}/streams/events",
        json={"sourceId": source["id"], "type": "signup"},
        headers=bearer(source["writeKey"]),
    )
    assert sent.status_code == 202, sent.text
    found = httpx.get(f"{a.url}/streams/events", params={"sourceId": source["id"]}, headers=AUTH)
    assert [e["id"] for e in found.json()["data"]] == [sent.json()["eventId"]]
    assert httpx.get(f"{b.url}/streams/sources/{source['id']}", headers=AUTH).status_code == 200


@pytest.mark.slow
@pytest.mark.e2e
def test_a_source_deleted_on_one_process_is_refused_on_the_other_at_once(two):
    a, b, _ = two
    with httpx.Client() as on_a, httpx.Client() as on_b:
        for i in range(ROUNDS):
            source = new_source(a.url, f"s{i}")
            event = {"sourceId": source["id"], "type": "page_view"}
            key = bearer(source["writeKey"])
            # B has looked the source up (and would remember it, if it kept sources).
            assert on_b.post(f"{b.url}/streams/events", json=event, headers=key).status_code == 202
            debug = f"{b.url}/streams/sources/{source['id']}/debug"
            assert on_b.get(debug, headers=AUTH).status_code == 200
            assert (
                on_a.delete(f"{a.url}/streams/sources/{source['id']}", headers=AUTH).status_code
                == 204
            )
            # A gone write key is 401 (unknown token) on every route, as on one process
            # (test_sources.py::test_delete_cascades_and_kills_the_write_key, both stores)...
            refused = on_b.post(f"{b.url}/streams/events", json=event, headers=key)
            assert refused.status_code == 401, (i, refused.text)
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            batch = on_b.post(f"{b.url}/streams/events/batch", json={"batch": [event]}, headers=key)
            assert batch.status_code == 401, (i, batch.text)
            # ...the admin sending to it gets 404, and so does the debug read.
            admin = on_b.post(f"{b.url}/streams/events", json=event, headers=AUTH)
            assert admin.status_code == 404, (i, admin.text)
            assert on_b.get(debug, headers=AUTH).status_code == 404, i
    assert stored_count(b.url, source["id"]) == 0


@pytest.mark.e2e
def test_a_source_paused_on_one_process_is_refused_on_the_other_at_once(two):
    a, b, _ = two
    source = new_source(a.url)
    event = {"sourceId": source["id"], "type": "page_view"}
    key = bearer(source["writeKey"])
    patch = f"{a.url}/streams/sources/{source['id']}"
    with httpx.Client() as on_a, httpx.Client() as on_b:
        for i in range(ROUNDS):
            assert on_b.post(f"{b.url}/streams/events", json=event, headers=key).status_code == 202
            paused = on_a.patch(patch, json={"status": "inactive"}, headers=AUTH)
            assert paused.status_code == 200, paused.text
            refused = on_b.post(f"{b.url}/streams/events", json=event, headers=key)
            assert refused.status_code == 403, (i, refused.text)
            admin = on_b.post(f"{b.url}/streams/events", json=event, headers=AUTH)
            assert admin.status_code == 403, (i, admin.text)
            assert on_a.patch(patch, json={"status": "active"}, headers=AUTH).status_code == 200
    assert stored_count(a.url, source["id"]) == ROUNDS


# dedupe across processes


@pytest.mark.e2e
def test_one_idempotency_key_sent_to_both_at_once_stores_one_event(two):
    a, b, _ = two
    source = new_source(a.url)
    rounds = 5
    with httpx.Client() as on_a, httpx.Client() as on_b:
        for i in range(rounds):
            event = {"sourceId": source["id"], "type": "order", "properties": {"n": i}}
            headers = {**AUTH, "Idempotency-Key": f"key-{i}"}
            answers = at_once(
                lambda event=event, headers=headers: on_a.post(
                    f"{a.url}/streams/events", json=event, headers=headers
                ),
                lambda event=event, headers=headers: on_b.post(
                    f"{b.url}/streams/events", json=event, headers=headers
                ),
            )
            assert [r.status_code for r in answers] == [202, 202], [r.text for r in answers]
            assert answers[0].json()["eventId"] == answers[1].json()["eventId"]
    assert stored_count(b.url, source["id"]) == rounds


@pytest.mark.e2e
def test_one_message_id_sent_to_both_at_once_stores_one_event(two, pg_server):
    a, b, database = two
    source = new_source(a.url)
    key = bearer(source["writeKey"])
    rounds = 5
    with httpx.Client() as on_a, httpx.Client() as on_b:
        for i in range(rounds):
            event = {"sourceId": source["id"], "type": "order", "messageId": f"single-{i}"}
            answers = at_once(
                lambda event=event: on_a.post(f"{a.url}/streams/events", json=event, headers=key),
                lambda event=event: on_b.post(f"{b.url}/streams/events", json=event, headers=key),
            )
            assert [r.status_code for r in answers] == [202, 202], [r.text for r in answers]
            assert answers[0].json()["eventId"] == answers[1].json()["eventId"]
        for i in range(rounds):
            batch = {
                "batch": [
                    {"sourceId": source["id"], "type": "item", "messageId": f"batch-{i}-{j}"}
                    for j in range(3)
                ]
            }
            answers = at_once(
                lambda batch=batch: on_a.post(
                    f"{a.url}/streams/events/batch", json=batch, headers=key
                ),
                lambda batch=batch: on_b.post(
                    f"{b.url}/streams/events/batch", json=batch, headers=key
                ),
            )
            assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
            ids = [[item["eventId"] for item in r.json()["data"]] for r in answers]
            assert ids[0] == ids[1] and len(set(ids[0])) == 3, ids
    rows = stored_rows(pg_server, database, source["id"])
    assert len(rows) == rounds + 3 * rounds
    assert len({message_id for _, message_id in rows}) == len(rows)


# a process killed under load


SENDERS = 8


@pytest.mark.slow
@pytest.mark.e2e
def test_every_event_acknowledged_by_either_is_stored_once_when_one_is_killed(
    start_two, pg_server, pg_database
):
    a, b = start_two()
    source = new_source(a.url)
    key = bearer(source["writeKey"])
    acknowledged: dict[str, str] = {}  # messageId -> eventId
    failures: list[str] = []
    retried_on_b: list[str] = []
    by_a = 0  # events A acknowledged
    a_killed = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()

    def send(n: int) -> None:
        nonlocal by_a
        mine = a if n % 2 == 0 else b
        with httpx.Client(timeout=10) as client:
            i = 0
            while not stop.is_set():
                i += 1
                message_id = f"sender{n}-{i}"
                event = {"sourceId": source["id"], "type": "tick", "messageId": message_id}
                tries = 0
                while True:  # until acknowledged: the same event, so the same messageId
                    target = b if mine is a and a_killed.is_set() else mine
                    tries += 1
                    try:
                        answer = client.post(
                            f"{target.url}/streams/events", json=event, headers=key
                        )
                    except httpx.TransportError:
                        if tries > 200:
                            failures.append(f"{message_id}: no answer after {tries} tries")
                            return
                        time.sleep(0.02)  # A died: once it is known dead, B
                        continue
                    break
                with lock:
                    if answer.status_code != 202:
                        failures.append(f"{message_id}: {answer.status_code} {answer.text}")
                        return
                    acknowledged[message_id] = answer.json()["eventId"]
                    by_a += target is a
                    if tries > 1:
                        retried_on_b.append(message_id)

    threads = [threading.Thread(target=send, args=(n,), daemon=True) for n in range(SENDERS)]
    for thread in threads:
        thread.start()
    # Killed in full flow (past the first requests' warm-up); B then carries on alone.
    wait_until(lambda: len(acknowledged) >= 100 or bool(failures), 60, "100 events acknowledged")
    before_kill = len(acknowledged)
    a.kill()
    a_killed.set()
    wait_until(
        lambda: len(acknowledged) >= before_kill + 100 or bool(failures),
        60,
        "100 more events acknowledged by B",
    )
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not failures, failures[:5]
    assert by_a > 0

    rows = stored_rows(pg_server, pg_database, source["id"])
    stored_ids = [event_id for event_id, _ in rows]
    stored_message_ids = [message_id for _, message_id in rows]
    assert len(set(stored_ids)) == len(stored_ids)
    # None twice: one stored event per messageId...
    assert len(set(stored_message_ids)) == len(stored_message_ids)
    # ...and every acknowledged event is there, under the id its 202 carried.
    assert dict(zip(stored_message_ids, stored_ids, strict=True)) == acknowledged
    assert stored_count(b.url, source["id"]) == len(acknowledged)
    print(
        f"\n{len(acknowledged)} events acknowledged ({by_a} by A, {before_kill} before A "
        "was killed), "
        f"{len(retried_on_b)} sent again to B after A died"
    )


# deliveries


def receiver_connections(pid: int, port: int) -> int:
    """TCP connections process ``pid`` holds to 127.0.0.1:``port`` (from /proc: the
    socket inodes among its fds, matched in the TCP table by remote port)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                found += 1
    return found


def deliveries(url: str, destination_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{url}/streams/destinations/{destination_id}/deliveries",
        params={"limit": 500},
        headers=AUTH,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="reads /proc (Linux)")
def test_deliveries_are_split_over_both_and_the_survivor_finishes_a_killed_ones(start_two):
    delay = {"seconds": 0.2}

    def respond(request: Received) -> Reply:
        return Reply(200, delay=delay["seconds"])

    with Receiver(respond=respond) as receiver:
        a, b = start_two(DELIVERY_ENV)
        source = new_source(a.url)
        made = httpx.post(
            f"{a.url}/streams/destinations",
            json={"name": "hook", "type": "webhook", "config": {"url": receiver.url}},
            headers=AUTH,
        )
        assert made.status_code == 201, made.text
        destination = made.json()["id"]

        # Split: events sent to both; each process delivers (it has connections to the
        # receiver), every event arrives.
        first: list[str] = []
        for i in range(16):
            target = (a, b)[i % 2]
            sent = httpx.post(
                f"{target.url}/streams/events",
                json={"sourceId": source["id"], "type": "split", "properties": {"i": i}},
                headers=AUTH,
            )
            assert sent.status_code == 202, sent.text
            first.append(sent.json()["eventId"])
        wait_until(
            lambda: set(first) <= {r.json()["id"] for r in receiver.requests},
            30,
            "the first events to arrive",
        )
        holders = {
            name: receiver_connections(p.pid, receiver.port) for name, p in (("A", a), ("B", b))
        }
        assert all(holders.values()), f"one process delivered nothing: {holders}"
        wait_until(
            lambda: sum(d["status"] == "succeeded" for d in deliveries(b.url, destination)) == 16,
            30,
            "16 deliveries recorded succeeded",
        )

        # Kill: A takes a batch of events (one commit, A's worker claims them at once)
        # and is killed while the receiver holds its first requests; B makes them after
        # A's lease ends.
        delay["seconds"] = 0.5
        receiver.clear()
        batch = httpx.post(
            f"{a.url}/streams/events/batch",
            json={
                "batch": [
                    {"sourceId": source["id"], "type": "killed", "properties": {"i": i}}
                    for i in range(12)
                ]
            },
            headers=AUTH,
        )
        assert batch.status_code == 200 and batch.json()["accepted"] == 12, batch.text
        second = [item["eventId"] for item in batch.json()["data"]]
        wait_until(lambda: len(receiver.requests) >= 2, 30, "the first deliveries of the batch")
        a.kill()
        killed_at = time.time()
        in_flight = {r.headers["webhook-id"] for r in receiver.requests}
        wait_until(
            lambda: set(second) <= {r.json()["id"] for r in receiver.requests},
            60,
            "every event of the batch to arrive",
        )
        wait_until(
            lambda: all(d["status"] == "succeeded" for d in deliveries(b.url, destination)),
            60,
            "every delivery recorded succeeded on B",
        )
        rows = deliveries(b.url, destination)
        assert len(rows) == 28 and {d["eventId"] for d in rows} == set(first + second)
        again = [
            r
            for r in receiver.requests
            if r.headers["webhook-id"] in in_flight and r.at > killed_at
        ]
        # What A had in flight when it died came again, from B, once A's lease ended.
        assert again, "no delivery A held was made again after A died"
        print(
            f"\ndelivery connections before the kill {holders}; {len(in_flight)} in flight "
            f"at the kill, {len(again)} made again by B "
            f"{min(r.at for r in again) - killed_at:.1f}s after it"
        )
