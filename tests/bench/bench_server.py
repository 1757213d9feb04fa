"""Benchmark: the local Streams server under wrk.

Run: .venv/bin/python tests/bench/bench_server.py [--quick] [--events 1000000]

Measures, in one run, against `boltic server` in a subprocess (temp database):
  1. single-event POST /streams/events over 16 keep-alive connections (each 202 is
     sent after its commit): events/s, p50, p99; the same for POST /_bench/noop, a
     constant 202 behind the same middleware (enabled by BOLTIC_SERVER_BENCH_NOOP=1),
     and the ratio events/noop; per server thread (the event loop, the writer), the CPU
     time and the time spent waiting for a CPU per request; and, after the load, what
     a group commit of 6 events and a bare fdatasync cost on this disk without
     concurrent requests (what the writer's batches would take without contention);
  2. on a database of N events (10 sources, 20 types, 30 days, written with direct
     SQL through boltic_cli.server.store), the p50 of GET /streams/events with its
     summary for source + type + 7-day window, source only, no filter, and of the
     debug read GET /streams/sources/{id}/debug;
  3. the server's resident memory after 30 s of sustained POST load and after
     5 minutes (--quick: 90 s).
Writes the figures, the commands and the machine to bench_server.json beside this file.
The machine has 2 cores shared with wrk and with other developers' test runs, so the
figures are noisy: the load average before and after is recorded with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from boltic_cli.models import format_time  # noqa: E402
from boltic_cli.server.ids import IdGenerator, new_write_key  # noqa: E402
from boltic_cli.server.store import DAY_MS, EventRecord  # noqa: E402
from boltic_cli.server.store.sqlite import connect, insert_events, migrate  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"
TOKEN = "bench-server-admin-token-0123456789"
CONNECTIONS = 16
SOURCES = 10
TYPES = 20
DAYS = 30


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    wrk_version = subprocess.run([WRK, "--version"], capture_output=True, text=True)
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0],
    }


class Server:
    def __init__(self, db: Path, log: Path) -> None:
        env = {**os.environ, "BOLTIC_SERVER_BENCH_NOOP": "1", "BOLTIC_DATA_DIR": str(db.parent)}
        self.command = [
            sys.executable,
            "-m",
            "boltic_cli",
            "server",
            "--port",
            "0",
            "--db",
            str(db),
            "--token",
            TOKEN,
        ]
        self._log = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self._log, env=env, text=True, cwd=ROOT
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            raise SystemExit(f"server did not start, see {log}")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def threads(self) -> dict[str, dict[str, float]]:
        """Per thread name: CPU seconds and seconds spent runnable but waiting for a CPU
        (the scheduler's run queue: other processes, wrk, the server's other thread)."""
        out: dict[str, dict[str, float]] = {}
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                cpu_ns, wait_ns, _ = (task / "schedstat").read_text().split()
            except OSError:
                continue  # the thread ended
            entry = out.setdefault(name, {"cpu_s": 0.0, "runqueue_wait_s": 0.0})
            entry["cpu_s"] += int(cpu_ns) / 1e9
            entry["runqueue_wait_s"] += int(wait_ns) / 1e9
        return out

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._log.close()


def lua_post(path: Path, body: dict) -> Path:
    text = json.dumps(body).replace("\\", "\\\\").replace("'", "\\'")
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{text}'\n"
    )
    return path


def lua_get(path: Path) -> Path:
    path.write_text(f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n')
    return path


def to_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(url: str, script: Path, seconds: int, connections: int, threads: int = 2) -> dict:
    command = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {
        "command": " ".join(command),
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": to_ms(re.search(r"\s50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": to_ms(re.search(r"\s99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    result["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    if errors:
        result["socket_errors"] = errors.group(1)
    return result


def measured_wrk(server: Server, url: str, script: Path, seconds: int) -> dict:
    """wrk's figures plus, per server thread, CPU and run-queue wait per request (µs)."""
    before = server.threads()
    result = wrk(url, script, seconds, CONNECTIONS)
    after = server.threads()
    per_request = {}
    for name, end in after.items():
        start = before.get(name, {"cpu_s": 0.0, "runqueue_wait_s": 0.0})
        per_request[name] = {
            key.replace("_s", "_us"): round((end[key] - start[key]) / result["requests"] * 1e6, 1)
            for key in ("cpu_s", "runqueue_wait_s")
        }
    result["server_threads_per_request"] = {
        name: v for name, v in per_request.items() if v["cpu_us"] >= 0.1
    }
    return result


