"""Benchmark: `boltic events stats --since 7d --by 1h` over 1,000,000 events.

Run: .venv/bin/python tests/bench/bench_stats.py [--events 1000000] [--runs 5]

Builds a database of N events (10 sources, 20 common types and 3 rare ones hidden in
the middle of the window, over 10 days ending now) with direct SQL through
boltic_cli.server.store (not over HTTP), starts `boltic server` on it in a subprocess,
and times:
  1. the library call ``boltic_cli.stats.event_stats`` (since 7 days ago, by 1 hour,
     4 threads) in this process, over HTTP to the server;
  2. the whole command ``boltic events stats --since 7d --by 1h -o json`` in a
     subprocess (start-up included), when this boltic has the command.
Every run's counts are checked against SQL over the same database (per type and in
total): the figures are of exact answers. Target: under 2 s on this machine (2 shared
cores), so the load average before and after is recorded with the figures, and so are
the library versions. Writes bench_stats.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from boltic_cli.client import BolticClient  # noqa: E402
from boltic_cli.models import format_time  # noqa: E402
from boltic_cli.server.ids import IdGenerator, new_write_key  # noqa: E402
from boltic_cli.server.store import DAY_MS, EventRecord  # noqa: E402
from boltic_cli.server.store.sqlite import connect, insert_events, migrate  # noqa: E402
from boltic_cli.stats import event_stats  # noqa: E402
from tests.bench._common import (  # noqa: E402
    BOLTIC,
    isolated_env,
    load_averages,
    machine,
    start_server,
    wait_for_quiet,
)

TOKEN = "bench-stats-admin-token-0123456789"
SOURCES = 10
TYPES = 20
RARE = ["rare_refund", "rare_chargeback", "rare_export"]
DAYS = 10
COMMAND = ["events", "stats", "--since", "7d", "--by", "1h", "-o", "json"]


def build_database(db: Path, n: int, now: datetime) -> float:
    """N events over DAYS days ending at ``now``; rare types at a few points in the last
    week. Returns the seconds it took."""
    started = time.perf_counter()
    rng = random.Random(7)
    conn = connect(db)
    migrate(conn)
    conn.execute("PRAGMA synchronous=OFF")  # a throwaway build, not the server's writes
    now_ms = int(now.timestamp() * 1000)
    sources = [f"src_bench{i:02d}" for i in range(SOURCES)]
    types = [f"type_{i:02d}" for i in range(TYPES)]
    conn.execute("BEGIN")
    for i, source_id in enumerate(sources):
        conn.execute(
            "INSERT INTO sources (id, name, type, write_key, status, created_at) "
            "VALUES (?, ?, 'server', ?, 'active', ?)",
            (source_id, f"bench {i}", new_write_key(), now_ms - DAYS * DAY_MS),
        )
    conn.execute("COMMIT")
    clock_ms = [0]
    ids = IdGenerator(clock=lambda: clock_ms[0] / 1000)
    span = DAYS * DAY_MS - 60_000  # all before now - 1 minute
    rare_at = {n // 2 + k * 1000: name for k, name in enumerate(RARE)} | {n - 5000: RARE[0]}
    chunk = 50_000
    for start in range(0, n, chunk):
        records = []
        for k in range(start, min(n, start + chunk)):
            timestamp = now_ms - 60_000 - span + (k * span) // n
            clock_ms[0] = timestamp
            event_id = ids.new("evt_")
            source_id = sources[rng.randrange(SOURCES)]
            type_ = rare_at.get(k) or types[min(TYPES - 1, int(rng.expovariate(0.25)))]
            body = {
                "id": event_id,
                "sourceId": source_id,
                "type": type_,
                "properties": {"path": f"/p/{k % 97}"},
                "timestamp": format_time(datetime.fromtimestamp(timestamp / 1000, UTC)),
                "receivedAt": format_time(datetime.fromtimestamp(timestamp / 1000, UTC)),
            }
            records.append(
                EventRecord(
                    event_id,
                    source_id,
                    type_,
                    timestamp,
                    timestamp,
                    json.dumps(body, separators=(",", ":")),
                )
            )
        conn.execute("BEGIN")
        insert_events(conn, records)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - started


def truth(db: Path, since: datetime, until: datetime) -> dict[str, int]:
    """Counts per type in [since, until) straight from SQL."""
    conn = connect(db)
    try:
        rows = conn.execute(
            "SELECT type, count(*) FROM events WHERE timestamp >= ? AND timestamp < ? "
            "GROUP BY type",
            (int(since.timestamp() * 1000), int(until.timestamp() * 1000)),
        ).fetchall()
    finally:
        conn.close()
    return dict(rows)


def time_library(url: str, db: Path, runs: int) -> dict:
    seconds, queries = [], 0
    for _ in range(runs):
        now = datetime.now(UTC)
        since = now - timedelta(days=7)
        started = time.perf_counter()
        with BolticClient(url, TOKEN) as client:
            stats = event_stats(client, since=since, until=now, by=timedelta(hours=1))
        seconds.append(time.perf_counter() - started)
        expected = truth(db, stats.since, stats.until)
        assert dict(stats.types) == expected, (dict(stats.types), expected)
        assert stats.total == sum(expected.values())
        queries = stats.queries
        total, buckets, types = stats.total, len(stats.buckets), len(stats.types)
    return {
        "call": "event_stats(client, since=now-7d, until=now, by=1h), 4 threads",
        "runs": runs,
        "seconds_median": round(statistics.median(seconds), 3),
        "seconds_min": round(min(seconds), 3),
        "seconds_max": round(max(seconds), 3),
        "queries": queries,
        "buckets": buckets,
        "types": types,
        "events_counted": total,
        "exact": True,
    }


def time_command(url: str, db: Path, env: dict[str, str], runs: int) -> dict | None:
    env = {**env, "BOLTIC_API_URL": url, "BOLTIC_TOKEN": TOKEN}
    probe = subprocess.run([BOLTIC, "events", "stats", "--help"], env=env, capture_output=True)
    if probe.returncode != 0:
        return None  # this boltic has no `events stats` yet
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([BOLTIC, *COMMAND], env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        since = datetime.fromisoformat(body["from"].replace("Z", "+00:00"))
        until = datetime.fromisoformat(body["to"].replace("Z", "+00:00"))
        expected = truth(db, since, until)
        assert {t["type"]: t["count"] for t in body["types"]} == expected
        assert body["totalEvents"] == sum(expected.values())
    return {
        "command": "boltic " + " ".join(COMMAND),
        "runs": runs,
        "seconds_median": round(statistics.median(seconds), 3),
        "seconds_min": round(min(seconds), 3),
        "seconds_max": round(max(seconds), 3),
        "exact": True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "bench_stats.json")
    parser.add_argument("--max-load", type=float, default=3.0)
    parser.add_argument(
        "--keep", type=Path, help="build the database in this dir once and reuse it (for tuning)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = isolated_env(work)
        build_s = 0.0
        if not (work / "bench.db").exists():
            build_s = build_database(work / "bench.db", args.events, datetime.now(UTC))
            print(f"built {args.events:,} events in {build_s:.1f}s", file=sys.stderr)
        waited = wait_for_quiet(args.max_load, max_wait=120, poll_seconds=10)
        load_before = load_averages()
        server, url = start_server(work, env, TOKEN)
        try:
            library = time_library(url, work / "bench.db", args.runs)
            command = time_command(url, work / "bench.db", env, args.runs)
        finally:
            server.terminate()
            server.wait(20)
        load_after = load_averages()
    result = {
        "benchmark": "events stats --since 7d --by 1h over 1,000,000 events (exact counts)",
        "date": format_time(datetime.now(UTC)),
        "command": "python tests/bench/bench_stats.py"
        + (f" --events {args.events}" if args.events != 1_000_000 else ""),
        "target_seconds": 2.0,
        "events": args.events,
        "sources": SOURCES,
        "types": TYPES + len(RARE),
        "days": DAYS,
        "build_seconds": round(build_s, 1),
        "library": library,
        "cli": command,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "waited_for_quiet_seconds": round(waited, 1),
        "machine": machine(
            libraries={name: version(name) for name in ("httpx", "pydantic", "fastapi", "rich")}
        ),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
