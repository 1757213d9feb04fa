"""Benchmark: `boltic events send --file` against `boltic server`, beside wrk and httpie.

Run: .venv/bin/python tests/bench/bench_send.py [--events 100000] [--concurrency 8]

Starts `boltic server` on a free port (temp database, --token), then measures in
the same run:
  - `boltic events send SOURCE --file F -o json` of N events: events/s, wall time,
    and the CLI process's peak resident memory (ru_maxrss of the waited child,
    cross-checked by polling /proc/PID/status VmHWM);
  - the server's own rate under wrk (16 connections, single-event POSTs), and the
    ratio CLI rate / wrk rate (target >= 0.5);
  - the median wall time (of 10) of `boltic sources list -o json` beside httpie's
    `http GET` of the same URL;
  - CPU seconds per 1,000 events of the CLI (rusage of the child) and of the server
    (/proc/PID/stat) during the send and under wrk: on 2 shared cores the client and
    the server compete, so these say which side limits the rate.
Waits (up to --max-wait seconds) for the 1-minute load average to drop below
--max-load before measuring, and records the load before and after each part.
Writes the figures, the commands and the machine to bench_send.json beside this file.
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
from datetime import UTC, datetime
from pathlib import Path

# Run as a script: this folder is on sys.path, so the shared module imports by its name.
from _common import (
    BOLTIC,
    HTTPIE,
    isolated_env,
    load_averages,
    machine,
    start_server,
    wait_for_quiet,
)

HERE = Path(__file__).resolve().parent
WRK = shutil.which("wrk") or "/usr/bin/wrk"
TOKEN = "bench-admin-token-0123456789abcdef"
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


def write_events(path: Path, count: int) -> None:
    types = ["page_view", "signup", "purchase", "login", "search"]
    with path.open("w", encoding="utf-8") as f:
        for n in range(count):
            event = {
                "type": types[n % len(types)],
                "userId": f"user-{n % 997}",
                "properties": {"n": n, "path": f"/p/{n % 50}", "value": n * 0.5},
                "context": {"locale": "en-GB", "page": {"url": f"https://shop.example/p/{n % 50}"}},
            }
            f.write(json.dumps(event, separators=(",", ":")) + "\n")


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


def run_send(
    env: dict[str, str], source_id: str, path: Path, concurrency: int, server_pid: int
) -> dict:
    command = [BOLTIC, "events", "send", source_id, "--file", str(path)]
    command += ["--concurrency", str(concurrency), "-o", "json"]
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
        raise SystemExit(f"events send failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    summary = json.loads(stdout)
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: it is this one when it grew.
    rusage_kib = after if after > before else None
    return {
        "command": " ".join(command),
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


# Like the CLI, every request carries its own Idempotency-Key, so the server does
# the same work per event for both (the key is stored beside the event).
WRK_SCRIPT = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
local n = 0
function request()
  n = n + 1
  wrk.headers["Idempotency-Key"] = "wrk-" .. tostring(tid) .. "-" .. tostring(n)
  return wrk.format()
end
"""


def run_wrk(url: str, source_id: str, workdir: Path, server_pid: int) -> dict:
    body = json.dumps(
        {"sourceId": source_id, "type": "page_view", "properties": {"path": "/wrk"}},
        separators=(",", ":"),
    )
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body, token=TOKEN))
    threads = min(2, os.cpu_count() or 1)
    command = [WRK, f"-t{threads}", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s"]
    command += ["-s", str(script), f"{url}/streams/events"]
    load_before = load_averages()
    server_cpu_before = process_cpu_seconds(server_pid)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    server_cpu = process_cpu_seconds(server_pid) - server_cpu_before
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "command": " ".join(command).replace(str(workdir), "$TMP"),
        "requests_per_second": rate,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "server_cpu_seconds_per_1000": round(server_cpu / total * 1000, 3),
        "loadavg_before": load_before,
        "loadavg_after": load_averages(),
        "output": out.strip().splitlines(),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=HERE / "bench_send.json")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--max-wait", type=float, default=300.0)
    args = parser.parse_args()
    quiet = wait_until_quiet(args.max_load, args.max_wait)

    with tempfile.TemporaryDirectory(prefix="boltic-bench-") as tmp:
        workdir = Path(tmp)
        base_env = isolated_env(workdir)
        server, url = start_server(workdir, base_env, TOKEN)
        try:
            env = cli_env(base_env, url)
            source_id = create_source(env)
            events_file = workdir / "events.ndjson"
            write_events(events_file, args.events)
            send = run_send(env, source_id, events_file, args.concurrency, server.pid)
            wrk = run_wrk(url, source_id, workdir, server.pid)
            listing = run_list_timing(url, env)
        finally:
            server.terminate()
            server.wait(timeout=30)

    cli_rate = send["summary"]["rate"]
    results = {
        "benchmark": "events send --file vs server under wrk; sources list vs httpie",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": f"{Path(sys.executable).name} tests/bench/bench_send.py "
        f"--events {args.events} --concurrency {args.concurrency}",
        "events": args.events,
        "send": send,
        "wrk": wrk,
        "ratio_cli_over_wrk": round(cli_rate / wrk["requests_per_second"], 3),
        "target_ratio": 0.5,
        "peak_memory_limit_mib": 100,
        "sources_list": listing,
        "wait_for_quiet": quiet,
        "machine": machine_facts(),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps(
            {k: results[k] for k in ("ratio_cli_over_wrk",)}
            | {
                "cli_rate": cli_rate,
                "wrk_rate": wrk["requests_per_second"],
                "peak_rss_mib": send["peak_rss_mib_ru_maxrss"] or send["peak_rss_mib_vmhwm_polled"],
                "cli_cpu_s_per_1000": send["cli_cpu_seconds_per_1000"],
                "server_cpu_s_per_1000": send["server_cpu_seconds_per_1000"],
                "load_during_send": [send["loadavg_before"], send["loadavg_after"]],
                "list_ratio": listing["ratio_boltic_over_httpie"],
            }
        )
    )


if __name__ == "__main__":
    main()
