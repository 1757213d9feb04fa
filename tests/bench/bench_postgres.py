"""Benchmark: `boltic server` on PostgreSQL beside the same server on SQLite, same run.

Run: .venv/bin/python tests/bench/bench_postgres.py [--events 1000000] [--seconds 15]
     [--rounds 2] [--query-seconds 5] [--query-rounds 3]

On a throwaway PostgreSQL started from the machine's binaries (tests/pg.py; fsync and
synchronous_commit at their defaults, so a 202 means the WAL reached the disk, as
SQLite's synchronous=FULL does):
  1. single-event POST /streams/events under wrk (16 keep-alive connections), on
     SQLite then on PostgreSQL, ``--rounds`` times alternately (the machine is shared:
     alternating spreads other developers' load over both); events/s, p50, p99, the
     server's CPU per request per thread and PostgreSQL's backends' CPU per request;
     the ratio PostgreSQL/SQLite per round and over all rounds (target: at least 0.8);
  2. on a database of N events (10 sources, 20 types, 30 days; built for SQLite by
     bench_server.build_database and copied row for row into PostgreSQL), the p50 of
     GET /streams/events with its summary for source + type + 7-day window, source
     only, no filter, and of the debug read, on both (target: PostgreSQL within 2x),
     under wrk -c1, ``--query-rounds`` times alternately (the median of the rounds'
     p50s), with the server's and PostgreSQL's CPU and run-queue wait per request,
     and each query as a store call in this process (no HTTP);
  3. batch ingest: POST /streams/events/batch with 500 events per body under wrk (4
     connections), events stored per second, on both, alternately (target: 0.8).
Writes bench_postgres.json beside this file, with versions and load averages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from boltic_cli.models import format_time  # noqa: E402
from tests.bench import bench_server  # noqa: E402
from tests.bench._common import load_averages  # noqa: E402
from tests.pg import PostgresServer, start_postgres  # noqa: E402

TOKEN = bench_server.TOKEN


class Server:
    """`boltic server` in a subprocess on ``db`` (a SQLite file or a PostgreSQL URL)."""

    def __init__(self, db: str, work: Path, log: Path, tree: Path = ROOT) -> None:
        """``tree``: the source tree whose ``boltic_cli`` runs (another worktree, for a
        before/after comparison)."""
        env = {**os.environ, "BOLTIC_SERVER_BENCH_NOOP": "1", "BOLTIC_DATA_DIR": str(work)}
        command = [sys.executable, "-m", "boltic_cli", "server", "--port", "0", "--db", db]
        self._log = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*command, "--token", TOKEN],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
            cwd=tree,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            raise SystemExit(f"server did not start, see {log}")

    threads = bench_server.Server.threads

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._log.close()


def postgres_cpu_s(pg: PostgresServer) -> float:
    """CPU seconds used so far by the postmaster's children (backends, WAL writer...)."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def transactions(pg: PostgresServer, url: str) -> int:
    """Transactions committed in the database so far (pg_stat_database)."""
    name = url.rsplit("/", 1)[1]
    time.sleep(0.5)  # backends that just exited flush their statistics
    query = f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{name}'"
    return int(pg.psql(query).strip() or 0)


def ingest(db: str, work: Path, seconds: int, pg: PostgresServer | None) -> dict:
    server = Server(db, work, work / "server.log")
    try:
        source = bench_server.create_source(server.url)
        event = {
            "sourceId": source["id"],
            "type": "page_view",
            "properties": {"path": "/pricing", "plan": "pro", "n": 1},
        }
        script = bench_server.lua_post(work / "post.lua", event)
        pg_before = postgres_cpu_s(pg) if pg else 0.0
        commits_before = transactions(pg, db) if pg else 0
        result = bench_server.measured_wrk(
            server,  # type: ignore[arg-type]
            f"{server.url}/streams/events",
            script,
            seconds,
        )
        if pg:
            result["postgres_cpu_us_per_request"] = round(
                (postgres_cpu_s(pg) - pg_before) / result["requests"] * 1e6, 1
            )
        stored = httpx.get(
            f"{server.url}/streams/events",
            params={"limit": 1, "sourceId": source["id"]},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ).json()
        result["stored"] = stored["summary"]["totalEvents"]
    finally:
        server.stop()
    if pg:
        # One autocommitted statement per group (counted once the server's backends
        # have exited and flushed their statistics): requests per transaction is
        # the mean group size.
        result["requests_per_transaction"] = round(
            result["requests"] / max(1, transactions(pg, db) - commits_before), 1
        )
    result["load_average_after"] = load_averages()
    return result


