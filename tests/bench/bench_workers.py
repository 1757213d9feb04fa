"""Benchmark: `boltic server --workers 2` against one process, on PostgreSQL, same run.

Run: .venv/bin/python tests/bench/bench_workers.py [--seconds 15] [--rounds 2]

On a throwaway PostgreSQL started from the machine's binaries (tests/pg.py, fsync and
synchronous_commit at their defaults), each round runs, with 1 and then 2 server
processes (the order alternates from round to round, so the shared machine's other
load falls on both), each on a fresh database:
  1. single-event ingest: POST /streams/events under wrk, 16 keep-alive connections,
     authorized with the source's write key (as a website sends);
  2. batch ingest: POST /streams/events/batch, 500 events per body, 4 connections,
     with the write key too.
For each: events/s (what the database holds afterwards, over wrk's seconds; single
events also wrk's requests/s, p50, p99), and CPU seconds per 1,000 events spent by the
server (the supervisor and its workers, /proc/PID/stat utime+stime, before and after),
by PostgreSQL's processes (the postmaster's children: backends, WAL writer...) and by
wrk itself, with the commits per event PostgreSQL counted (pg_stat_database: each
process groups concurrent single events into one commit, so two processes make
smaller groups). The machine has 2 cores for all of them: 2 processes can only win
where one process leaves a core idle; the CPU figures say where the time went.
Writes bench_workers.json beside this file (figures, command, machine, versions, load
averages). Reuses bench_postgres's server launcher and PostgreSQL helpers and
bench_server's wrk runner.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.bench import bench_postgres, bench_server  # noqa: E402
from tests.bench._common import load_averages, machine, wait_for_quiet  # noqa: E402
from tests.pg import PostgresServer, start_postgres  # noqa: E402

TOKEN = bench_server.TOKEN
WORKERS_ENV = "BOLTIC_SERVER_WORKERS"
TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the supervisor and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each pid still running, in seconds."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def name_of(pid: int, supervisor: int) -> str:
    """What ``pid`` is in a server's process tree."""
    if pid == supervisor:
        return f"main {pid}"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    return f"{'worker' if b'spawn_main' in cmdline else 'other'} {pid}"


def runqueue_wait_seconds(pids: list[int]) -> float:
    """Seconds the threads of ``pids`` spent runnable but waiting for a CPU so far
    (/proc/PID/task/TID/schedstat): how much the cores were contended."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(task.read_text().split()[1])
    return total / 1e9


def machine_cpu() -> tuple[int, int, int]:
    """Jiffies of all CPUs so far from /proc/stat: (total, idle, iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields), fields[3], fields[4]


@contextlib.contextmanager
def workers_env(n: int) -> Iterator[None]:
    """bench_postgres.Server passes this process's environment on: --workers N by its
    environment variable."""
    os.environ[WORKERS_ENV] = str(n)
    try:
        yield
    finally:
        os.environ.pop(WORKERS_ENV, None)


def post_script(path: Path, body: dict, write_key: str) -> Path:
    """bench_server's wrk script for ``body``, authorized with ``write_key``."""
    bench_server.lua_post(path, body)
    path.write_text(path.read_text().replace(TOKEN, write_key))
    return path


def run(kind: str, workers: int, pg: PostgresServer, work: Path, seconds: int) -> dict:
    """One measured wrk run of ``kind`` (``single`` or ``batch``) against a server of
    ``workers`` processes on a fresh database."""
    url = pg.url(pg.new_database())
    with workers_env(workers):
        server = bench_postgres.Server(url, work, work / f"server-{workers}.log")
    try:
        # The supervisor, its workers and multiprocessing's resource tracker.
        tree = process_tree(server.process.pid)
        names = {pid: name_of(pid, server.process.pid) for pid in tree}
        assert sum(n.startswith("worker") for n in names.values()) == (
            0 if workers == 1 else workers
        ), names
        source = bench_server.create_source(server.url)
        if kind == "single":
            body: dict = {
                "sourceId": source["id"],
                "type": "page_view",
                "properties": {"path": "/pricing", "plan": "pro", "n": 1},
            }
            endpoint, connections = "/streams/events", bench_server.CONNECTIONS
        else:
            body = {
                "batch": [
                    {"sourceId": source["id"], "type": "page_view", "properties": {"i": i}}
                    for i in range(bench_postgres.BATCH_ITEMS)
                ]
            }
            endpoint, connections = "/streams/events/batch", bench_postgres.BATCH_CONNECTIONS
        script = post_script(work / f"{kind}.lua", body, source["writeKey"])
        commits_before = bench_postgres.transactions(pg, url)
        server_before = cpu_seconds(tree)
        waits_before = runqueue_wait_seconds(tree)
        machine_before = machine_cpu()
        pg_before = bench_postgres.postgres_cpu_s(pg)
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = bench_server.wrk(server.url + endpoint, script, seconds, connections)
        wall = time.monotonic() - started
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        pg_after = bench_postgres.postgres_cpu_s(pg)
        server_after = cpu_seconds(tree)
        waits = runqueue_wait_seconds(tree) - waits_before
        total, idle, iowait = (a - b for a, b in zip(machine_cpu(), machine_before, strict=True))
        stored = httpx.get(
            f"{server.url}/streams/events",
            params={"limit": 1, "sourceId": source["id"]},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ).json()["summary"]["totalEvents"]
    finally:
        server.stop()
    commits = bench_postgres.transactions(pg, url) - commits_before
    per_process = {
        names[pid]: round(server_after[pid] - server_before.get(pid, 0.0), 2)
        for pid in server_after
    }
    serving = [v for k, v in per_process.items() if k.startswith("worker")]
    server_cpu = sum(per_process.values())
    pg_cpu = pg_after - pg_before
    wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (
        wrk_before.ru_utime + wrk_before.ru_stime
    )
    thousands = max(stored, 1) / 1000
    result.update(
        {
            "workers": workers,
            "stored": stored,
            "events_per_s": round(stored / seconds, 1),
            "cpu_s": {
                "server": round(server_cpu, 2),
                "server_by_process": per_process,
                "postgresql": round(pg_cpu, 2),
                "wrk": round(wrk_cpu, 2),
                "wall_s": round(wall, 2),
                # Of the 2 cores' wall time, the share these three used.
                "share_of_2_cores": round((server_cpu + pg_cpu + wrk_cpu) / (2 * wall), 3),
                # The whole machine meanwhile (/proc/stat; other developers' runs too).
                "machine_busy_share": round(1 - (idle + iowait) / max(total, 1), 3),
                "machine_iowait_share": round(iowait / max(total, 1), 3),
                "server_runqueue_wait_s": round(waits, 2),
                # How the connections fell to the workers: the busiest one's share of
                # their CPU (wrk opens its keep-alive connections at once; whichever
                # worker wakes first accepts them, nothing balances them afterwards).
                **(
                    {"busiest_worker_share": round(max(serving) / max(sum(serving), 1e-9), 3)}
                    if serving
                    else {}
                ),
            },
            "cpu_s_per_1000_events": {
                "server": round(server_cpu / thousands, 4),
                "postgresql": round(pg_cpu / thousands, 4),
                "wrk": round(wrk_cpu / thousands, 4),
                "server_and_postgresql": round((server_cpu + pg_cpu) / thousands, 4),
            },
            "postgresql_commits_per_1000_events": round(commits / thousands, 1),
            "load_average_after": load_averages(),
        }
    )
    return result


