"""Benchmark: single-event ingest with a write key, SQLite beside PostgreSQL, same run.

Run: .venv/bin/python tests/bench/bench_write_key.py [--seconds 15] [--rounds 3]
     [--before-tree DIR]

A request sent with a write key needs its source: the request gate finds the key's
source (the route then checks the event's ``sourceId`` against it): on SQLite from the
one process's table in memory; on PostgreSQL from the database (lookups waiting
together go as one statement), except for a plain send with a key this process has
seen active, which the inserting statement checks again (Store.source_for_key,
``recheck_on_insert``: no statement of its own).
Under wrk (16 keep-alive connections, ``tests/bench/bench_server.py``'s settings), per
round and alternately (the machine is shared): SQLite, PostgreSQL, and with
``--before-tree DIR`` PostgreSQL again served from the source tree DIR (e.g. ``git
worktree add --detach /tmp/before COMMIT``: the code before a change, for a
before/after in one run). Events/s, p50, p99, the server's CPU per request per thread,
PostgreSQL's backends' CPU per request, requests per PostgreSQL transaction (each
group of inserts and each group of source lookups is one); the ratio to SQLite
(issue 18's target: PostgreSQL at least 0.8). Writes bench_write_key.json beside this
file, with versions and load averages.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.bench import bench_postgres, bench_server  # noqa: E402
from tests.bench._common import load_averages  # noqa: E402
from tests.pg import PostgresServer, start_postgres  # noqa: E402

TOKEN = bench_server.TOKEN


def lua_post_with_key(path: Path, body: dict, write_key: str) -> Path:
    script = bench_server.lua_post(path, body)
    script.write_text(script.read_text().replace(f"Bearer {TOKEN}", f"Bearer {write_key}"))
    return script


def ingest(db: str, work: Path, seconds: int, pg: PostgresServer | None, tree: Path) -> dict:
    server = bench_postgres.Server(db, work, work / "server.log", tree)
    try:
        source = bench_server.create_source(server.url)
        event = {
            "sourceId": source["id"],
            "type": "page_view",
            "properties": {"path": "/pricing", "plan": "pro", "n": 1},
        }
        script = lua_post_with_key(work / "post-key.lua", event, source["writeKey"])
        pg_before = bench_postgres.postgres_cpu_s(pg) if pg else 0.0
        commits_before = bench_postgres.transactions(pg, db) if pg else 0
        result = bench_server.measured_wrk(
            server,  # type: ignore[arg-type]
            f"{server.url}/streams/events",
            script,
            seconds,
        )
        if pg:
            result["postgres_cpu_us_per_request"] = round(
                (bench_postgres.postgres_cpu_s(pg) - pg_before) / result["requests"] * 1e6, 1
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
        result["requests_per_transaction"] = round(
            result["requests"] / max(1, bench_postgres.transactions(pg, db) - commits_before), 1
        )
    result["load_average_after"] = load_averages()
    return result


def git_commit(tree: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before-tree", type=Path, help="also PostgreSQL served from this tree")
    parser.add_argument("--out", type=Path, default=HERE / "bench_write_key.json")
    args = parser.parse_args()
    before = load_averages()
    pg = start_postgres()
    runs = {"sqlite": ROOT, "postgresql": ROOT}
    if args.before_tree:
        runs["postgresql_before"] = args.before_tree.resolve()
    report: dict = {
        "command": "python tests/bench/bench_write_key.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": before,
        "caveat": "2 cores shared by the server, PostgreSQL, wrk and other developers' runs",
        "trees": {name: git_commit(tree) for name, tree in runs.items()},
    }
    try:
        report["machine"] = {
            **bench_server.machine(),
            "platform": platform.platform(),
            "postgresql": pg.psql("SHOW server_version").strip(),
            "postgresql_synchronous_commit": pg.psql("SHOW synchronous_commit").strip(),
            "asyncpg": version("asyncpg"),
        }
        rounds = []
        with tempfile.TemporaryDirectory(prefix="bench-wk-") as tmp:
            work = Path(tmp)
            for i in range(args.rounds):
                one: dict = {}
                for name, tree in runs.items():
                    if name == "sqlite":
                        one[name] = ingest(str(work / f"wk-{i}.db"), work, args.seconds, None, tree)
                    else:
                        db = pg.url(pg.new_database())
                        one[name] = ingest(db, work, args.seconds, pg, tree)
                for name in runs:
                    if name != "sqlite":
                        one[f"ratio_{name}_to_sqlite"] = round(
                            one[name]["requests_per_s"] / one["sqlite"]["requests_per_s"], 3
                        )
                rounds.append(one)
                print(f"round {i}: {one}", file=sys.stderr)
        mean = {
            name: round(sum(r[name]["requests_per_s"] for r in rounds) / len(rounds), 1)
            for name in runs
        }
        report["single_event_ingest_with_write_key"] = {
            "rounds": rounds,
            "mean_requests_per_s": mean,
            **{
                f"ratio_{name}_to_sqlite": round(mean[name] / mean["sqlite"], 3)
                for name in runs
                if name != "sqlite"
            },
            "target": 0.8,
        }
    finally:
        pg.destroy()
    report["load_average_after"] = load_averages()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
