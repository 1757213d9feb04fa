"""What only the PostgreSQL store has to show: the schema and its migration lock, group
commit as one statement, the database's own dedupe and source checks across
processes (two stores on one database stand for two processes), bodies kept byte
for byte, the driver never loaded for SQLite, and PostgreSQL going away under load.

The behaviour the two stores share is tested over both by the parametrized fixtures
in conftest.py; these tests use a PostgreSQL store directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from boltic_cli.server.store import (
    EventRecord,
    Idempotency,
    IdempotencyConflict,
    SchemaTooNew,
    SourceGone,
    StoreUnavailable,
)
from tests.conftest import ADMIN_TOKEN
from tests.pg import PostgresServer
from tests.support import reap, start_server


def run(coro_fn, url: str, **options: Any) -> Any:
    """Open a PostgresStore on ``url``, await ``coro_fn(store)``, close it."""
    from boltic_cli.server.store.postgres import PostgresStore

    async def main() -> Any:
        store = PostgresStore(url, **options)
        await store.open()
        try:
            return await coro_fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def source_row(sid: str = "src_a", key: str | None = None) -> dict[str, Any]:
    return {
        "id": sid,
        "name": sid,
        "type": "server",
        "write_key": key or f"wk_{sid}",
        "status": "active",
        "created_at": 0,
    }


def record(i: int, source: str = "src_a", body: str = "{}") -> EventRecord:
    return EventRecord(f"evt_{i:08d}", source, "t", 1_700_000_000_000 + i, 1_700_000_000_000, body)


def test_schema_is_versioned_and_simultaneous_starts_migrate_once(pg_database, pg_server):
    from boltic_cli.server.store.postgres import SCHEMA_VERSION, prepare

    errors: list[BaseException] = []

    def start() -> None:
        try:
            prepare(pg_database)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = pg_database.rsplit("/", 1)[1]
    assert pg_server.psql("SELECT version FROM boltic_schema", db=db).split() == [
        str(SCHEMA_VERSION)
    ]
    pg_server.psql(f"INSERT INTO boltic_schema VALUES ({SCHEMA_VERSION + 1})", db=db)
    with pytest.raises(SchemaTooNew):
        prepare(pg_database)


def test_concurrent_inserts_go_as_one_statement_per_group(pg_database):
    async def body(store) -> tuple[int, int]:
        await store.create_source(source_row(), lambda r: "{}")
        answers = await asyncio.gather(*(store.insert_event(record(i)) for i in range(300)))
        assert {a.status for a in answers} == {202}
        return store.commits, (await store.query_events(limit=1)).total

    commits, total = run(body, pg_database)
    assert total == 300
    assert commits <= 3  # the first alone, the rest waiting behind it together


def test_unknown_source_is_refused_alone_within_its_group(pg_database):
    async def body(store) -> list[Any]:
        await store.create_source(source_row(), lambda r: "{}")
        records = [record(i, "src_a" if i % 2 else "src_gone") for i in range(10)]
        return await asyncio.gather(
            *(store.insert_event(r) for r in records), return_exceptions=True
        )

    answers = run(body, pg_database)
    assert [type(a).__name__ for a in answers] == ["SourceGone", "StoredResponse"] * 5


def test_body_is_stored_as_text_byte_for_byte(pg_database, pg_server):
    text = '{"z":1,"a":"\\u0000 nul","b":{"y":2,"x":[1.50,1e400]}}'

    async def body(store) -> list[str]:
        await store.create_source(source_row(), lambda r: "{}")
        await store.insert_event(record(1, body=text))
        return (await store.query_events()).bodies

    assert run(body, pg_database) == [text]
    db = pg_database.rsplit("/", 1)[1]
    column = (
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'events' AND column_name = 'body'"
    )
    assert pg_server.psql(column, db=db).strip() == "text"


def test_a_key_is_deduped_by_the_database_across_processes(pg_database):
    """Two stores (two pools, as two server processes would have) get one
    Idempotency-Key at once: one event stored, both answered with its id."""
    from boltic_cli.server.store.postgres import PostgresStore

    async def body() -> tuple[list[Any], int]:
        a, b = PostgresStore(pg_database), PostgresStore(pg_database)
        await a.open()
        await b.open()
        try:
            await a.create_source(source_row(), lambda r: "{}")
            idem = Idempotency("admin", "same-key", "hash-1")
            answers = await asyncio.gather(
                *(store.insert_event(record(i), idem) for i, store in enumerate([a, b, a, b, a, b]))
            )
            with pytest.raises(IdempotencyConflict):
                await b.insert_event(record(99), Idempotency("admin", "same-key", "hash-2"))
            return answers, (await b.query_events()).total
        finally:
            await a.close()
            await b.close()

    answers, total = asyncio.run(body())
    assert total == 1
    assert len({a.body for a in answers}) == 1


def test_a_deleted_source_is_refused_at_once_by_another_process(pg_database):
    """Deleted through one store, the other (which had looked the source up) is
    refused at once: its lookups (the write key, the debug route) ask the database
    (no process keeps sources), and its inserting statement checks the source too."""
    from boltic_cli.server.store.postgres import PostgresStore

    async def body() -> None:
        a, b = PostgresStore(pg_database), PostgresStore(pg_database)
        await a.open()
        await b.open()
        try:
            await a.create_source(source_row(), lambda r: "{}")
            assert (await b.source_for_key("wk_src_a")).id == "src_a"
            await b.insert_event(record(1))
            await a.delete_source("src_a")
            assert await a.source_for_key("wk_src_a") is None
            with pytest.raises(SourceGone):
                await b.insert_event(record(2))
            with pytest.raises(SourceGone):
                await b.insert_event(record(3), Idempotency("wk", "k", "h"))
            await a.create_source(source_row("src_b"), lambda r: "{}")
            assert (await b.source("src_b")).status == "active"
            await a.delete_source("src_b")  # b does not insert: its lookups see it
            assert await b.source("src_b") is None
            assert await b.source_for_key("wk_src_b") is None
            assert (await b.query_events()).total == 0
        finally:
            await a.close()
            await b.close()

    asyncio.run(body())


def test_an_inactive_source_is_refused_by_the_inserting_statement(pg_database, pg_server):
    async def body(store) -> None:
        await store.create_source(source_row(), lambda r: "{}")
        assert (await store.source("src_a")).status == "active"
        db = pg_database.rsplit("/", 1)[1]
        pg_server.psql("UPDATE sources SET status = 'inactive'", db=db)  # as another process
        with pytest.raises(SourceGone):
            await store.insert_event(record(1))
        assert (await store.source("src_a")).status == "inactive"
        assert (await store.query_events()).total == 0

    run(body, pg_database)


def test_delete_during_inserts_leaves_no_orphans_and_counts_agree(pg_database, pg_server):
    async def body(store) -> None:
        await store.create_source(source_row(), lambda r: "{}")
        await store.create_source(source_row("src_b"), lambda r: "{}")

        async def sender(offset: int) -> None:
            for i in range(60):
                sid = "src_a" if i % 2 else "src_b"
                with_key = Idempotency("admin", f"k{offset}-{i}", "h") if i % 5 == 0 else None
                with contextlib.suppress(SourceGone):
                    await store.insert_event(record(offset * 1000 + i, sid), with_key)

        async def deleter() -> None:
            await asyncio.sleep(0.02)
            await store.delete_source("src_a")

        await asyncio.gather(*(sender(n) for n in range(8)), deleter())

    run(body, pg_database, pool_size=4)
    db = pg_database.rsplit("/", 1)[1]
    assert (
        pg_server.psql("SELECT count(*) FROM events WHERE source_id = 'src_a'", db=db).strip()
        == "0"
    )
    counted = pg_server.psql("SELECT coalesce(sum(n), 0) FROM event_counts", db=db).strip()
    received = pg_server.psql("SELECT coalesce(sum(n), 0) FROM received_counts", db=db).strip()
    stored = pg_server.psql("SELECT count(*) FROM events", db=db).strip()
    assert counted == received == stored == "240"


def test_unreachable_database_is_store_unavailable(pg_database):
    from boltic_cli.server.store.postgres import PostgresStore

    url = pg_database.rsplit(":", 1)[0] + ":1/nothing"  # port 1: nothing listens

    async def body() -> None:
        store = PostgresStore(url, connect_timeout=2)
        with pytest.raises(StoreUnavailable):
            await store.open()

    asyncio.run(body())


def test_the_sqlite_path_never_imports_the_driver(tmp_path):
    code = f"""