BATCH_ITEMS = 500
BATCH_CONNECTIONS = 4


def ingest_batch(db: str, work: Path, seconds: int, pg: PostgresServer | None) -> dict:
    """POST /streams/events/batch (500 events per body) under wrk with 4 connections:
    events/s is what the database holds afterwards divided by wrk's duration."""
    server = Server(db, work, work / "server.log")
    try:
        source = bench_server.create_source(server.url)
        items = [
            {"sourceId": source["id"], "type": "page_view", "properties": {"path": f"/p/{i}"}}
            for i in range(BATCH_ITEMS)
        ]
        script = bench_server.lua_post(work / "batch.lua", {"batch": items})
        pg_before = postgres_cpu_s(pg) if pg else 0.0
        result = bench_server.wrk(
            f"{server.url}/streams/events/batch", script, seconds, BATCH_CONNECTIONS
        )
        stored = httpx.get(
            f"{server.url}/streams/events",
            params={"limit": 1, "sourceId": source["id"]},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ).json()["summary"]["totalEvents"]
        result["stored"] = stored
        result["events_per_s"] = round(stored / seconds, 1)
        if pg:
            result["postgres_cpu_us_per_event"] = round(
                (postgres_cpu_s(pg) - pg_before) / max(stored, 1) * 1e6, 1
            )
    finally:
        server.stop()
    result["load_average_after"] = load_averages()
    return result


def copy_to_postgres(sqlite_db: Path, url: str) -> float:
    """Copy sources and events row for row (counters kept by the triggers), then
    VACUUM ANALYZE; seconds taken."""
    import asyncpg

    from boltic_cli.server.store.postgres import migrate

    started = time.perf_counter()

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            src = sqlite3.connect(sqlite_db)
            sources = src.execute(
                "SELECT id, name, type, write_key, status, created_at FROM sources"
            ).fetchall()
            await conn.copy_records_to_table("sources", records=sources)
            cursor = src.execute(
                "SELECT id, source_id, type, timestamp, received_at, body FROM events"
            )
            columns = ["id", "source_id", "type", "timestamp", "received_at", "body"]
            while rows := cursor.fetchmany(50_000):
                await conn.copy_records_to_table("events", records=rows, columns=columns)
            src.close()
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()

    asyncio.run(run())
    return time.perf_counter() - started


def until_ms(now: datetime) -> int:
    return int((now + timedelta(minutes=1)).timestamp() * 1000)


def store_latencies(
    sqlite_db: Path, url: str, source: str, type_: str, week_ago: datetime, until: int
) -> dict:
    """The p50 of each query as a store call in this process (no HTTP, no server
    process): what the database work costs, apart from serving it."""
    from boltic_cli.server.store.postgres import PostgresStore
    from boltic_cli.server.store.sqlite import SQLiteStore

    calls = {
        "source_type_7d": lambda s: s.query_events(
            source_id=source,
            event_type=type_,
            from_ms=int(week_ago.timestamp() * 1000),
            to_ms=until,
        ),
        "source_only": lambda s: s.query_events(source_id=source),
        "no_filter": lambda s: s.query_events(),
        "debug_read": lambda s: s.debug_events(source, 50),
    }

    async def measure(store) -> dict:
        out = {}
        for name, call in calls.items():
            for _ in range(20):
                await call(store)
            times = []
            for _ in range(200):
                started = time.perf_counter()
                await call(store)
                times.append(time.perf_counter() - started)
            out[name] = round(sorted(times)[100] * 1000, 3)
        return out

    async def run() -> dict:
        pg_store = PostgresStore(url)
        await pg_store.open()
        try:
            on_pg = await measure(pg_store)
        finally:
            await pg_store.close()
        sqlite_store = SQLiteStore(sqlite_db)
        await sqlite_store.open()
        try:
            on_sqlite = await measure(sqlite_store)
        finally:
            await sqlite_store.close()
        return {name: {"sqlite": on_sqlite[name], "postgresql": on_pg[name]} for name in calls}

    return asyncio.run(run())


