"""Benchmark: `boltic events send --file` over the batch route and with --no-batch,
beside the server's own batch ceiling under wrk, in one run.

Run: .venv/bin/python tests/bench/bench_send.py [--events 100000] [--sweep-events 50000]

Starts `boltic server` on a free port (temp database, --token), then measures:
  - the server's batch ceiling: wrk posting bodies of 500 events to
    POST /streams/events/batch over 4 connections (bench_batch.py's load), events
    stored per second and server CPU per event, before and after the CLI runs (the
    best counts), with an Idempotency-Key per request as the CLI sends (the ratio's
    ceiling) and without (bench_batch.py's);
  - `boltic events send SOURCE --file F -o json` of N events with the defaults
    (batches): events/s, wall time, CPU per 1,000 events of the CLI and of the
    server, and the CLI's peak resident memory (ru_maxrss of the waited child,
    cross-checked by polling /proc/PID/status VmHWM); the ratio to the ceiling;
  - the same with --concurrency 1, 2, 4, 8 on --sweep-events events: what the
    default --concurrency for batches is chosen from;
  - the same file with --no-batch (single POSTs, --concurrency 8);
  - `boltic events generate SOURCE --count M` (sample traffic through the same sender);
  - the median wall time (of 10) of `boltic sources list -o json` beside httpie's.
Records the load average before and after each part (the machine is shared) and the
library versions. Writes bench_send.json beside this file. Needs wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

# Run as a script: this folder is on sys.path, so the shared modules import by their names.
from _common import (
    BOLTIC,
    HTTPIE,
    isolated_env,
    load_averages,
    machine,
    start_server,
    wait_for_quiet,
)
from bench_batch import BATCH_CONNECTIONS, BATCH_ITEMS, make_event, versions
from bench_server import TOKEN, lua_post  # the wrk script carries bench_server's token
from bench_server import wrk as run_wrk_load

HERE = Path(__file__).resolve().parent
WRK = shutil.which("wrk") or "/usr/bin/wrk"
WRK_SECONDS = 10
WRK_CONNECTIONS = 16
TIMING_RUNS = 10
LOAD_AT_START = load_averages()


def cli_env(base: dict[str, str], url: str) -> dict[str, str]:
    return {**base, "BOLTIC_API_URL": url, "BOLTIC_TOKEN": TOKEN, "NO_COLOR": "1"}


def create_source(env: dict[str, str]) -> str:
    out = subprocess.run(
        [BOLTIC, "sources", "create", "--name", "bench", "--type", "server", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)["id"]


def write_events(path: Path, source_id: str, count: int) -> None:
    """NDJSON of ``count`` events shaped like the wrk load's (bench_batch.make_event)."""
    with path.open("w", encoding="utf-8") as f:
        for n in range(count):
            f.write(json.dumps(make_event(source_id, n), separators=(",", ":")) + "\n")