def percentiles(values: list[float]) -> dict:
    values = sorted(values)
    return {
        f"p{p}_ms": round(values[min(len(values) - 1, len(values) * p // 100)], 3)
        for p in (50, 90, 99)
    }


def commit_latency(work: Path, batches: int = 2000, batch: int = 6) -> dict:
    """What a group commit costs without concurrent requests: batches of ``batch`` events
    (the size seen under wrk) inserted with the server's schema and committed with
    synchronous=FULL, and the bare fdatasync of a small append on the same disk."""
    conn = connect(work / "commit.db")
    migrate(conn)
    conn.execute("INSERT INTO sources VALUES ('src_c', 'c', 'server', 'wk_c', 'active', 0)")
    ids = IdGenerator()
    now_ms = int(time.time() * 1000)
    body = json.dumps({"properties": {"path": "/pricing", "plan": "pro", "n": 1}})
    commits = []
    for _ in range(batches):
        records = [
            EventRecord(ids.new("evt_"), "src_c", "page_view", now_ms, now_ms, body)
            for _ in range(batch)
        ]
        started = time.perf_counter()
        insert_events(conn, records)  # autocommitted, as the server's event batches
        commits.append((time.perf_counter() - started) * 1000)
    conn.close()
    syncs = []
    fd = os.open(work / "fsync.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(500):
            os.write(fd, b"x" * 12288)
            started = time.perf_counter()
            os.fdatasync(fd)
            syncs.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
    return {
        "batch": batch,
        "insert_and_commit": percentiles(commits),
        "fdatasync_12KiB_append": percentiles(syncs),
    }


def create_source(url: str) -> dict:
    response = httpx.post(
        f"{url}/streams/sources",
        json={"name": "bench", "type": "server"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    response.raise_for_status()
    return response.json()


def bench_throughput(work: Path, seconds: int) -> dict:
    server = Server(work / "throughput.db", work / "server.log")
    try:
        source = create_source(server.url)
        event = {
            "sourceId": source["id"],
            "type": "page_view",
            "properties": {"path": "/pricing", "plan": "pro", "n": 1},
        }
        script = lua_post(work / "post.lua", event)
        events = measured_wrk(server, f"{server.url}/streams/events", script, seconds)
        noop = measured_wrk(server, f"{server.url}/_bench/noop", script, seconds)
        stored = httpx.get(
            f"{server.url}/streams/events",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()
    finally:
        server.stop()
    return {
        "events": {**events, "stored": stored["summary"]["totalEvents"]},
        "noop": noop,
        "ratio": round(events["requests_per_s"] / noop["requests_per_s"], 3),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "commit_without_load": commit_latency(work),
    }


def build_database(db: Path, n: int, now: datetime) -> tuple[list[str], list[str], float]:
    """N events over SOURCES sources, TYPES types and DAYS days ending now, with direct SQL."""
    started = time.perf_counter()
    rng = random.Random(1)
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
    span = DAYS * DAY_MS
    chunk = 20_000
    for start in range(0, n, chunk):
        records = []
        for k in range(start, min(n, start + chunk)):
            timestamp = now_ms - span + (k * span) // n
            received = timestamp + rng.randrange(0, 2000)
            clock_ms[0] = received
            event_id = ids.new("evt_")
            source_id = sources[rng.randrange(SOURCES)]
            type_ = types[rng.randrange(TYPES)]
            body = {
                "id": event_id,
                "sourceId": source_id,
                "type": type_,
                "properties": {"path": f"/p/{k % 97}", "value": k % 1000},
                "context": {"ip": "127.0.0.1", "userAgent": "bench"},
                "timestamp": format_time(datetime.fromtimestamp(timestamp / 1000, UTC)),
                "receivedAt": format_time(datetime.fromtimestamp(received / 1000, UTC)),
            }
            records.append(
                EventRecord(
                    event_id,
                    source_id,
                    type_,
                    timestamp,
                    received,
                    json.dumps(body, separators=(",", ":")),
                )
            )
        conn.execute("BEGIN")
        insert_events(conn, records)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return sources, types, time.perf_counter() - started


def bench_queries(work: Path, n: int, seconds: int) -> dict:
    now = datetime.now(UTC)
    db = work / "million.db"
    sources, types, build_s = build_database(db, n, now)
    server = Server(db, work / "server.log")
    script = lua_get(work / "get.lua")
    week_ago = format_time(now - timedelta(days=7))
    until = format_time(now + timedelta(minutes=1))
    shapes = {
        "source_type_7d": f"/streams/events?sourceId={sources[3]}&eventType={types[5]}"
        f"&from={week_ago}&to={until}",
        "source_only": f"/streams/events?sourceId={sources[3]}",
        "no_filter": "/streams/events",
        "debug_read": f"/streams/sources/{sources[3]}/debug",
    }
    results: dict = {"events": n, "build_seconds": round(build_s, 1)}
    try:
        for name, path in shapes.items():
            check = httpx.get(server.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
            check.raise_for_status()
            measured = wrk(server.url + path, script, seconds, connections=1, threads=1)
            body = check.json()
            measured["page"] = len(body["data"])
            if "summary" in body:
                measured["summary"] = body["summary"]
            results[name] = measured
    finally:
        server.stop()
    return results


def bench_memory(work: Path, total_seconds: int, early_seconds: int = 30) -> dict:
    server = Server(work / "memory.db", work / "server.log")
    samples: list[tuple[int, float]] = []
    try:
        source = create_source(server.url)
        script = lua_post(
            work / "post-mem.lua",
            {"sourceId": source["id"], "type": "page_view", "properties": {"path": "/x"}},
        )
        load = threading.Thread(
            target=lambda: samples_out.update(
                wrk(f"{server.url}/streams/events", script, total_seconds, CONNECTIONS)
            )
        )
        samples_out: dict = {}
        started = time.monotonic()
        load.start()
        while load.is_alive():
            elapsed = int(time.monotonic() - started)
            samples.append((elapsed, round(server.rss_mib(), 1)))
            load.join(10)
        samples.append((int(time.monotonic() - started), round(server.rss_mib(), 1)))
    finally:
        server.stop()
    at_early = next(rss for t, rss in samples if t >= early_seconds)
    at_end = samples[-1][1]
    return {
        "load_seconds": total_seconds,
        "rss_mib_after_30s": at_early,
        "rss_mib_at_end": at_end,
        "growth_percent": round((at_end - at_early) / at_early * 100, 1),
        "samples_s_mib": samples,
        "load": samples_out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 3 minutes)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=HERE / "bench_server.json")
    parser.add_argument(
        "--only",
        choices=["throughput", "queries", "memory"],
        help="run one part and print it (nothing is written)",
    )
    args = parser.parse_args()
    post_seconds = 10 if args.quick else 20
    query_seconds = 3 if args.quick else 5
    memory_seconds = 90 if args.quick else 300
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        work = Path(tmp)
        if args.only:
            part = {
                "throughput": lambda: bench_throughput(work, post_seconds),
                "queries": lambda: bench_queries(work, args.events, query_seconds),
                "memory": lambda: bench_memory(work, memory_seconds),
            }[args.only]()
            print(json.dumps(part, indent=1))
            return
        throughput = bench_throughput(work, post_seconds)
        print(json.dumps(throughput, indent=1), file=sys.stderr)
        queries = bench_queries(work, args.events, query_seconds)
        print(json.dumps(queries, indent=1), file=sys.stderr)
        memory = bench_memory(work, memory_seconds)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": format_time(datetime.now(UTC)),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "caveat": "2 cores shared by the server, wrk and other developers' test runs",
        "throughput": throughput,
        "queries": queries,
        "memory": memory,
        "targets": {
            "events_per_s>=2500": throughput["events"]["requests_per_s"] >= 2500,
            "ratio>=0.5": throughput["ratio"] >= 0.5,
            "source_type_7d_p50<=20ms": queries["source_type_7d"]["p50_ms"] <= 20,
            "source_only_p50<=100ms": queries["source_only"]["p50_ms"] <= 100,
            "no_filter_p50<=100ms": queries["no_filter"]["p50_ms"] <= 100,
            "debug_read_p50<=10ms": queries["debug_read"]["p50_ms"] <= 10,
            "rss_growth<=10%": memory["growth_percent"] <= 10,
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"targets": result["targets"]}, indent=1))


if __name__ == "__main__":
    main()
