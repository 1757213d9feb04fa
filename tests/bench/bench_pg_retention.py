"""Benchmark: retention on PostgreSQL, deleting rows (the store's schema) against
dropping day partitions (the experimental layout of tests/bench/_pg_partitions.py, not
used by the server), on the same data in the same run.

Run: .venv/bin/python tests/bench/bench_pg_retention.py [--events 1000000]
     [--prune-days 7] [--writers 2]

On a throwaway PostgreSQL (tests/pg.py; fsync and synchronous_commit at their
defaults): N events over 30 days (10 sources, 20 types; built by
bench_server.build_database), loaded with COPY into a database at the store's schema
(SCHEMA_VERSION, made by the package's migrate) while one active webhook destination
exists, so the outbox trigger gives every event its delivery (N deliveries). That
database is cloned (CREATE DATABASE ... TEMPLATE) and the clone converted to day
partitions (_pg_partitions.PARTITION; timed: what an upgrade would cost). Then, on
each, retention with the cutoff ``now - (30 - prune-days) days`` (the oldest
~prune-days of events and their deliveries):

  rows        the store's chunked DELETE (PRUNE_V2 below, the statement of
              PostgresStore.prune_received_before, in its transactions of
              PRUNE_CHUNK rows, with the store's session settings) until a chunk
              comes back short;
  rows_indexed  the same with its per-source scan ordered by received_at
              (PRUNE_V2_INDEXED): deleting rows when the planner uses the index;
  partitions  _pg_partitions.prune_received_before on the partitioned clone (with
              the store's session settings) until short: whole days dropped (counts
              subtracted in the same transaction), the partial day at the cutoff
              deleted by rows.

Each records wall time, WAL bytes written (pg_current_wal_lsn before/after), the
size of events and deliveries (tables + indexes, every partition) before, after, and
after a VACUUM of both (with the VACUUM's own time and WAL), and the latency of
single-event inserts made meanwhile by ``--writers`` tasks, each inserting one event
per statement back to back (the store's INSERT_EVENTS statement, autocommitted, on a
connection of its own): before the prune (baseline) and during it. Afterwards the
counters are checked against a brute-force count on both. Before the prunes, the p50
of the store's four read shapes (as bench_postgres.py measures them) on each schema;
after them, the steady state: the cutoff moved on by one more day in hourly steps.

Writes bench_pg_retention.json beside this file, with the machine and load averages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from boltic_cli.server.store.base import DAY_MS, PRUNE_CHUNK  # noqa: E402
from tests.bench import _pg_partitions, bench_server  # noqa: E402
from tests.bench._common import load_averages, machine  # noqa: E402
from tests.pg import PostgresServer, start_postgres  # noqa: E402

# The store's retention statement (store.py PRUNE), run in the same transaction as the
# counters' cleanup, as prune_received_before does.
PRUNE_V2 = """
DELETE FROM events WHERE ctid = ANY(ARRAY(
    SELECT e.ctid FROM sources s CROSS JOIN LATERAL (
        SELECT ctid FROM events WHERE source_id = s.id AND received_at < $1 LIMIT $2
    ) e LIMIT $2
))
"""
# The same with the per-source scan ordered by received_at, which keeps a generic plan
# (the store sets plan_cache_mode=force_generic_plan) on events_by_source_received
# whatever the cost settings: with PostgreSQL's default random_page_cost (4; the store
# sets 1.1) PRUNE_V2's generic plan scanned the table once per source, past every row
# already deleted (a first version of this script, on plain connections, measured
# 52-72 s for the catch-up instead of ~3.5 s).
PRUNE_V2_INDEXED = """
DELETE FROM events WHERE ctid = ANY(ARRAY(
    SELECT e.ctid FROM sources s CROSS JOIN LATERAL (
        SELECT ctid FROM events WHERE source_id = s.id AND received_at < $1
        ORDER BY received_at LIMIT $2
    ) e LIMIT $2
))
"""
# The pool's session settings of PostgresStore.open (the row deletes run as the
# store runs them).
STORE_SETTINGS = {"plan_cache_mode": "force_generic_plan", "random_page_cost": "1.1"}
DESTINATION = (
    "dst_bench",
    "bench webhook",
    "webhook",
    json.dumps({"url": "http://127.0.0.1:9/hook"}),
    "active",
    0,
)
# Tables and indexes, every partition (pg_partition_tree has no row for a plain table).
SIZE = """
SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree($1::regclass)),
                pg_total_relation_size($1::regclass))::bigint