def postgres_sched_s(pg: PostgresServer) -> tuple[float, float]:
    """CPU seconds and run-queue wait seconds (runnable, waiting for a CPU) so far of
    the postmaster's children (/proc/PID/schedstat)."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    cpu = wait = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != postmaster:
                continue
            run_ns, wait_ns, _ = (stat.parent / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        cpu += int(run_ns)
        wait += int(wait_ns)
    return cpu / 1e9, wait / 1e9


def measure_query(server: Server, url: str, script: Path, seconds: int, pg) -> dict:
    """wrk -c1 on one GET, and per request: the server's CPU and run-queue wait (all
    its threads), and on PostgreSQL the same for PostgreSQL's processes (µs)."""
    threads_before = server.threads()
    pg_before = postgres_sched_s(pg) if pg else (0.0, 0.0)
    measured = bench_server.wrk(url, script, seconds, connections=1, threads=1)
    threads_after = server.threads()
    n = measured["requests"]
    measured["load_average"] = load_averages()
    for key, label in (("cpu_s", "cpu"), ("runqueue_wait_s", "runqueue_wait")):
        spent = sum(t[key] for t in threads_after.values()) - sum(
            t[key] for t in threads_before.values()
        )
        measured[f"server_{label}_us_per_request"] = round(spent / n * 1e6, 1)
    if pg:
        cpu, wait = postgres_sched_s(pg)
        measured["postgres_cpu_us_per_request"] = round((cpu - pg_before[0]) / n * 1e6, 1)
        measured["postgres_runqueue_wait_us_per_request"] = round(
            (wait - pg_before[1]) / n * 1e6, 1
        )
    return measured


