"""Benchmark: `boltic events query --all` over many events with shared timestamps.

Run: .venv/bin/python tests/bench/bench_query_all.py [--events 6288] [--runs 3]

Starts `boltic server` in a subprocess (temp database), stores ``--events`` events in
batches with timestamps 3 ms apart, 1 to 5 events sharing each (seeded, so every run
stores the same set), then times the installed `boltic -v events query --all -o
ndjson` with and without `--limit 1` (the walk's page size is its own, so both should
take one request per 1,000 events). Each run is checked: every stored event printed
exactly once, exit 0, no warning. Records the median seconds, the requests (from
`-v`), the load average before and after, and writes bench_query_all.json beside
this file.
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
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import BOLTIC, isolated_env, load_averages, machine, start_server  # noqa: E402

TOKEN = "bench-query-all-token"


def post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def seed(url: str, count: int) -> str:
    """``count`` events with 1..5 sharing each timestamp; the source's id."""
    source = post(url, "/streams/sources", {"name": "bench", "type": "server"})
    rng = random.Random(1)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    events: list[dict] = []
    while len(events) < count:
        when = base + timedelta(milliseconds=len(events) * 3)
        stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for _ in range(min(rng.choice([1, 1, 2, 3, 5]), count - len(events))):
            events.append({"sourceId": source["id"], "type": "t", "timestamp": stamp})
    for start in range(0, len(events), 500):
        answer = post(url, "/streams/events/batch", {"batch": events[start : start + 500]})
        assert answer["rejected"] == 0, answer
    return source["id"]


def run(env: dict[str, str], extra: list[str], count: int) -> dict:
    command = [BOLTIC, "-v", "events", "query", "--all", *extra, "-o", "ndjson"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    ids = [json.loads(line)["id"] for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stderr
    assert len(ids) == len(set(ids)) == count, (len(ids), len(set(ids)))
    assert "Warning" not in done.stderr, done.stderr
    requests = sum(1 for line in done.stderr.splitlines() if line.startswith("GET "))
    return {"seconds": seconds, "requests": requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=6288)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load_before = load_averages()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = isolated_env(workdir)
        server, url = start_server(workdir, env, TOKEN)
        try:
            seed(url, args.events)
            env = {**env, "BOLTIC_API_URL": url, "BOLTIC_TOKEN": TOKEN}
            results = {}
            for label, extra in (("default", []), ("limit_1", ["--limit", "1"])):
                runs = [run(env, extra, args.events) for _ in range(args.runs)]
                results[label] = {
                    "command": f"boltic -v events query --all {' '.join(extra)} -o ndjson".replace(
                        "  ", " "
                    ),
                    "median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
                    "requests": runs[0]["requests"],
                }
        finally:
            server.terminate()
            server.wait(10)
    report = {
        "events": args.events,
        "runs": args.runs,
        "results": results,
        "load_before": load_before,
        "load_after": load_averages(),
        "machine": machine(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (HERE / "bench_query_all.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
