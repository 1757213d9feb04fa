"""The store interface's promises (docs/internals.md, "Server store"), through the async
interface only, so every store implementation runs the same tests: add it to
``STORES`` (the PostgreSQL store adds "postgresql" with its own settings factory)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from boltic_cli.server.settings import ServerSettings
from boltic_cli.server.store import (
    DAY_MS,
    IDEMPOTENCY_TTL_MS,
    PRUNE_CHUNK,
    EventRecord,
    Idempotency,
    IdempotencyConflict,
    SourceGone,
    Store,
    StoreError,
    open_store,
)

STORES = ["sqlite", "postgresql"]
NOW_MS = 1_780_000_000_000 // DAY_MS * DAY_MS + 3_600_000  # 01:00 UTC on some day


def settings_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> ServerSettings:
    if kind == "sqlite":
        return ServerSettings(tmp_path / "contract.db", "token")
    if kind == "postgresql":  # a fresh database on the session's PostgreSQL (tests/pg.py)
        url = request.getfixturevalue("pg_database")
        return ServerSettings(tmp_path / "unused.db", "token", database_url=url)
    raise AssertionError(kind)


@pytest.fixture(params=STORES)
def run(request, tmp_path: Path) -> Callable[[Callable[[Store], Awaitable[None]]], None]:
    """Run ``scenario(store)`` on a freshly opened store (clock fixed at NOW_MS)."""

    settings = settings_for(request.param, tmp_path, request)

    def go(scenario: Callable[[Store], Awaitable[None]]) -> None:
        async def main() -> None:
            store = await open_store(settings)
            store.clock = lambda: NOW_MS / 1000
            try:
                await scenario(store)
            finally:
                await store.close()

        asyncio.run(main())

    return go


async def new_source(store: Store, sid: str = "src_a", status: str = "active") -> None:
    row = {
        "id": sid,
        "name": sid,
        "type": "server",
        "write_key": f"wk_{sid}",
        "status": status,
        "created_at": NOW_MS,
    }
    answer = await store.create_source(row, lambda r: json.dumps({"id": r["id"]}))
    assert answer.status == 201


def rec(
    eid: str, sid: str = "src_a", ts: int = NOW_MS, rx: int = NOW_MS, mid: str | None = None
) -> EventRecord:
    return EventRecord(eid, sid, "t", ts, rx, json.dumps({"id": eid}), message_id=mid)


def ids_of(bodies: list[str]) -> list[str]:
    return [json.loads(b)["id"] for b in bodies]


def test_sources_are_known_by_id_and_key_until_deleted(run):
    async def scenario(store: Store) -> None:
        await new_source(store)
        assert (await store.source("src_a")).write_key == "wk_src_a"
        assert (await store.source_for_key("wk_src_a")).id == "src_a"
        await store.insert_event(rec("evt_1"))
        [row] = await store.list_sources()
        assert row["events_today"] == 1 and row["status"] == "active"
        assert (await store.get_source("src_a"))["name"] == "src_a"
        await store.delete_source("src_a")
        assert await store.source("src_a") is None
        assert await store.source_for_key("wk_src_a") is None
        assert await store.get_source("src_a") is None
        assert (await store.query_events()).total == 0
        with pytest.raises(SourceGone):
            await store.delete_source("src_a")
        with pytest.raises(SourceGone):
            await store.insert_event(rec("evt_2"))

    run(scenario)


def test_update_source_renames_and_pauses_keeping_the_key(run):
    async def scenario(store: Store) -> None:
        await new_source(store)
        await store.update_source("src_a", name="renamed")
        assert (await store.get_source("src_a"))["name"] == "renamed"
        await store.update_source("src_a", status="inactive")
        row = await store.get_source("src_a")
        assert (row["name"], row["status"], row["write_key"]) == ("renamed", "inactive", "wk_src_a")
        # The hot path sees the status at once (the routes answer 403 from it).
        assert (await store.source("src_a")).status == "inactive"
        assert (await store.source_for_key("wk_src_a")).status == "inactive"
        await store.update_source("src_a", status="active")
        assert (await store.source_for_key("wk_src_a")).status == "active"
        with pytest.raises(SourceGone):
            await store.update_source("src_missing", status="inactive")

    run(scenario)


def test_idempotency_key_replays_the_first_answer(run):
    async def scenario(store: Store) -> None:
        await new_source(store)
        idem = Idempotency("scope", "k", "hash-1")
        first = await store.insert_event(rec("evt_1"), idem)
        again = await store.insert_event(rec("evt_2"), idem)
        assert first == again and json.loads(first.body)["eventId"] == "evt_1"
        with pytest.raises(IdempotencyConflict):
            await store.insert_event(rec("evt_3"), Idempotency("scope", "k", "hash-2"))
        # Scoped: another token's same key is another write.
        other = await store.insert_event(rec("evt_4"), Idempotency("other", "k", "hash-1"))
        assert json.loads(other.body)["eventId"] == "evt_4"
        assert ids_of((await store.query_events()).bodies) == ["evt_4", "evt_1"]
        store.clock = lambda: (NOW_MS + IDEMPOTENCY_TTL_MS + 1) / 1000
        assert await store.expire_idempotency_keys() == 2
        later = await store.insert_event(rec("evt_5"), idem)
        assert json.loads(later.body)["eventId"] == "evt_5"

    run(scenario)


def test_message_ids_dedupe_per_source_for_a_day(run):
    async def scenario(store: Store) -> None:
        await new_source(store, "src_a")
        await new_source(store, "src_b")
        first = await store.insert_event(rec("evt_1", mid="m"))
        again = await store.insert_event(rec("evt_2", mid="m"))
        assert json.loads(again.body)["eventId"] == "evt_1" == json.loads(first.body)["eventId"]
        other = await store.insert_event(rec("evt_3", "src_b", mid="m"))
        assert json.loads(other.body)["eventId"] == "evt_3"
        answer = await store.insert_batch(
            [rec("evt_4", mid="m"), rec("evt_5", mid="n"), rec("evt_6", mid="n")],
            lambda outcomes: json.dumps(outcomes),
        )
        assert json.loads(answer.body) == ["evt_1", "evt_5", "evt_5"]
        assert (await store.query_events()).total == 3
        store.clock = lambda: (NOW_MS + DAY_MS + 1) / 1000
        await store.expire_idempotency_keys()
        later = await store.insert_event(rec("evt_7", mid="m"))
        assert json.loads(later.body)["eventId"] == "evt_7"

    run(scenario)


def test_batch_outcomes_in_order_with_errors_alone(run):
    async def scenario(store: Store) -> None:
        await new_source(store)

        def render(outcomes: list[str | StoreError]) -> str:
            return json.dumps([o if isinstance(o, str) else type(o).__name__ for o in outcomes])

        idem = Idempotency("scope", "batch", "h")
        answer = await store.insert_batch(
            [rec("evt_1"), rec("evt_2", "src_gone"), rec("evt_3")], render, idem
        )
        assert answer.status == 200
        assert json.loads(answer.body) == ["evt_1", "SourceGone", "evt_3"]
        replay = await store.insert_batch([rec("evt_9")], render, idem)
        assert replay == answer
        empty = await store.insert_batch([], render)
        assert json.loads(empty.body) == []
        assert ids_of((await store.query_events()).bodies) == ["evt_3", "evt_1"]

    run(scenario)


def test_queries_order_filter_and_summarise(run):
    async def scenario(store: Store) -> None:
        await new_source(store)
        records = [
            EventRecord("evt_1", "src_a", "a", NOW_MS - 2 * DAY_MS, NOW_MS - 5, '{"id":"evt_1"}'),
            EventRecord("evt_2", "src_a", "b", NOW_MS - 1, NOW_MS - 1, '{"id":"evt_2"}'),
            EventRecord("evt_3", "src_a", "b", NOW_MS - 1, NOW_MS - 9, '{"id":"evt_3"}'),
        ]
        await store.insert_batch(records, json.dumps)
        everything = await store.query_events(limit=2)
        assert ids_of(everything.bodies) == ["evt_3", "evt_2"]  # ties by id, descending
        assert (everything.total, everything.unique_types) == (3, 2)
        assert (everything.earliest, everything.latest) == (NOW_MS - 2 * DAY_MS, NOW_MS - 1)
        window = await store.query_events(from_ms=NOW_MS - 2 * DAY_MS, to_ms=NOW_MS - 1)
        assert ids_of(window.bodies) == ["evt_1"]  # from inclusive, to exclusive
        typed = await store.query_events(event_type="b", source_id="src_a")
        assert typed.total == 2
        none = await store.query_events(source_id="src_none")
        assert (none.total, none.earliest, none.latest) == (0, None, None)
        bodies, newest = await store.debug_events("src_a", 2)
        assert ids_of(bodies) == ["evt_2", "evt_1"] and newest == NOW_MS - 1

    run(scenario)


def test_prune_deletes_in_chunks_with_counts(run):
    async def scenario(store: Store) -> None:
        await new_source(store)
        old = [rec(f"evt_{i:05d}", rx=NOW_MS - DAY_MS) for i in range(PRUNE_CHUNK + 3)]
        for start in range(0, len(old), 500):
            await store.insert_batch(old[start : start + 500], json.dumps)
        await store.insert_event(rec("evt_new"))
        assert await store.prune_received_before(NOW_MS - 1) == PRUNE_CHUNK
        assert await store.prune_received_before(NOW_MS - 1) == 3
        assert await store.prune_received_before(NOW_MS - 1) == 0
        result = await store.query_events()
        assert ids_of(result.bodies) == ["evt_new"] and result.total == 1

    run(scenario)


def test_destinations_round_trip(run):
    async def scenario(store: Store) -> None:
        row = {
            "id": "dst_1",
            "name": "hook",
            "type": "webhook",
            "config": json.dumps({"url": "https://x.test"}),
            "status": "active",
            "created_at": NOW_MS,
        }
        idem = Idempotency("scope", "d", "h")
        first = await store.create_destination(row, lambda r: r["id"], idem)
        assert (first.status, first.body) == (201, "dst_1")
        retry = await store.create_destination({**row, "id": "dst_2"}, lambda r: r["id"], idem)
        assert retry == first
        [stored] = await store.list_destinations()
        assert stored["config"] == {"url": "https://x.test"} and stored["id"] == "dst_1"

    run(scenario)