import asyncio, sys
from pathlib import Path
from boltic_cli.server.settings import ServerSettings
from boltic_cli.server.store import open_store, prepare_store
settings = ServerSettings(Path({str(tmp_path / "x.db")!r}), "t")
prepare_store(settings)
async def main():
    store = await open_store(settings)
    await store.list_sources()
    await store.close()
asyncio.run(main())
import boltic_cli.server.app
assert "asyncpg" not in sys.modules, "asyncpg imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# PostgreSQL going away under load


@pytest.fixture
def pg_server_process(pg_database, tmp_path) -> Iterator[str]:
    """``boltic server --db postgresql://...`` in a subprocess; its API URL."""
    import os

    env = {
        **os.environ,
        "BOLTIC_DATA_DIR": str(tmp_path / "data"),
        "BOLTIC_SERVER_TOKEN": ADMIN_TOKEN,
        "BOLTIC_PG_CONNECT_TIMEOUT": "1",
    }
    process, url = start_server(pg_database, env)  # type: ignore[arg-type]
    yield url
    reap(process)


@pytest.mark.slow
def test_postgresql_restarted_under_load(
    pg_server: PostgresServer, pg_database: str, pg_server_process: str
):
    """8 senders while PostgreSQL crashes (stop -m immediate) and comes back: every
    202 is stored, the server answers 503 with Retry-After while it is down, and 202
    again within seconds after it is back, without being restarted itself."""
    url = pg_server_process
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    source = httpx.post(
        f"{url}/streams/sources", json={"name": "s", "type": "server"}, headers=auth
    )
    assert source.status_code == 201, source.text
    source_id = source.json()["id"]
    acked: list[str] = []
    refusals: list[tuple[float, int, str | None, dict]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def sender(n: int) -> None:
        with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
            i = 0
            while not stop.is_set():
                i += 1
                event = {"sourceId": source_id, "type": "load", "properties": {"n": f"{n}-{i}"}}
                try:
                    response = client.post("/streams/events", json=event)
                except httpx.TransportError:
                    continue
                with lock:
                    if response.status_code == 202:
                        acked.append(response.json()["eventId"])
                    else:
                        refusals.append(
                            (
                                time.monotonic(),
                                response.status_code,
                                response.headers.get("Retry-After"),
                                response.json(),
                            )
                        )
                if response.status_code != 202:
                    time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        with lock:
            before_crash = len(acked)
        pg_server.stop("immediate")
        time.sleep(2.0)
        with lock:
            down_refusals = len(refusals)
            acked_while_down = len(acked)
        back = time.monotonic()  # counted from the restart command: startup included
        pg_server.start()
        recovered_after = None
        while time.monotonic() - back < 15:
            with lock:
                if len(acked) > acked_while_down:
                    recovered_after = time.monotonic() - back
                    break
            time.sleep(0.02)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    print(
        f"acknowledged {len(acked)} ({before_crash} before the crash), "
        f"{down_refusals} answered 503 while down, 202 again {recovered_after!r} s "
        "after PostgreSQL was started again"
    )
    assert before_crash > 0
    assert down_refusals > 0
    assert {status for _, status, _, _ in refusals} == {503}
    assert {after for _, _, after, _ in refusals} == {"1"}
    assert all(body["code"] == 503 and body["message"] for _, _, _, body in refusals)
    assert recovered_after is not None and recovered_after < 5, recovered_after
    # Every acknowledged event is stored (the crash lost none), none twice.
    db = pg_database.rsplit("/", 1)[1]
    stored = pg_server.psql("SELECT id FROM events", db=db).split()
    assert len(stored) == len(set(stored))
    assert len(acked) == len(set(acked))
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events lost"


def test_summaries_match_brute_force(pg_database):
    """The SQLite store's brute-force check (tests/server/test_store.py), on PostgreSQL."""
    import json
    import random

    from tests.server.test_store import BASE, DAY_MS, SOURCES, TYPES, brute, make_events

    async def body(store) -> None:
        rng = random.Random(7)
        events = make_events(rng, 3000)
        for sid in SOURCES:
            await store.create_source(source_row(sid), lambda r: "{}")
        assert await store.insert_records(events) == len(events)
        edges = [None, BASE, BASE + DAY_MS, BASE - 1, BASE + 1]
        for _ in range(300):
            lo = rng.choice([*edges, BASE + rng.randrange(-2 * DAY_MS, 5 * DAY_MS)])
            hi = rng.choice([*edges, BASE + rng.randrange(-2 * DAY_MS, 5 * DAY_MS)])
            source = rng.choice([None, *SOURCES, "src_none"])
            type_ = rng.choice([None, *TYPES, "none"])
            limit = rng.choice([1, 7, 100])
            got = await store.query_events(
                source_id=source, event_type=type_, from_ms=lo, to_ms=hi, limit=limit
            )
            want = brute(events, source, type_, lo, hi)
            assert got.total == len(want), (source, type_, lo, hi)
            assert got.unique_types == len({e.type for e in want})
            if want:
                assert got.earliest == min(e.timestamp for e in want)
                assert got.latest == max(e.timestamp for e in want)
            else:
                assert got.earliest is None and got.latest is None
            newest = sorted(want, key=lambda e: (e.timestamp, e.id), reverse=True)[:limit]
            assert [json.loads(b)["id"] for b in got.bodies] == [e.id for e in newest]

    run(body, pg_database)


def test_pruning_keeps_counts_consistent(pg_database, pg_server):
    import random

    from tests.server.test_store import BASE, SOURCES, make_events

    async def body(store) -> None:
        events = make_events(random.Random(3), 12_000)
        for sid in SOURCES:
            await store.create_source(source_row(sid), lambda r: "{}")
        await store.insert_records(events)
        cutoff = BASE + 5 * DAY_MS + 7000  # received_at is BASE + 5 days + i
        deleted = []
        while (n := await store.prune_received_before(cutoff)) > 0:
            deleted.append(n)
        assert deleted[0] == PRUNE_CHUNK and sum(deleted) == 7000
        for sid in SOURCES:
            got = await store.query_events(source_id=sid, limit=1)
            assert got.total == sum(1 for e in events[7000:] if e.source_id == sid)

    from boltic_cli.server.store import DAY_MS, PRUNE_CHUNK

    run(body, pg_database)
    db = pg_database.rsplit("/", 1)[1]
    assert pg_server.psql("SELECT count(*) FROM event_counts WHERE n <= 0", db=db).strip() == "0"
    assert pg_server.psql("SELECT sum(n) FROM received_counts", db=db).strip() == "5000"


@pytest.mark.parametrize(
    ("types", "path"),
    [
        (["page_view", "signup", "a,b", ""], "joined"),
        (["page\x1fview", "signup", "x", "y"], "arrays"),  # a value holds the separator
        ([""], "arrays"),  # one empty value: string_to_array('') is no value at all
    ],
)
def test_every_value_is_stored_as_sent_on_either_insert_path(pg_database, types, path):
    """INSERT_EVENTS_JOINED sends columns as separator-joined strings; a value holding
    the separator, or a lone empty string, goes by INSERT_EVENTS' arrays instead. Either
    way each row holds exactly what was sent."""
    from boltic_cli.server.store.postgres import store as pg_store

    records = [
        EventRecord(
            f"evt_{i:026d}",
            "src_a",
            t,
            -5 + i if i % 2 else 1_780_000_000_000 + i,
            1_780_000_000_123,
            f'{{"n":{i},"s":"\\u001f,é"}}',
        )
        for i, t in enumerate(types)
    ]
    assert (pg_store._joined(records) is not None) == (path == "joined")

    async def body(store) -> list[tuple]:
        await store.create_source(source_row(), lambda r: "{}")
        stored = await store.insert_records(records)
        assert stored == len(records)
        return await store._call(
            lambda conn: conn.fetch(
                "SELECT id, source_id, type, timestamp, received_at, body FROM events ORDER BY id"
            )
        )

    rows = [tuple(r) for r in run(body, pg_database)]
    assert rows == [
        (r.id, r.source_id, r.type, r.timestamp, r.received_at, r.body) for r in records
    ]