"""


async def load(sqlite_db: Path, url: str) -> float:
    """The store's schema, the destination, then sources and events by COPY (the
    triggers write counters and deliveries); seconds taken."""
    import asyncpg

    from boltic_cli.server.store.postgres.schema import migrate

    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO destinations (id, name, type, config, status, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            *DESTINATION,
        )
        src = sqlite3.connect(sqlite_db)
        sources = src.execute(
            "SELECT id, name, type, write_key, status, created_at FROM sources"
        ).fetchall()
        await conn.copy_records_to_table("sources", records=sources)
        cursor = src.execute("SELECT id, source_id, type, timestamp, received_at, body FROM events")
        columns = ["id", "source_id", "type", "timestamp", "received_at", "body"]
        while rows := cursor.fetchmany(50_000):
            await conn.copy_records_to_table("events", records=rows, columns=columns)
        src.close()
    finally:
        await conn.close()
    return time.perf_counter() - started


async def convert_to_partitions(url: str) -> float:
    """_pg_partitions.PARTITION on the clone; seconds taken."""
    import asyncpg

    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await _pg_partitions.partition(conn)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def sizes(conn) -> dict:
    return {
        "events_bytes": await conn.fetchval(SIZE, "events"),
        "deliveries_bytes": await conn.fetchval(SIZE, "deliveries"),
    }


async def wal_lsn(conn) -> str:
    return await conn.fetchval("SELECT pg_current_wal_lsn()::text")


async def wal_since(conn, lsn: str) -> int:
    diff = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)"
    return int(await conn.fetchval(diff, lsn))


class Writers:
    """``n`` tasks inserting one event per statement, back to back, each on its own
    connection; ``latencies`` in ms since the last ``mark()``."""

    def __init__(self, url: str, n: int, source_id: str) -> None:
        self.url = url
        self.n = n
        self.source_id = source_id
        self.latencies: list[float] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._seq = 0

    async def start(self) -> None:
        import asyncpg

        self._conns = [await asyncpg.connect(self.url) for _ in range(self.n)]
        self._tasks = [asyncio.create_task(self._run(c)) for c in self._conns]

    def mark(self) -> None:
        self.latencies = []

    async def _run(self, conn) -> None:
        from boltic_cli.server.store.postgres.store import INSERT_EVENTS

        while not self._stop.is_set():
            self._seq += 1
            now = int(time.time() * 1000)
            event_id = f"evt_writer{self._seq:020d}"
            started = time.perf_counter()
            await conn.fetch(
                INSERT_EVENTS,
                [event_id],
                [self.source_id],
                ["page_view"],
                [now],
                [now],
                ['{"type":"page_view"}'],
            )
            self.latencies.append((time.perf_counter() - started) * 1000)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for conn in self._conns:
            await conn.close()


def summary(latencies: list[float]) -> dict:
    if not latencies:
        return {"inserts": 0}
    ordered = sorted(latencies)
    return {
        "inserts": len(ordered),
        "p50_ms": round(ordered[len(ordered) // 2], 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


async def rows_pruner(url: str, statement: str = PRUNE_V2):
    """Schema 2's retention: chunks of ``statement`` until one comes back short, each in
    a transaction with the counters' cleanup, with the store's session settings.
    Returns (prune(cutoff) -> each call's seconds, close())."""
    import asyncpg

    conn = await asyncpg.connect(url, server_settings=STORE_SETTINGS)

    async def prune(cutoff: int) -> list[float]:
        calls = []
        while True:
            started = time.perf_counter()
            async with conn.transaction():
                status = await conn.execute(statement, cutoff, PRUNE_CHUNK)
                await conn.execute("DELETE FROM event_counts WHERE n <= 0")
                await conn.execute("DELETE FROM received_counts WHERE n <= 0")
            calls.append(time.perf_counter() - started)
            if int(status.rsplit(" ", 1)[1]) < PRUNE_CHUNK:
                return calls

    return prune, conn.close


async def rows_indexed_pruner(url: str):
    return await rows_pruner(url, PRUNE_V2_INDEXED)


PRUNERS = {
    "rows": rows_pruner,
    "rows_indexed": rows_indexed_pruner,
    "partitions": None,  # set below
}


async def partitions_pruner(url: str):
    """The partitioned clone's retention (_pg_partitions.prune_received_before, as the
    store ran it on branch ``partitions``) on a connection with the store's session
    settings. Returns (prune(cutoff), close())."""
    import asyncpg

    conn = await asyncpg.connect(url, server_settings=STORE_SETTINGS)

    async def prune(cutoff: int) -> list[float]:
        calls = []
        while True:
            started = time.perf_counter()
            n = await _pg_partitions.prune_received_before(conn, cutoff)
            calls.append(time.perf_counter() - started)
            if n < PRUNE_CHUNK:
                return calls

    return prune, conn.close


PRUNERS["partitions"] = partitions_pruner


async def query_latencies(url: str, now_ms: int) -> dict:
    """The p50 (ms) of each query shape of bench_postgres.store_latencies as a store call
    on this database (the store's reads are the same on either layout), before any
    prune: what the partitions cost or save the reads."""
    from boltic_cli.server.store.postgres import PostgresStore

    week_ago = now_ms - 7 * DAY_MS
    source, type_ = "src_bench03", "type_05"
    calls = {
        "source_type_7d": lambda s: s.query_events(
            source_id=source, event_type=type_, from_ms=week_ago, to_ms=now_ms + 60_000
        ),
        "source_only": lambda s: s.query_events(source_id=source),
        "no_filter": lambda s: s.query_events(),
        "debug_read": lambda s: s.debug_events(source, 50),
    }
    store = PostgresStore(url)
    await store.open()
    out = {}
    try:
        for name, call in calls.items():
            for _ in range(20):
                await call(store)
            times = []
            for _ in range(200):
                started = time.perf_counter()
                await call(store)
                times.append(time.perf_counter() - started)
            out[name] = round(sorted(times)[100] * 1000, 3)
    finally:
        await store.close()
    return out


async def check(conn, cutoff: int) -> dict:
    """Counters against brute force, and nothing left before the cutoff."""
    events = await conn.fetchval("SELECT count(*) FROM events")
    return {
        "events_left": events,
        "deliveries_left": await conn.fetchval("SELECT count(*) FROM deliveries"),
        "events_before_cutoff": await conn.fetchval(
            "SELECT count(*) FROM events WHERE received_at < $1", cutoff
        ),
        "deliveries_before_cutoff": await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE created_at < $1", cutoff
        ),
        "received_counts_match": await conn.fetchval("SELECT sum(n) FROM received_counts")
        == events,
        "event_counts_match": await conn.fetchval(
            "SELECT count(*) = 0 FROM (SELECT source_id, type, boltic_day(timestamp) AS day, "
            "count(*) AS n FROM events GROUP BY 1, 2, 3) b FULL JOIN "
            "(SELECT * FROM event_counts WHERE n > 0) c USING (source_id, type, day) "
            "WHERE b.n IS DISTINCT FROM c.n"
        ),
    }