def median(values: list[float]) -> float:
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def queries(work: Path, pg: PostgresServer, n: int, seconds: int, rounds: int) -> dict:
    """Each shape under wrk -c1 on SQLite and on PostgreSQL, ``rounds`` times
    alternately (SQLite first in even rounds, PostgreSQL first in odd ones), so that
    other developers' load, which comes and goes, falls on both stores alike; a
    store's p50 is the median of its rounds' p50s."""
    now = datetime.now(UTC)
    sqlite_db = work / "million.db"
    sources, types, build_s = bench_server.build_database(sqlite_db, n, now)
    pg_db = pg.new_database()
    copy_s = copy_to_postgres(sqlite_db, pg.url(pg_db))
    week_ago = format_time(now - timedelta(days=7))
    until = format_time(now + timedelta(minutes=1))
    shapes = {
        "source_type_7d": f"/streams/events?sourceId={sources[3]}&eventType={types[5]}"
        f"&from={week_ago}&to={until}",
        "source_only": f"/streams/events?sourceId={sources[3]}",
        "no_filter": "/streams/events",
        "debug_read": f"/streams/sources/{sources[3]}/debug",
    }
    results: dict = {
        "events": n,
        "sqlite_build_seconds": round(build_s, 1),
        "postgres_copy_seconds": round(copy_s, 1),
        "rounds": rounds,
        "seconds_per_run": seconds,
    }
    script = bench_server.lua_get(work / "get.lua")
    stores = {"sqlite": (str(sqlite_db), None), "postgresql": (pg.url(pg_db), pg)}
    runs: dict = {name: {store: [] for store in stores} for name in shapes}
    for round_ in range(rounds):
        order = list(stores) if round_ % 2 == 0 else list(reversed(stores))
        for store in order:
            db, cluster = stores[store]
            server = Server(db, work, work / "server.log")
            try:
                for name, path in shapes.items():
                    check = httpx.get(
                        server.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
                    )
                    check.raise_for_status()
                    measured = measure_query(server, server.url + path, script, seconds, cluster)
                    body = check.json()
                    measured["page"] = len(body["data"])
                    if "summary" in body:
                        measured["summary"] = body["summary"]
                    runs[name][store].append(measured)
            finally:
                server.stop()
        print(f"query round {round_} done", file=sys.stderr)
    in_process = store_latencies(
        sqlite_db, pg.url(pg_db), sources[3], types[5], now - timedelta(days=7), until_ms(now)
    )
    for name in shapes:
        both: dict = {}
        for store in stores:
            store_runs = runs[name][store]
            both[store] = {
                "p50_ms": round(median([r["p50_ms"] for r in store_runs]), 3),
                "p50_ms_per_round": [round(r["p50_ms"], 3) for r in store_runs],
                "runs": store_runs,
            }
        both["p50_ratio_postgresql_to_sqlite"] = round(
            both["postgresql"]["p50_ms"] / both["sqlite"]["p50_ms"], 2
        )
        both["p50_ratio_per_round"] = [
            round(p["p50_ms"] / s["p50_ms"], 2)
            for s, p in zip(runs[name]["sqlite"], runs[name]["postgresql"], strict=True)
        ]
        both["store_call_p50_ms"] = in_process[name]
        summaries = [r.get("summary") for store in stores for r in runs[name][store]]
        if summaries[0] is not None:
            both["same_summary"] = all(s == summaries[0] for s in summaries)
        results[name] = both
    results["target"] = "PostgreSQL's p50 within 2x of SQLite's"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--query-seconds", type=int, default=5)
    parser.add_argument("--query-rounds", type=int, default=3)
    parser.add_argument("--skip-queries", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "bench_postgres.json")
    parser.add_argument(
        "--merge", action="store_true", help="keep the parts of --out this run skips"
    )
    args = parser.parse_args()
    before = load_averages()
    pg = start_postgres()
    report: dict = {
        "command": "python tests/bench/bench_postgres.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": before,
        "caveat": "2 cores shared by the server, PostgreSQL, wrk and other developers' runs",
    }
    try:
        report["machine"] = {
            **bench_server.machine(),
            "platform": platform.platform(),
            "postgresql": pg.psql("SHOW server_version").strip(),
            "postgresql_fsync": pg.psql("SHOW fsync").strip(),
            "postgresql_synchronous_commit": pg.psql("SHOW synchronous_commit").strip(),
            "asyncpg": version("asyncpg"),
        }
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            work = Path(tmp)
            rounds = []
            for i in range(0 if args.skip_ingest else args.rounds):
                sqlite_run = ingest(str(work / f"ingest-{i}.db"), work, args.seconds, None)
                pg_run = ingest(pg.url(pg.new_database()), work, args.seconds, pg)
                ratio = round(pg_run["requests_per_s"] / sqlite_run["requests_per_s"], 3)
                rounds.append({"sqlite": sqlite_run, "postgresql": pg_run, "ratio": ratio})
                print(f"round {i}: ratio {ratio}", file=sys.stderr)
            if rounds:
                total = {
                    store: sum(r[store]["requests_per_s"] for r in rounds) / len(rounds)
                    for store in ("sqlite", "postgresql")
                }
                report["single_event_ingest"] = {
                    "rounds": rounds,
                    "mean_requests_per_s": {k: round(v, 1) for k, v in total.items()},
                    "ratio_postgresql_to_sqlite": round(total["postgresql"] / total["sqlite"], 3),
                    "target": 0.8,
                }
            batch_rounds = []
            for i in range(0 if args.skip_ingest else args.rounds):
                sqlite_run = ingest_batch(str(work / f"batch-{i}.db"), work, args.seconds, None)
                pg_run = ingest_batch(pg.url(pg.new_database()), work, args.seconds, pg)
                ratio = round(pg_run["events_per_s"] / sqlite_run["events_per_s"], 3)
                batch_rounds.append({"sqlite": sqlite_run, "postgresql": pg_run, "ratio": ratio})
                print(f"batch round {i}: ratio {ratio}", file=sys.stderr)
            if batch_rounds:
                mean = {
                    store: sum(r[store]["events_per_s"] for r in batch_rounds) / len(batch_rounds)
                    for store in ("sqlite", "postgresql")
                }
                report["batch_ingest"] = {
                    "items_per_batch": BATCH_ITEMS,
                    "connections": BATCH_CONNECTIONS,
                    "rounds": batch_rounds,
                    "mean_events_per_s": {k: round(v, 1) for k, v in mean.items()},
                    "ratio_postgresql_to_sqlite": round(mean["postgresql"] / mean["sqlite"], 3),
                    "target": 0.8,
                }
            if not args.skip_queries:
                report["queries"] = queries(
                    work, pg, args.events, args.query_seconds, args.query_rounds
                )
    finally:
        pg.destroy()
    report["load_average_after"] = load_averages()
    if args.merge and args.out.exists():
        previous = json.loads(args.out.read_text())
        for part in ("single_event_ingest", "batch_ingest", "queries"):
            if part not in report and part in previous:
                report[part] = previous[part]
                # The run that measured it (kept when that file had it from another).
                origin = previous.get("parts_from_an_earlier_run", {}).get(part) or {
                    "when": previous.get("when"),
                    "command": previous.get("command"),
                    "load_average_before": previous.get("load_average_before"),
                    "load_average_after": previous.get("load_average_after"),
                }
                report.setdefault("parts_from_an_earlier_run", {})[part] = origin
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