def count_events(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


# Like the CLI, each batch can carry its own Idempotency-Key (the server then keeps the
# answer beside the events): the ceiling the CLI is compared with makes the same requests.
IDEMPOTENCY_LUA = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
function request()
  n = n + 1
  wrk.headers["Idempotency-Key"] = "wrk-RUN-" .. tostring(tid) .. "-" .. tostring(n)
  return wrk.format()
end
"""


def run_batch_ceiling(
    url: str, source_id: str, db: Path, workdir: Path, seconds: int, pid: int, *, keys: bool
) -> dict:
    """The server's batch ceiling: events stored per second under wrk (500 per body)."""
    script = lua_post(
        workdir / "batch.lua", {"batch": [make_event(source_id, i) for i in range(BATCH_ITEMS)]}
    )
    if keys:
        # A new prefix per run: keys seen before would be answered as replays.
        run = uuid.uuid4().hex[:12]
        script.write_text(script.read_text() + IDEMPOTENCY_LUA.replace("RUN", run))
    load_before = load_averages()
    before = count_events(db)
    server_cpu_before = process_cpu_seconds(pid)
    started = time.monotonic()
    result = run_wrk_load(f"{url}/streams/events/batch", script, seconds, BATCH_CONNECTIONS)
    elapsed = time.monotonic() - started
    server_cpu = process_cpu_seconds(pid) - server_cpu_before
    stored = count_events(db) - before
    if result["non_2xx"]:
        raise SystemExit(f"batch ceiling: {result['non_2xx']} answers were not 2xx")
    result["command"] = result["command"].replace(str(workdir), "$TMP")
    return {
        **result,
        "idempotency_keys": keys,
        "stored": stored,
        "events_per_second": round(stored / elapsed),
        "server_cpu_seconds_per_1000": round(server_cpu / max(stored, 1) * 1000, 3),
        "loadavg_before": load_before,
        "loadavg_after": load_averages(),
    }


def peak_rss_poller(pid: int, peak: list[int], done: threading.Event) -> None:
    """Keeps the highest VmHWM (kB) seen in /proc/PID/status until ``done``."""
    status = Path(f"/proc/{pid}/status")
    while not done.is_set():
        try:
            match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
        except OSError:
            return
        if match:
            peak[0] = max(peak[0], int(match.group(1)))
        done.wait(0.05)


def wait_until_quiet(max_load: float, max_wait: float) -> dict:
    waited = wait_for_quiet(max_load, max_wait, poll_seconds=10)
    return {"waited_seconds": round(waited), "loadavg": load_averages()}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_send(env: dict[str, str], command: list[str], server_pid: int, workdir: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cli_cpu_before = children_cpu_seconds()
    server_cpu_before = process_cpu_seconds(server_pid)
    load_before = load_averages()
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    polled = [0]
    done = threading.Event()
    poller = threading.Thread(target=peak_rss_poller, args=(proc.pid, polled, done))
    poller.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    server_cpu = process_cpu_seconds(server_pid) - server_cpu_before
    cli_cpu = children_cpu_seconds() - cli_cpu_before
    done.set()
    poller.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise SystemExit(f"{command[1:3]} failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    summary = json.loads(stdout)
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: it is this one when it grew.
    rusage_kib = after if after > before else None
    return {
        "command": " ".join(command).replace(str(workdir), "$TMP"),
        "summary": summary,
        "wall_seconds": round(wall, 3),
        "events_per_second_wall": round(summary["sent"] / wall, 1),
        "peak_rss_mib_ru_maxrss": round(rusage_kib / 1024, 1) if rusage_kib else None,
        "peak_rss_mib_vmhwm_polled": round(polled[0] / 1024, 1) if polled[0] else None,
        "cli_cpu_seconds_per_1000": round(cli_cpu / summary["sent"] * 1000, 3),
        "server_cpu_seconds_per_1000": round(server_cpu / summary["sent"] * 1000, 3),
        "loadavg_before": load_before,
        "loadavg_after": load_averages(),
    }


def median_wall(command: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(TIMING_RUNS):
        started = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_list_timing(url: str, env: dict[str, str]) -> dict:
    boltic = [BOLTIC, "sources", "list", "-o", "json"]
    httpie = [HTTPIE, "--ignore-stdin", "GET", f"{url}/streams/sources"]
    httpie.append(f"Authorization:Bearer {TOKEN}")
    boltic_s = median_wall(boltic, env)
    httpie_s = median_wall(httpie, env)
    return {
        "boltic_command": " ".join(boltic),
        "httpie_command": " ".join(httpie).replace(TOKEN, "$TOKEN"),
        "runs": TIMING_RUNS,
        "boltic_median_seconds": round(boltic_s, 4),
        "httpie_median_seconds": round(httpie_s, 4),
        "ratio_boltic_over_httpie": round(boltic_s / httpie_s, 3),
    }


def machine_facts() -> dict:
    return machine(
        loadavg_at_start=LOAD_AT_START,
        loadavg_at_end=load_averages(),
        note="shared machine: 2 cores used by several developers at once; "
        "absolute figures are noisy, the ratios measured in the same run are the signal",
    )


def send_command(source_id: str, path: Path, *flags: str) -> list[str]:
    return [BOLTIC, "events", "send", source_id, "--file", str(path), *flags, "-o", "json"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sweep-events", type=int, default=50_000)
    parser.add_argument("--generate-events", type=int, default=50_000)
    parser.add_argument("--wrk-seconds", type=int, default=WRK_SECONDS)
    parser.add_argument("--out", type=Path, default=HERE / "bench_send.json")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--max-wait", type=float, default=300.0)
    args = parser.parse_args()
    quiet = wait_until_quiet(args.max_load, args.max_wait)

    with tempfile.TemporaryDirectory(prefix="boltic-bench-") as tmp:
        workdir = Path(tmp)
        base_env = isolated_env(workdir)
        server, url = start_server(workdir, base_env, TOKEN)
        db = workdir / "bench.db"
        pid = server.pid
        try:
            env = cli_env(base_env, url)
            source_id = create_source(env)
            events_file = workdir / "events.ndjson"
            write_events(events_file, source_id, args.events)
            sweep_file = workdir / "sweep.ndjson"
            write_events(sweep_file, source_id, args.sweep_events)
            ceiling = [
                run_batch_ceiling(url, source_id, db, workdir, args.wrk_seconds, pid, keys=keys)
                for keys in (True, False)
            ]
            batch = run_send(env, send_command(source_id, events_file), pid, workdir)
            sweep = {
                str(n): run_send(
                    env, send_command(source_id, sweep_file, "--concurrency", str(n)), pid, workdir
                )
                for n in (1, 2, 4, 8)
            }
            ceiling += [
                run_batch_ceiling(url, source_id, db, workdir, args.wrk_seconds, pid, keys=keys)
                for keys in (True, False)
            ]
            single = run_send(env, send_command(source_id, events_file, "--no-batch"), pid, workdir)
            generate_command = [BOLTIC, "events", "generate", source_id]
            generate_command += ["--count", str(args.generate_events), "-o", "json"]
            generate = run_send(env, generate_command, pid, workdir)
            listing = run_list_timing(url, env)
        finally:
            server.terminate()
            server.wait(timeout=30)

    ceiling_rate = max(run["events_per_second"] for run in ceiling if run["idempotency_keys"])
    plain_rate = max(run["events_per_second"] for run in ceiling if not run["idempotency_keys"])
    cli_rate = batch["summary"]["rate"]
    sweep_rates = {n: run["summary"]["rate"] for n, run in sweep.items()}
    peak = batch["peak_rss_mib_ru_maxrss"] or batch["peak_rss_mib_vmhwm_polled"]
    results = {
        "benchmark": "events send --file (batches, --no-batch) vs the server's batch ceiling",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": f"{Path(sys.executable).name} tests/bench/bench_send.py "
        f"--events {args.events} --sweep-events {args.sweep_events}",
        "libraries": versions(),
        "events": args.events,
        "batch_ceiling_under_wrk": {
            "best_events_per_second_with_keys": ceiling_rate,
            "best_events_per_second_without_keys": plain_rate,
            "runs": ceiling,
        },
        "send_batches_default": batch,
        "concurrency_sweep": {"events": args.sweep_events, "rates": sweep_rates, "runs": sweep},
        "send_no_batch": single,
        "generate": generate,
        "cli_events_per_second": cli_rate,
        "ratio_cli_over_batch_ceiling": round(cli_rate / ceiling_rate, 3),
        "ratio_cli_over_batch_ceiling_without_keys": round(cli_rate / plain_rate, 3),
        "ratio_batch_over_no_batch": round(cli_rate / single["summary"]["rate"], 2),
        "cli_peak_rss_mib": peak,
        "targets": {
            "cli_events_per_second": 15000,
            "ratio_cli_over_batch_ceiling": 0.7,
            "peak_memory_mib": 100,
        },
        "sources_list": listing,
        "wait_for_quiet": quiet,
        "machine": machine_facts(),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps(
            {
                "cli_rate": cli_rate,
                "batch_ceiling": ceiling_rate,
                "batch_ceiling_without_keys": plain_rate,
                "ratio_cli_over_ceiling": results["ratio_cli_over_batch_ceiling"],
                "no_batch_rate": single["summary"]["rate"],
                "generate_rate": generate["summary"]["rate"],
                "sweep": sweep_rates,
                "peak_rss_mib": peak,
                "load_during_send": [batch["loadavg_before"], batch["loadavg_after"]],
            }
        )
    )


if __name__ == "__main__":
    main()