# Steady state: the cutoff moved on by one day in hourly steps (maintenance runs every
# minute in a server; hours keep the run short), as retention does day after day.
STEADY_STEPS = 24
STEADY_STEP_MS = DAY_MS // STEADY_STEPS


async def steady_state(conn, url: str, how: str, cutoff: int) -> dict:
    """After the catch-up prune: the cutoff advanced one day in STEADY_STEPS steps, each
    pruned to the end (no concurrent writers); seconds, WAL, events removed. With
    partitions, the day at the cutoff is deleted by rows as the cutoff passes through
    it and its (by then almost empty) partition dropped at the day's end."""
    before = await conn.fetchval("SELECT count(*) FROM events")
    prune, close = await PRUNERS[how](url)
    await conn.execute("CHECKPOINT")
    lsn = await wal_lsn(conn)
    started = time.perf_counter()
    try:
        for step in range(1, STEADY_STEPS + 1):
            await prune(cutoff + step * STEADY_STEP_MS)
    finally:
        await close()
    seconds = time.perf_counter() - started
    return {
        "steps": STEADY_STEPS,
        "events_removed": before - await conn.fetchval("SELECT count(*) FROM events"),
        "seconds": round(seconds, 2),
        "wal_bytes": await wal_since(conn, lsn),
    }


async def measure(url: str, how: str, cutoff: int, writers: int, baseline_s: float) -> dict:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        to_prune = await conn.fetchval("SELECT count(*) FROM events WHERE received_at < $1", cutoff)
        deliveries_to_prune = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE created_at < $1", cutoff
        )
        before = await sizes(conn)
        source_id = await conn.fetchval("SELECT min(id) FROM sources")
        await conn.execute("CHECKPOINT")
        w = Writers(url, writers, source_id)
        await w.start()
        await asyncio.sleep(baseline_s)
        baseline = summary(w.latencies)
        w.mark()
        prune, close = await PRUNERS[how](url)
        lsn = await wal_lsn(conn)
        started = time.perf_counter()
        calls = await prune(cutoff)
        seconds = time.perf_counter() - started
        await close()
        during = summary(w.latencies)
        await w.stop()
        wal = await wal_since(conn, lsn)
        after = await sizes(conn)
        lsn = await wal_lsn(conn)
        vacuum_started = time.perf_counter()
        await conn.execute("VACUUM events, deliveries, delivery_attempts")
        vacuum_s = time.perf_counter() - vacuum_started
        vacuum_wal = await wal_since(conn, lsn)
        after_vacuum = await sizes(conn)
        steady = await steady_state(conn, url, how, cutoff)
        return {
            "events_before_cutoff": to_prune,
            "deliveries_before_cutoff": deliveries_to_prune,
            "prune_seconds": round(seconds, 2),
            "prune_calls": len(calls),
            "longest_call_seconds": round(max(calls), 3),
            "wal_bytes": wal,
            "wal_bytes_note": f"includes the {during['inserts']} concurrent inserts",
            "size_before": before,
            "size_after": after,
            "vacuum_seconds": round(vacuum_s, 2),
            "vacuum_wal_bytes": vacuum_wal,
            "size_after_vacuum": after_vacuum,
            "insert_latency_before_prune": baseline,
            "insert_latency_during_prune": during,
            "steady_state": steady,
            "check": await check(conn, cutoff + STEADY_STEPS * STEADY_STEP_MS),
        }
    finally:
        await conn.close()


