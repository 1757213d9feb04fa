"""PostgreSQL schema migration 3 (the sources trigger dropped: events and deliveries
keep their layout) keeps every row and count; and the experimental day partitions that
bench_pg_retention.py measures (tests/bench/_pg_partitions.py, not used by the server)
drop whole days with their counts and deliveries, so the benchmark measures a correct
retention.

Counters are checked against a brute-force count of the events (``assert_counts``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

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
    from tests.bench import _pg_partitions

    return await _pg_partitions.days(conn)


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


def test_migration_3_drops_the_sources_trigger_and_keeps_rows_and_counts(pg_database):
    from boltic_cli.server.store.postgres import SCHEMA_VERSION
    from boltic_cli.server.store.postgres.schema import migrate

    rng = random.Random(1)
    recent = events_over(range(today() - 6, today() + 1), 40, rng)
    ancient = events_over(range(11_000, 11_002), 5, rng, prefix="old")  # in 2000

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

            triggers = "SELECT count(*) FROM pg_trigger WHERE tgname = 'sources_changed'"
            assert await conn.fetchval(triggers) == 1

            assert await migrate(conn) == SCHEMA_VERSION == 3
            for table, rows in before.items():
                assert await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3") == rows, table
            assert await conn.fetchval("SELECT count(*) FROM delivery_attempts") == 3
            # The triggers on events are kept: an insert is counted and gets a delivery.
            await conn.execute(
                "INSERT INTO events VALUES ('evt_new', 'src_a', 'signup', $1, $1, '{}')",
                now_ms(),
            )
            assert (
                await conn.fetchval("SELECT count(*) FROM deliveries WHERE event_id = 'evt_new'")
                == 1
            )
            await assert_counts(conn)
            # The sources trigger and its function are gone (no process listens any more);
            # a source can still change.
            assert await conn.fetchval(triggers) == 0
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_proc WHERE proname = 'boltic_source_changed'"
                )
                == 0
            )
            await conn.execute("UPDATE sources SET status = 'paused' WHERE id = 'src_b'")
            # Events stay one plain table.
            assert (
                await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'events'") == b"r"
            )
        finally:
            await conn.close()

    asyncio.run(main())


def test_bench_day_partitions_drop_days_leaving_counts_equal_to_brute_force(pg_database):
    """The code bench_pg_retention.py measures: days made ahead, whole days dropped with
    their deliveries and attempts, the day at the cutoff deleted by rows."""
    from boltic_cli.server.store.postgres.schema import migrate
    from tests.bench import _pg_partitions

    rng = random.Random(2)
    first = today() - 9
    records = events_over(range(first, today() + 1), 60, rng)

    async def main() -> None:
        conn = await connect(pg_database)
        store = None
        try:
            await migrate(conn)
            await _pg_partitions.partition(conn)  # today and 3 days ahead (no rows yet)
            store = await open_store(pg_database)
            await with_sources_and_webhook(store)
            assert await _pg_partitions.add_days(conn, first, today() + 3) == 9
            assert await partition_days(conn) == list(range(first, today() + 4))
            assert await store.insert_records(records) == len(records)
            await conn.execute(
                "INSERT INTO delivery_attempts (delivery_id, n, at, outcome, duration_ms) "
                "SELECT id, 1, 0, 'transient', 5 FROM deliveries"
            )
            await assert_counts(conn)

            cutoff = (today() - 4) * DAY_MS + DAY_MS // 3  # 5 whole days and a third
            pruned = 0
            while (n := await _pg_partitions.prune_received_before(conn, cutoff)) > 0:
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
            if store is not None:
                await store.close()

    asyncio.run(main())
