"""Benchmark: `boltic debug tail` against `boltic server`: latency, gap-free rate, memory.

Run: .venv/bin/python tests/bench/bench_tail.py [--quick]

Starts `boltic server` on a free port (temp database, --token) and
`boltic debug tail SOURCE -o ndjson --history 0` (default settings) as
subprocesses, then measures:
  - latency from the 202 of a POST to the tail's printed line (p50, p99), events
    sent one at a time at random 20-400 ms intervals so every polling phase is hit;
  - a ladder of send rates (paced, 4 keep-alive connections of raw HTTP/1.1): for
    each, the rate achieved, events printed, gaps reported; the highest rate the
    tail followed with zero gaps and nothing missing, then twice that rate;
  - the tail's resident memory (VmRSS) after 1 minute and after 10 minutes at
    200 events/s (--quick: after 1 and 3 minutes, and shorter ladder steps).
Writes the figures, the command and the machine to bench_tail.json beside this file.
The machine may be shared: the load average at start and end is recorded.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

# Run as a script: this folder is on sys.path, so the shared module imports by its name.
from _common import BOLTIC, isolated_env, load_averages, machine, start_server

HERE = Path(__file__).resolve().parent
TOKEN = "bench-admin-token-0123456789abcdef"
CONNECTIONS = 4
LADDER = [100, 200, 400, 800, 1200, 1600, 2400, 3200]


# -- processes -----------------------------------------------------------------------


class TailProcess:
    """`boltic debug tail -o ndjson` with every line timestamped as it arrives."""

    def __init__(self, env: dict[str, str], source_id: str, workdir: Path):
        self.command = [BOLTIC, "debug", "tail", source_id, "-o", "ndjson", "--history", "0"]
        self.stderr = open(workdir / "tail.err", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env
        )
        self.lines: queue.Queue[tuple[float, dict]] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put((time.monotonic(), json.loads(line)))

    def wait_connected(self) -> None:
        while self.lines.get(timeout=30)[1]["kind"] != "connected":
            pass

    def drain(self, quiet_for: float = 3.0) -> list[tuple[float, dict]]:
        """Everything printed until nothing came for ``quiet_for`` seconds."""
        out = []
        while True:
            try:
                out.append(self.lines.get(timeout=quiet_for))
            except queue.Empty:
                return out

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return round(kib / 1024, 1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.stderr.close()


# -- senders -------------------------------------------------------------------------


def http_post(url: str, body: dict) -> dict:
    import httpx

    r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    r.raise_for_status()
    return r.json()


class RawSender:
    """Paced single-event POSTs over keep-alive sockets: cheap enough to outrun the server."""

    def __init__(self, url: str, source_id: str):
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.path = parts.path + "/streams/events"
        self.source_id = source_id

    def request(self, properties: dict) -> bytes:
        body = json.dumps(
            {"sourceId": self.source_id, "type": "bench", "properties": properties}
        ).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def run(self, rate: float, seconds: float, step: int) -> dict:
        """Send at ``rate`` for ``seconds``; events carry ``step`` and a sequence number."""
        total = int(rate * seconds)
        accepted = [0] * CONNECTIONS
        start = time.monotonic() + 0.2

        def connection(index: int) -> None:
            sock = socket.create_connection(self.address)
            reader = sock.makefile("rb")
            try:
                for n in range(index, total, CONNECTIONS):
                    delay = start + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    sock.sendall(self.request({"step": step, "n": n}))
                    if read_status(reader) == 202:
                        accepted[index] += 1
            finally:
                reader.close()
                sock.close()

        threads = [threading.Thread(target=connection, args=(i,)) for i in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
        return {
            "target_rate": rate,
            "sent": total,
            "accepted": sum(accepted),
            "achieved_rate": round(sum(accepted) / elapsed, 1),
        }


def read_status(reader) -> int:
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    reader.read(length)
    return status


# -- phases ----------------------------------------------------------------------------


def measure_latency(url: str, source_id: str, tail: TailProcess, count: int) -> dict:
    rng = random.Random(5)
    sent_at: dict[str, float] = {}
    for n in range(count):
        time.sleep(rng.uniform(0.02, 0.4))
        answer = http_post(
            f"{url}/streams/events",
            {"sourceId": source_id, "type": "latency", "properties": {"n": n}},
        )
        sent_at[answer["eventId"]] = time.monotonic()
    printed = {r["id"]: at for at, r in tail.drain() if r.get("kind") == "event"}
    latencies = sorted((printed[i] - sent_at[i]) * 1000 for i in sent_at if i in printed)
    return {
        "events": count,
        "printed": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "max_ms": round(latencies[-1], 1),
    }


def ladder_step(sender: RawSender, tail: TailProcess, rate: float, seconds: float, step: int):
    sent = sender.run(rate, seconds, step)
    records = [r for _, r in tail.drain()]
    shown = {
        r["properties"]["n"]
        for r in records
        if r.get("kind") == "event" and r.get("properties", {}).get("step") == step
    }
    gaps = [r for r in records if r.get("kind") == "gap"]
    return {
        **sent,
        "printed": len(shown),
        "gaps": len(gaps),
        "reconnects": sum(1 for r in records if r.get("kind") == "reconnecting"),
        "missing": sent["accepted"] - len(shown),
    }


def measure_rates(url: str, source_id: str, tail: TailProcess, seconds: float) -> dict:
    sender = RawSender(url, source_id)
    steps = []
    best = None
    for step, rate in enumerate(LADDER, start=1):
        result = ladder_step(sender, tail, rate, seconds, step)
        steps.append(result)
        print(json.dumps(result), file=sys.stderr)
        clean = result["gaps"] == 0 and result["missing"] == 0
        server_bound = result["achieved_rate"] < 0.9 * rate
        if clean:
            best = result
        if not clean or server_bound:
            break
    doubled = None
    if best is not None:
        doubled = ladder_step(sender, tail, best["target_rate"] * 2, seconds, len(steps) + 1)
        print(json.dumps(doubled), file=sys.stderr)
    return {
        "step_seconds": seconds,
        "connections": CONNECTIONS,
        "ladder": steps,
        "highest_zero_gap_rate": best and best["achieved_rate"],
        "at_twice_that_rate": doubled,
    }


def measure_memory(url: str, source_id: str, env, workdir: Path, minutes: list[int]) -> dict:
    tail = TailProcess(env, source_id, workdir)
    tail.wait_connected()
    sender = RawSender(url, source_id)
    samples = {}
    start = time.monotonic()
    previous = 0
    for mark in minutes:
        sender.run(200, mark * 60 - previous, step=1000 + mark)
        previous = mark * 60
        samples[f"rss_mib_after_{mark}_min"] = tail.rss_mib()
        print(json.dumps(samples), file=sys.stderr)
    records = tail.drain(quiet_for=2.0)
    tail.stop()
    values = list(samples.values())
    base, last = values[0], values[-1]
    return {
        "rate": 200,
        "minutes": minutes,
        **samples,
        "growth_percent": round((last - base) / base * 100, 1),
        "gaps": sum(1 for _, r in records if r.get("kind") == "gap"),
        "seconds": round(time.monotonic() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="memory at 1 and 3 min, short steps")
    parser.add_argument("--out", type=Path, default=HERE / "bench_tail.json")
    args = parser.parse_args()
    load_at_start = load_averages()
    step_seconds = 4.0 if args.quick else 10.0
    minutes = [1, 3] if args.quick else [1, 10]

    with tempfile.TemporaryDirectory(prefix="boltic-bench-tail-") as tmp:
        workdir = Path(tmp)
        base_env = {**isolated_env(workdir), "NO_COLOR": "1"}
        server, url = start_server(workdir, base_env, TOKEN)
        env = {**base_env, "BOLTIC_API_URL": url, "BOLTIC_TOKEN": TOKEN}
        try:
            source_id = http_post(f"{url}/streams/sources", {"name": "bench", "type": "server"})[
                "id"
            ]
            tail = TailProcess(env, source_id, workdir)
            tail.wait_connected()
            latency = measure_latency(url, source_id, tail, 60 if args.quick else 150)
            print(json.dumps(latency), file=sys.stderr)
            rates = measure_rates(url, source_id, tail, step_seconds)
            tail.stop()
            memory = measure_memory(url, source_id, env, workdir, minutes)
        finally:
            server.terminate()
            server.wait(timeout=30)

    results = {
        "benchmark": "debug tail: 202-to-line latency, gap-free rate, memory over time",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python tests/bench/bench_tail.py" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "tail_command": "boltic debug tail SOURCE -o ndjson --history 0 (default --interval 1s)",
        "latency": latency,
        "rates": rates,
        "memory": memory,
        "memory_growth_limit_percent": 10,
        "machine": machine(
            load_average_at_start=load_at_start,
            load_average_at_end=load_averages(),
            note="shared machine: other developers' tests ran at the same time",
        ),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
