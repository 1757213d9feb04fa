"""PostgreSQL's day partitions (schema 3, store/postgres/partitions.py): the migration
from schema 2 keeps every row and count, maintenance makes days ahead and moves rows
out of the default partition, retention drops whole days with their counts and
deliveries and deletes the rest by rows (the default partition included), and two
processes maintaining at once do not get in each other's way.

Counters are checked against a brute-force count of the events (``assert_counts``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest

from boltic_cli.server.store import DAY_MS, EventRecord
from tests.server.test_postgres import source_row

SOURCES = ("src_a", "src_b", "src_c")
TYPES = ("page_view", "signup", "click")


def now_ms() -> int:
    return int(time.time() * 1000)


def today() -> int:
    return now_ms() // DAY_MS


def events_over(days: range, per_day: int, rng: random.Random, prefix: str = "e") -> list:
    """``per_day`` events received in each UTC day of ``days``, each with a timestamp up
    to two days before it (so counts by timestamp day differ from those by received day)."""
    records = []
    for day in days:
        for i in range(per_day):
            received = day * DAY_MS + rng.randrange(DAY_MS)
            records.append(
                EventRecord(
                    f"evt_{prefix}{day}_{i:05d}",
                    rng.choice(SOURCES),
                    rng.choice(TYPES),
                    received - rng.randrange(2 * DAY_MS),
                    received,
                    json.dumps({"n": i}),
                )
            )
    return records


async def connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url)


async def assert_counts(conn: Any) -> None:
    """event_counts and received_counts hold exactly what counting the events gives."""
    by_type = await conn.fetchval(
        "SELECT count(*) FROM (SELECT source_id, type, boltic_day(timestamp) AS day, "
        "count(*) AS n FROM events GROUP BY 1, 2, 3) b FULL JOIN "
        "(SELECT * FROM event_counts WHERE n <> 0) c USING (source_id, type, day) "
        "WHERE b.n IS DISTINCT FROM c.n"
    )
    by_received = await conn.fetchval(
        "SELECT count(*) FROM (SELECT source_id, boltic_day(received_at) AS day, "
        "count(*) AS n FROM events GROUP BY 1, 2) b FULL JOIN "
        "(SELECT * FROM received_counts WHERE n <> 0) c USING (source_id, day) "
        "WHERE b.n IS DISTINCT FROM c.n"
    )
    assert (by_type, by_received) == (0, 0)


async def partition_days(conn: Any) -> list[int]:
    from boltic_cli.server.store.postgres import partitions

    return await partitions.days(conn)


async def open_store(url: str, clock=time.time) -> Any:
    from boltic_cli.server.store.postgres import PostgresStore

    store = PostgresStore(url, clock=clock)
    await store.open()
    return store


async def with_sources_and_webhook(store: Any) -> None:
    for sid in SOURCES:
        await store.create_source(source_row(sid), lambda r: "{}")
    destination = {
        "id": "dst_hook",
        "name": "hook",
        "type": "webhook",
        "config": json.dumps({"url": "http://127.0.0.1:9/hook"}),
        "status": "active",
        "created_at": 0,
    }
    await store.create_destination(destination, lambda r: "{}")


def test_migration_from_schema_2_keeps_rows_and_counts(pg_database):
    from boltic_cli.server.store.postgres import SCHEMA_VERSION
    from boltic_cli.server.store.postgres.schema import migrate

    rng = random.Random(1)
    recent = events_over(range(today() - 6, today() + 1), 40, rng)
    ancient = events_over(range(11_000, 11_002), 5, rng, prefix="old")  # 2000: no partition

    async def main() -> None:
        conn = await connect(pg_database)
        try:
            assert await migrate(conn, target=2) == 2
            for sid in SOURCES:
                await conn.execute(
                    "INSERT INTO sources VALUES ($1, $1, 'server', 'wk_' || $1, 'active', 0)", sid
                )
            await conn.execute(
                "INSERT INTO destinations (id, name, type, config, status, created_at) "
                "VALUES ('dst_hook', 'hook', 'webhook', '{\"url\": \"http://x/\"}', 'active', 0)"
            )
            await conn.copy_records_to_table(
                "events",
                records=[
                    (r.id, r.source_id, r.type, r.timestamp, r.received_at, r.body)
                    for r in recent + ancient
                ],
                columns=["id", "source_id", "type", "timestamp", "received_at", "body"],
            )
            await conn.execute(
                "INSERT INTO delivery_attempts (delivery_id, n, at, outcome, duration_ms) "
                "SELECT id, 1, 0, 'transient', 5 FROM deliveries ORDER BY id LIMIT 3"
            )
            before = {
                table: await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
                for table in ("events", "deliveries", "event_counts", "received_counts")
            }
            assert len(before["events"]) == len(before["deliveries"]) == 290

            assert await migrate(conn) == SCHEMA_VERSION == 3
            for table, rows in before.items():
                assert await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3") == rows, table
            assert await conn.fetchval("SELECT count(*) FROM delivery_attempts") == 3
            assert await conn.fetchval("SELECT count(*) FROM events_default") == 10
            assert await conn.fetchval("SELECT count(*) FROM deliveries_default") == 10
            days = await partition_days(conn)
            assert days == list(range(today() - 6, today() + 4))  # rows' days, 3 ahead
            for day in days:  # each event in its day's partition, each delivery too
                suffix = time.strftime("%Y%m%d", time.gmtime(day * 86400))
                assert (
                    await conn.fetchval(
                        f"SELECT count(*) FROM events_{suffix} WHERE received_at / $1 <> $2",
                        DAY_MS,
                        day,
                    )
                    == 0
                )
                assert await conn.fetchval(
                    f"SELECT count(*) FROM events_{suffix}"
                ) == await conn.fetchval(f"SELECT count(*) FROM deliveries_{suffix}")
            # The triggers are on the new tables: an insert is counted and gets a delivery.
            await conn.execute(
                "INSERT INTO events VALUES ('evt_new', 'src_a', 'signup', $1, $1, '{}')",
                now_ms(),
            )
            assert (
                await conn.fetchval("SELECT count(*) FROM deliveries WHERE event_id = 'evt_new'")
                == 1
            )
            await assert_counts(conn)
            # The sources trigger is gone (no process listens any more).
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_trigger WHERE tgname = 'sources_changed'"
                )
                == 0
            )
        finally:
            await conn.close()

    asyncio.run(main())


def test_dropping_old_days_leaves_counts_equal_to_brute_force(pg_database):
    clock = [time.time()]
    rng = random.Random(2)
    first = today() - 9
    records = events_over(range(first, today() + 1), 60, rng)

    async def main() -> None:
        store = await open_store(pg_database, clock=lambda: clock[0])
        conn = await connect(pg_database)
        try:
            await with_sources_and_webhook(store)
            for day in range(first, today() + 1, 4):  # each run makes its day and 3 ahead
                clock[0] = day * 86400 + 60
                await store.prepare_days()
            clock[0] = time.time()
            assert await partition_days(conn) == list(range(first, today() + 4))
            assert await store.insert_records(records) == len(records)
            await conn.execute(
                "INSERT INTO delivery_attempts (delivery_id, n, at, outcome, duration_ms) "
                "SELECT id, 1, 0, 'transient', 5 FROM deliveries"
            )
            await assert_counts(conn)

            cutoff = (today() - 4) * DAY_MS + DAY_MS // 3  # 5 whole days and a third
            pruned = 0
            while (n := await store.prune_received_before(cutoff)) > 0:
                pruned += n
            assert pruned == sum(1 for r in records if r.received_at < cutoff)
            assert await partition_days(conn) == list(range(today() - 4, today() + 4))
            assert (
                await conn.fetchval("SELECT count(*) FROM events WHERE received_at < $1", cutoff)
                == 0
            )
            left = await conn.fetchval("SELECT count(*) FROM events")
            assert left == len(records) - pruned
            assert await conn.fetchval("SELECT count(*) FROM deliveries") == left
            assert await conn.fetchval("SELECT count(*) FROM delivery_attempts") == left
            await assert_counts(conn)
            assert await conn.fetchval("SELECT count(*) FROM event_counts WHERE n <= 0") == 0
            # What the API answers agrees.
            total = await store.query_events(limit=1)
            assert total.total == left
        finally:
            await conn.close()
            await store.close()

    asyncio.run(main())


def test_events_in_the_default_partition_are_pruned_and_moved_to_their_day(pg_database):
    rng = random.Random(3)
    old_day = 12_000  # 2002-11-08: no partition, so the default one
    later_day = 12_010
    records = events_over(range(old_day, old_day + 1), 30, rng) + events_over(
        range(later_day, later_day + 1), 20, rng
    )

    async def main() -> None:
        store = await open_store(pg_database)
        conn = await connect(pg_database)
        try:
            await with_sources_and_webhook(store)
            await store.insert_records(records)
            assert await conn.fetchval("SELECT count(*) FROM events_default") == 50
            assert await conn.fetchval("SELECT count(*) FROM deliveries_default") == 50
            pruned = 0
            while (n := await store.prune_received_before((old_day + 1) * DAY_MS)) > 0:
                pruned += n
            assert pruned == 30
            assert await conn.fetchval("SELECT count(*) FROM events_default") == 20
            assert await conn.fetchval("SELECT count(*) FROM deliveries") == 20
            await assert_counts(conn)
            # A day made later takes its rows out of the default partition, counts unchanged.
            store.clock = lambda: later_day * 86400.0
            assert await store.prepare_days() == 4
            assert await conn.fetchval("SELECT count(*) FROM events_default") == 0
            assert await conn.fetchval("SELECT count(*) FROM deliveries_default") == 0
            suffix = time.strftime("%Y%m%d", time.gmtime(later_day * 86400))
            assert await conn.fetchval(f"SELECT count(*) FROM events_{suffix}") == 20
            assert await conn.fetchval(f"SELECT count(*) FROM deliveries_{suffix}") == 20
            await assert_counts(conn)
        finally:
            await conn.close()
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("rounds", [3])
def test_two_maintenance_runs_at_once_do_not_fail(pg_database, rounds):
    rng = random.Random(4)
    first = today() - 8
    records = events_over(range(first, today() + 1), 30, rng)

    async def main() -> None:
        clock = [time.time()]
        a = await open_store(pg_database, clock=lambda: clock[0])
        b = await open_store(pg_database, clock=lambda: clock[0])
        conn = await connect(pg_database)
        try:
            await with_sources_and_webhook(a)
            for day in range(first, today() + 1):
                clock[0] = day * 86400 + 1
                await asyncio.gather(a.prepare_days(), b.prepare_days())
            clock[0] = time.time()
            await a.insert_records(records)
            for k in range(rounds):
                cutoff = (first + 2 * k + 1) * DAY_MS + DAY_MS // 2

                async def maintain(store: Any, cutoff: int = cutoff) -> None:
                    await store.prepare_days()
                    while await store.prune_received_before(cutoff) > 0:
                        pass

                fresh = events_over(range(today(), today() + 1), 5, rng, prefix=f"new{k}_")
                await asyncio.gather(maintain(a), maintain(b), b.insert_records(fresh))
                assert (
                    await conn.fetchval(
                        "SELECT count(*) FROM events WHERE received_at < $1", cutoff
                    )
                    == 0
                )
                await assert_counts(conn)
            assert (await partition_days(conn))[0] == first + 2 * (rounds - 1) + 1
        finally:
            await conn.close()
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_drop_waiting_for_a_long_read_gives_up_and_ingest_goes_on(pg_database):
    """DROP needs ACCESS EXCLUSIVE on events: behind a transaction that has read events
    it waits at most the lock timeout, then leaves the day for the next run; an insert
    queued behind it meanwhile is stored."""
    clock = [time.time()]
    rng = random.Random(5)
    old = today() - 5
    records = events_over(range(old, old + 1), 20, rng)

    async def main() -> None:
        store = await open_store(pg_database, clock=lambda: clock[0])
        reader = await connect(pg_database)
        conn = await connect(pg_database)
        try:
            await with_sources_and_webhook(store)
            clock[0] = old * 86400 + 1
            await store.prepare_days()
            clock[0] = time.time()
            await store.insert_records(records)
            reading = reader.transaction()
            await reading.start()
            assert await reader.fetchval("SELECT count(*) FROM events") == 20
            fresh = events_over(range(today(), today() + 1), 1, rng, prefix="late")

            async def insert_soon() -> int:
                await asyncio.sleep(0.1)  # behind the DROP's lock request
                return await store.insert_records(fresh)

            pruned, inserted = await asyncio.gather(
                store.prune_received_before((old + 2) * DAY_MS), insert_soon()
            )
            assert (pruned, inserted) == (0, 1)
            assert old in await partition_days(conn)  # left for the next run
            assert reader.is_in_transaction()  # the prune did not wait for the reader
            await reading.rollback()
            assert await store.prune_received_before((old + 2) * DAY_MS) == 20
            assert old not in await partition_days(conn)
            await assert_counts(conn)
        finally:
            await reader.close()
            await conn.close()
            await store.close()

    asyncio.run(main())