def summary(rounds: list[dict], kind: str) -> dict:
    """Means over the rounds for 1 and 2 workers, and the ratio 2/1."""

    def mean(workers: int, pick) -> float:
        values = [pick(r[kind][str(workers)]) for r in rounds]
        return sum(values) / len(values)

    out: dict = {}
    for workers in (1, 2):
        out[f"{workers}_process{'es' if workers > 1 else ''}"] = {
            "events_per_s": round(mean(workers, lambda r: r["events_per_s"]), 1),
            "server_cpu_s_per_1000_events": round(
                mean(workers, lambda r: r["cpu_s_per_1000_events"]["server"]), 4
            ),
            "postgresql_cpu_s_per_1000_events": round(
                mean(workers, lambda r: r["cpu_s_per_1000_events"]["postgresql"]), 4
            ),
            "postgresql_commits_per_1000_events": round(
                mean(workers, lambda r: r["postgresql_commits_per_1000_events"]), 1
            ),
            "share_of_2_cores": round(mean(workers, lambda r: r["cpu_s"]["share_of_2_cores"]), 3),
            "machine_busy_share": round(
                mean(workers, lambda r: r["cpu_s"]["machine_busy_share"]), 3
            ),
            "server_runqueue_wait_s_per_1000_events": round(
                mean(workers, lambda r: r["cpu_s"]["server_runqueue_wait_s"] / r["stored"] * 1000),
                4,
            ),
        }
    out["2_processes"]["busiest_worker_share_per_round"] = [
        r[kind]["2"]["cpu_s"]["busiest_worker_share"] for r in rounds
    ]
    out["ratio_2_to_1_events_per_s"] = round(
        out["2_processes"]["events_per_s"] / out["1_process"]["events_per_s"], 3
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-load", type=float, default=2.5)
    parser.add_argument("--max-wait", type=float, default=120)
    parser.add_argument("--out", type=Path, default=HERE / "bench_workers.json")
    args = parser.parse_args()
    before = load_averages()
    pg = start_postgres()
    report: dict = {
        "command": "python tests/bench/bench_workers.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": before,
        "caveat": "2 cores shared by the server processes, PostgreSQL, wrk and other "
        "developers' runs",
    }
    try:
        report["machine"] = machine(
            **{k: v for k, v in bench_server.machine().items() if k in ("cpu", "memory", "wrk")},
            postgresql=pg.psql("SHOW server_version").strip(),
            postgresql_fsync=pg.psql("SHOW fsync").strip(),
            postgresql_synchronous_commit=pg.psql("SHOW synchronous_commit").strip(),
        )
        rounds = []
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
            work = Path(tmp)
            for i in range(args.rounds):
                waited = wait_for_quiet(args.max_load, args.max_wait, poll_seconds=10)
                order = (1, 2) if i % 2 == 0 else (2, 1)
                this: dict = {"order": list(order), "waited_for_quiet_s": round(waited, 1)}
                for kind in ("single", "batch"):
                    this[kind] = {}
                    for workers in order:
                        measured = run(kind, workers, pg, work, args.seconds)
                        this[kind][str(workers)] = measured
                        print(
                            f"round {i} {kind} workers={workers}: "
                            f"{measured['events_per_s']} events/s, "
                            f"cpu/1000: {measured['cpu_s_per_1000_events']}",
                            file=sys.stderr,
                        )
                rounds.append(this)
        report["rounds"] = rounds
        report["single_event_ingest"] = {
            "connections": bench_server.CONNECTIONS,
            **summary(rounds, "single"),
        }
        report["batch_ingest"] = {
            "items_per_batch": bench_postgres.BATCH_ITEMS,
            "connections": bench_postgres.BATCH_CONNECTIONS,
            **summary(rounds, "batch"),
        }
    finally:
        pg.destroy()
    report["load_average_after"] = load_averages()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in report if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
