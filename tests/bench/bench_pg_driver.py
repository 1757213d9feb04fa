"""Benchmark: psycopg 3 (async, with psycopg-pool) against asyncpg, for the PostgreSQL
store's workload, on a throwaway PostgreSQL started like the tests' one (tests/pg.py).

Run: .venv/bin/python tests/bench/bench_pg_driver.py [--seconds 8] [--concurrency 16]

Each driver, in turn, in this one process on one event loop:
  1. group commit: ``--concurrency`` coroutines each insert one event and wait for its
     commit; a committer takes every insert waiting and sends them as ONE statement
     (``INSERT ... SELECT FROM unnest($1::text[], ...)``, autocommitted: one round
     trip per group). Events/s and this process's CPU per event (the event loop's
     cost, which the server pays beside its HTTP work);
  2. one batch of 500 events in one statement: ms per batch (p50 of 40);
  3. the read queries: a page of 100 bodies by timestamp, and a count, over 50,000
     events: ms (p50 of 200).
Writes bench_pg_driver.json beside this file (versions, load averages before and after:
the machine is shared, so figures are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.bench._common import load_averages  # noqa: E402
from tests.pg import start_postgres  # noqa: E402

SCHEMA = """
CREATE TABLE events (
    id text PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
    timestamp bigint NOT NULL, received_at bigint NOT NULL, body text NOT NULL
);
CREATE INDEX events_by_time ON events (timestamp, id);
CREATE INDEX events_by_source_time ON events (source_id, timestamp, id);
"""
INSERT = (
    "INSERT INTO events (id, source_id, type, timestamp, received_at, body) "
    "SELECT * FROM unnest({}::text[], {}::text[], {}::text[], {}::bigint[], {}::bigint[], "
    "{}::text[])"
)
PAGE = (
    "SELECT body, timestamp FROM events WHERE source_id = {} "
    "ORDER BY timestamp DESC, id DESC LIMIT 100"
)
COUNT = "SELECT count(*) FROM events WHERE source_id = {}"
BODY = json.dumps({"type": "page_view", "properties": {"path": "/pricing", "n": 1}, "context": {}})


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def next_rows(self, k: int) -> list[tuple]:
        rows = []
        for _ in range(k):
            self.n += 1
            ts = 1_700_000_000_000 + self.n
            rows.append((f"evt_{self.n:012d}", f"src_{self.n % 10}", "page_view", ts, ts, BODY))
        return rows


def columns(rows: list[tuple]) -> list[list]:
    return [list(c) for c in zip(*rows, strict=True)]


class GroupCommitter:
    """Inserts waiting together go as one statement; each waiter resolves after commit."""

    def __init__(self, execute) -> None:
        self.execute = execute
        self.pending: list[tuple[tuple, asyncio.Future]] = []
        self.wakeup = asyncio.Event()
        self.groups = 0

    async def insert(self, row: tuple) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((row, fut))
        self.wakeup.set()
        await fut

    async def run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            group, self.pending = self.pending, []
            if not group:
                continue
            await self.execute(columns([r for r, _ in group]))
            self.groups += 1
            for _, fut in group:
                fut.set_result(None)


async def group_commit(execute, counter: Counter, concurrency: int, seconds: float) -> dict:
    committer = GroupCommitter(execute)
    task = asyncio.create_task(committer.run())
    stop = time.monotonic() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await committer.insert(counter.next_rows(1)[0])
            done += 1

    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    task.cancel()
    return {
        "events_per_s": round(done / wall),
        "events_per_group": round(done / max(committer.groups, 1), 1),
        "client_cpu_us_per_event": round(cpu / done * 1e6, 1),
    }


async def timed(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 3)


async def bench_asyncpg(url: str, counter: Counter, args) -> dict:
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
    insert = INSERT.format("$1", "$2", "$3", "$4", "$5", "$6")

    async def execute(cols) -> None:
        async with pool.acquire() as conn:
            await conn.execute(insert, *cols)

    result = {"group_commit": await group_commit(execute, counter, args.concurrency, args.seconds)}
    result["batch_500_ms"] = await timed(lambda: execute(columns(counter.next_rows(500))), 40)
    await execute(columns(counter.next_rows(50_000)))
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE events")
        page, count = PAGE.format("$1"), COUNT.format("$1")
        result["page_100_ms"] = await timed(lambda: conn.fetch(page, "src_3"), 200)
        result["count_ms"] = await timed(lambda: conn.fetchval(count, "src_3"), 200)
    await pool.close()
    return result


async def bench_psycopg(url: str, counter: Counter, args) -> dict:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(url, min_size=2, max_size=4, kwargs={"autocommit": True}, open=False)
    await pool.open()
    insert = INSERT.format(*["%s"] * 6)

    async def execute(cols) -> None:
        async with pool.connection() as conn:
            await conn.execute(insert, cols, prepare=True, binary=True)

    result = {"group_commit": await group_commit(execute, counter, args.concurrency, args.seconds)}
    result["batch_500_ms"] = await timed(lambda: execute(columns(counter.next_rows(500))), 40)
    await execute(columns(counter.next_rows(50_000)))
    async with pool.connection() as conn:
        await conn.execute("ANALYZE events")
        page, count = PAGE.format("%s"), COUNT.format("%s")

        async def fetch_page():
            cur = await conn.execute(page, ("src_3",), prepare=True)
            return await cur.fetchall()

        async def fetch_count():
            cur = await conn.execute(count, ("src_3",), prepare=True)
            return await cur.fetchone()

        result["page_100_ms"] = await timed(fetch_page, 200)
        result["count_ms"] = await timed(fetch_count, 200)
    await pool.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    server = start_postgres()
    results: dict = {}
    before = load_averages()
    try:
        for name, bench in (("asyncpg", bench_asyncpg), ("psycopg", bench_psycopg)):
            db = server.new_database()
            server.psql(SCHEMA, db=db)
            results[name] = asyncio.run(bench(server.url(db), Counter(), args))
            server.drop_database(db)
            print(name, json.dumps(results[name]), file=sys.stderr)
        server_version = server.psql("SHOW server_version").strip()
    finally:
        server.destroy()
    report = {
        "command": "python tests/bench/bench_pg_driver.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "postgresql": server_version,
            "asyncpg": version("asyncpg"),
            "psycopg": version("psycopg"),
            "psycopg-binary": version("psycopg-binary"),
            "psycopg-pool": version("psycopg-pool"),
        },
        "load_average_before": before,
        "load_average_after": load_averages(),
        "caveat": "2 cores shared with PostgreSQL and other developers' runs",
        "concurrency": args.concurrency,
        "results": results,
    }
    (HERE / "bench_pg_driver.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