def clone(pg: PostgresServer, template: str, name: str) -> str:
    pg.psql(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


async def vacuum_analyze(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--prune-days", type=int, default=7)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=HERE / "bench_pg_retention.json")
    args = parser.parse_args()
    report: dict = {
        "command": "python tests/bench/bench_pg_retention.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": load_averages(),
        "caveat": "2 cores shared by PostgreSQL, this script and other developers' runs",
    }
    pg = start_postgres()
    try:
        report["machine"] = machine(
            postgresql=pg.psql("SHOW server_version").strip(),
            postgresql_fsync=pg.psql("SHOW fsync").strip(),
            postgresql_synchronous_commit=pg.psql("SHOW synchronous_commit").strip(),
        )
        with tempfile.TemporaryDirectory(prefix="bench-pg-retention-") as tmp:
            now = datetime.now(UTC)
            sqlite_db = Path(tmp) / "events.db"
            _, _, build_s = bench_server.build_database(sqlite_db, args.events, now)
            rows_db = pg.new_database()
            load_s = asyncio.run(load(sqlite_db, pg.url(rows_db)))
            indexed_db = clone(pg, rows_db, f"{rows_db}_indexed")
            parts_db = clone(pg, rows_db, f"{rows_db}_parts")
            partition_s = asyncio.run(convert_to_partitions(pg.url(parts_db)))
            for db in (rows_db, indexed_db, parts_db):
                asyncio.run(vacuum_analyze(pg.url(db)))
            now_ms = int(now.timestamp() * 1000)
            cutoff = now_ms - (bench_server.DAYS - args.prune_days) * DAY_MS
            report["data"] = {
                "events": args.events,
                "days": bench_server.DAYS,
                "deliveries": "one per event (one active webhook destination)",
                "sqlite_build_seconds": round(build_s, 1),
                "copy_seconds": round(load_s, 1),
                "conversion_to_partitions_seconds": round(partition_s, 1),
                "cutoff": f"now - {bench_server.DAYS - args.prune_days} days",
                "writers": args.writers,
            }
            report["query_p50_ms_before_prune"] = {
                "store_schema": asyncio.run(query_latencies(pg.url(rows_db), now_ms)),
                "day_partitions": asyncio.run(query_latencies(pg.url(parts_db), now_ms)),
            }
            print(json.dumps(report["query_p50_ms_before_prune"]), file=sys.stderr)
            for how, db in (
                ("rows", rows_db),
                ("rows_indexed", indexed_db),
                ("partitions", parts_db),
            ):
                report[how] = asyncio.run(
                    measure(pg.url(db), how, cutoff, args.writers, args.baseline_seconds)
                )
                print(json.dumps(report[how], indent=2), file=sys.stderr)
    finally:
        pg.destroy()
    parts = report["partitions"]
    for how in ("rows", "rows_indexed"):
        rows = report[how]
        report[f"ratios_{how}_to_partitions"] = {
            "prune_seconds": round(rows["prune_seconds"] / max(parts["prune_seconds"], 1e-6), 1),
            "wal_bytes": round(rows["wal_bytes"] / max(parts["wal_bytes"], 1), 1),
            "wal_bytes_with_vacuum": round(
                (rows["wal_bytes"] + rows["vacuum_wal_bytes"])
                / max(parts["wal_bytes"] + parts["vacuum_wal_bytes"], 1),
                1,
            ),
            "steady_state_seconds": round(
                rows["steady_state"]["seconds"] / max(parts["steady_state"]["seconds"], 1e-6), 1
            ),
            "steady_state_wal_bytes": round(
                rows["steady_state"]["wal_bytes"] / max(parts["steady_state"]["wal_bytes"], 1), 2
            ),
        }
    report["load_average_after"] = load_averages()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
