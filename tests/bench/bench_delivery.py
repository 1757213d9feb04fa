"""Benchmark: webhook delivery by `boltic server` while events are ingested.

Run: .venv/bin/python tests/bench/bench_delivery.py [--quick] [--rate 1000] [--seconds 20]

Measures, in one run, against `boltic server` in a subprocess (temp database) and a
fast loopback receiver in another (`python -m tests.receivers --arrivals FILE`,
asyncio, answers 200 and notes when each event arrived):

  1. delivery under a steady ingest of --rate single events/s (POST /streams/events
     from this process: aiohttp, 64 connections, paced open loop) to a source with one
     active webhook destination: events accepted, delivered, deliveries/s, the lag from
     each 202 to the event's arrival at the receiver (p50, p90, p99, max), and how long
     the last delivery came after the last 202 (does delivery keep up?);
  2. single-event ingest at full speed (wrk, 16 connections, as bench_server.py) on a
     server with no destination and on one with one active destination, in the same
     run: events/s each and the ratio, CPU per request of each server thread and of
     the receiver. Parts 1 and 2 run with the worker in its own thread (the default)
     and, for comparison, on the serving loop (BOLTIC_SERVER_DELIVERY_IN_LOOP=1); the
     one-destination ingest runs go loop, thread, thread, loop, so that neither gains
     from a load that moves while the benchmark runs.

With ``--drain N [--baseline TREE]`` it measures instead how fast the worker empties
a backlog (issue 19: the cost of reading the destination before each attempt): N
events ingested in batches of 500 as fast as the server takes them, one active
webhook destination, the fast receiver; deliveries/s from the first arrival to the
last, and CPU per delivery of the server's delivery thread (and of PostgreSQL's
backends), on SQLite and on PostgreSQL (a throwaway one, tests/pg.py), for this tree
and for TREE (another worktree, e.g. of main: "before"), runs in the order before,
after, after, before per store. Writes bench_delivery_drain.json.

Targets (issue 15): delivery keeps up with 1,000 events/s with lag p99 <= 1 s, and
ingest with one destination >= 0.5 of ingest with none. The machine has 2 cores shared
with the receiver, the load generator and other developers' work: the load average is
recorded before and after. Writes bench_delivery.json beside this file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import httpx  # noqa: E402
from _common import load_averages, machine  # noqa: E402
from bench_server import Server, lua_post, measured_wrk, percentiles  # noqa: E402

TOKEN = "bench-server-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONNECTIONS = 16
PACED_CONNECTIONS = 64


def start_receiver(arrivals: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "tests.receivers", "--arrivals", str(arrivals)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(30)


def setup(url: str, receiver_url: str | None) -> str:
    source = httpx.post(
        f"{url}/streams/sources", json={"name": "bench", "type": "server"}, headers=AUTH
    ).json()
    if receiver_url is not None:
        response = httpx.post(
            f"{url}/streams/destinations",
            json={"name": "hook", "type": "webhook", "config": {"url": receiver_url}},
            headers=AUTH,
        )
        response.raise_for_status()
    return source["id"]


async def paced_ingest(url: str, source_id: str, rate: int, seconds: float) -> dict[str, float]:
    """Send ``rate`` events/s for ``seconds`` (open loop: each event has its due time);
    returns each accepted event's id with the time its 202 arrived."""
    import aiohttp

    accepted: dict[str, float] = {}
    failures = 0
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    counter = iter(range(total))
    body_prefix = f'{{"sourceId":"{source_id}","type":"page_view","properties":{{"n":'

    async def lane(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for n in counter:
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            data = body_prefix + f"{n}}}}}"
            async with session.post(
                f"{url}/streams/events",
                data=data,
                headers={**AUTH, "Content-Type": "application/json"},
            ) as response:
                answer = await response.read()
                if response.status == 202:
                    accepted[json.loads(answer)["eventId"]] = time.time()
                else:
                    failures += 1

    # Enough connections that the server's latency does not cap the rate (open loop).
    connector = aiohttp.TCPConnector(limit=PACED_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(lane(session) for _ in range(PACED_CONNECTIONS)))
    if failures:
        print(f"{failures} sends failed", file=sys.stderr)
    return accepted


def start_server(work: Path, thread: bool) -> Server:
    """`boltic server` on ``work/bench.db``; ``thread``: the worker in its own thread
    (the default), else on the serving loop (BOLTIC_SERVER_DELIVERY_IN_LOOP=1)."""
    if not thread:
        os.environ["BOLTIC_SERVER_DELIVERY_IN_LOOP"] = "1"
    try:
        return Server(work / "bench.db", work / "server.log")
    finally:
        os.environ.pop("BOLTIC_SERVER_DELIVERY_IN_LOOP", None)


def bench_delivery(work: Path, rate: int, seconds: float, thread: bool = True) -> dict:
    arrivals_file = work / "arrivals.txt"
    receiver, receiver_url = start_receiver(arrivals_file)
    server = start_server(work, thread)
    url = server.url
    try:
        source_id = setup(url, receiver_url)
        began = time.time()
        accepted = asyncio.run(paced_ingest(url, source_id, rate, seconds))
        sent_for = time.time() - began
        last_202 = max(accepted.values())
        # Let delivery drain (it must, for the lag of the last events to count).
        deadline = time.time() + 60
        while time.time() < deadline:
            pending = httpx.get(
                f"{url}/streams/destinations",
                headers=AUTH,
            ).json()["data"][0]["id"]
            rows = httpx.get(
                f"{url}/streams/destinations/{pending}/deliveries",
                params={"status": "pending", "limit": 1},
                headers=AUTH,
            ).json()["data"]
            if not rows:
                break
            time.sleep(0.2)
    finally:
        server.stop()
        stop(receiver)
    arrivals: dict[str, float] = {}
    duplicates = 0
    for line in arrivals_file.read_text().splitlines():
        at, event_id = line.split(" ", 1)
        if event_id in arrivals:
            duplicates += 1
            continue
        arrivals[event_id] = float(at)
    lags = [(arrivals[e] - t) * 1000 for e, t in accepted.items() if e in arrivals]
    times = sorted(arrivals.values())
    return {
        "target_rate": rate,
        "seconds": seconds,
        "accepted": len(accepted),
        "ingest_events_per_s": round(len(accepted) / sent_for, 1),
        "delivered": len(lags),
        "missing": len(accepted) - len(lags),
        "duplicates": duplicates,
        "deliveries_per_s": round(len(times) / (times[-1] - times[0]), 1) if len(times) > 1 else 0,
        "lag_ms": {
            **percentiles(lags),
            "max_ms": round(max(lags), 1) if lags else None,
        },
        "last_delivery_after_last_202_ms": round((times[-1] - last_202) * 1000, 1)
        if times
        else None,
    }


def bench_drain(work: Path, db: str, events: int, tree: Path, pg: object | None) -> dict:
    """Empty a backlog of ``events`` deliveries (see the module docstring) with
    ``tree``'s server on ``db`` (a SQLite path or a PostgreSQL URL)."""
    from bench_postgres import Server as DbServer
    from bench_postgres import postgres_cpu_s

    work.mkdir()
    arrivals_file = work / "arrivals.txt"
    receiver, receiver_url = start_receiver(arrivals_file)
    server = DbServer(db, work, work / "server.log", tree=tree)
    url = server.url
    try:
        source_id = setup(url, receiver_url)
        destination_id = httpx.get(f"{url}/streams/destinations", headers=AUTH).json()["data"][0][
            "id"
        ]
        cpu_before = server.threads().get("boltic-delivery", {}).get("cpu_s", 0.0)
        pg_before = postgres_cpu_s(pg) if pg is not None else 0.0
        began = time.time()
        with httpx.Client(headers=AUTH, timeout=60) as client:
            for start in range(0, events, 500):
                items = [
                    {"sourceId": source_id, "type": "page_view", "properties": {"n": n}}
                    for n in range(start, min(start + 500, events))
                ]
                client.post(f"{url}/streams/events/batch", json={"batch": items}).raise_for_status()
            ingested_s = time.time() - began
            deadline = time.time() + 300
            while time.time() < deadline:
                rows = client.get(
                    f"{url}/streams/destinations/{destination_id}/deliveries",
                    params={"status": "pending", "limit": 1},
                ).json()["data"]
                if not rows:
                    break
                time.sleep(0.1)
        delivery_cpu = server.threads().get("boltic-delivery", {}).get("cpu_s", 0.0) - cpu_before
        pg_cpu = postgres_cpu_s(pg) - pg_before if pg is not None else None
    finally:
        server.stop()
        stop(receiver)
    times = sorted(float(line.split(" ", 1)[0]) for line in arrivals_file.read_text().splitlines())
    result = {
        "events": events,
        "ingest_seconds": round(ingested_s, 2),
        "delivered": len(times),
        "deliveries_per_s": round(len(times) / (times[-1] - times[0]), 1),
        "delivery_thread_cpu_us_per_delivery": round(delivery_cpu / max(len(times), 1) * 1e6, 1),
    }
    if pg_cpu is not None:
        # Ingest's share included: the same in both trees.
        result["postgres_cpu_us_per_event_incl_ingest"] = round(pg_cpu / events * 1e6, 1)
    return result


def drain_main(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.pg import start_postgres

    load_before = load_averages()
    trees = (
        {"before": Path(args.baseline).resolve(), "after": ROOT}
        if args.baseline
        else {"after": ROOT}
    )
    order = ["before", "after", "after", "before"] if args.baseline else ["after", "after"]
    runs: dict[str, dict[str, list[dict]]] = {}
    pg = start_postgres()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
            work = Path(tmp)
            for store in ("sqlite", "postgresql"):
                for n, name in enumerate(order):
                    sub = work / f"{store}-{name}-{n}"
                    db = str(sub / "bench.db") if store == "sqlite" else pg.url(pg.new_database())
                    result = bench_drain(
                        sub, db, args.drain, trees[name], pg if store == "postgresql" else None
                    )
                    runs.setdefault(store, {}).setdefault(name, []).append(result)
                    print("drain", store, name, result, file=sys.stderr)
    finally:
        pg.destroy()
    summary = {
        store: {
            name: {
                "deliveries_per_s": mean([r["deliveries_per_s"] for r in rs]),
                "delivery_thread_cpu_us_per_delivery": mean(
                    [r["delivery_thread_cpu_us_per_delivery"] for r in rs]
                ),
            }
            for name, rs in by_tree.items()
        }
        for store, by_tree in runs.items()
    }
    result = {
        "command": " ".join([".venv/bin/python", "tests/bench/bench_delivery.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(load_average_before=load_before, load_average_after=load_averages()),
        "trees": {
            name: subprocess.run(
                ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            + (" + uncommitted changes" if _dirty(tree) else "")
            for name, tree in trees.items()
        },
        "summary": summary,
        "runs": runs,
    }
    out = HERE / "bench_delivery_drain.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _dirty(tree: Path) -> bool:
    status = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--", "boltic_cli"],
        capture_output=True,
        text=True,
    )
    return bool(status.stdout.strip())


def bench_ingest(
    work: Path, seconds: int, with_destination: bool, thread: bool = True, run: int = 0
) -> dict:
    name = ("with" if with_destination else "without") + ("-thread" if thread else "") + str(run)
    arrivals = work / f"arrivals-{name}.txt"
    receiver, receiver_url = start_receiver(arrivals)
    sub = work / name
    sub.mkdir()
    server = start_server(sub, thread)
    url = server.url
    try:
        source_id = setup(url, receiver_url if with_destination else None)
        script = lua_post(sub / "post.lua", {"sourceId": source_id, "type": "page_view"})
        receiver_cpu = process_cpu(receiver.pid)
        result = measured_wrk(server, f"{url}/streams/events", script, seconds)
        receiver_cpu = process_cpu(receiver.pid) - receiver_cpu
        time.sleep(2)
    finally:
        server.stop()
        stop(receiver)
    delivered = len(arrivals.read_text().splitlines())
    return {
        "events_per_s": result["requests_per_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "non_2xx": result["non_2xx"],
        "requests": result["requests"],
        "delivered_within_2s_after": delivered,
        "server_threads_per_request": result["server_threads_per_request"],
        "receiver_cpu_us_per_request": round(receiver_cpu / result["requests"] * 1e6, 1),
    }


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument(
        "--drain", type=int, metavar="N", help="measure emptying a backlog of N deliveries"
    )
    parser.add_argument(
        "--baseline", metavar="TREE", help="with --drain: also run TREE's server (before)"
    )
    args = parser.parse_args()
    if args.drain:
        drain_main(args)
        return
    seconds = args.seconds or (8 if args.quick else 20)
    wrk_seconds = 5 if args.quick else 10
    load_before = load_averages()
    # The worker in a thread of its own (the default) and on the serving loop, in the
    # order A B B A, so neither gains from running later on a machine whose load moves.
    order = [False, True, True, False]
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        work = Path(tmp)
        delivery = {}
        for thread in (False, True):
            name = "thread" if thread else "loop"
            (work / f"delivery-{name}").mkdir()
            delivery[name] = bench_delivery(work / f"delivery-{name}", args.rate, seconds, thread)
            print("delivery", name, delivery[name], file=sys.stderr)
        nones = [bench_ingest(work, wrk_seconds, with_destination=False, run=0)]
        ones: dict[str, list[dict]] = {"loop": [], "thread": []}
        for n, thread in enumerate(order, start=1):
            result = bench_ingest(work, wrk_seconds, with_destination=True, thread=thread, run=n)
            ones["thread" if thread else "loop"].append(result)
            print("ingest, one destination", thread, result, file=sys.stderr)
        nones.append(bench_ingest(work, wrk_seconds, with_destination=False, run=9))
        print("ingest, no destination", nones, file=sys.stderr)
    none_rate = mean([r["events_per_s"] for r in nones])
    ratios = {
        name: round(mean([r["events_per_s"] for r in runs]) / none_rate, 3)
        for name, runs in ones.items()
    }
    result = {
        "command": " ".join([".venv/bin/python", "tests/bench/bench_delivery.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(load_average_before=load_before, load_average_after=load_averages()),
        # The worker in its own thread (the default) and on the serving loop
        # (BOLTIC_SERVER_DELIVERY_IN_LOOP=1).
        "delivery_while_ingesting": delivery,
        "ingest_no_destination": nones,
        "ingest_one_destination": ones,
        "ingest_ratio_one_to_none": ratios,
        "targets": {
            "keeps_up_with_events_per_s": 1000,
            "lag_p99_ms_at_most": 1000,
            "ingest_ratio_at_least": 0.5,
        },
    }
    out = HERE / "bench_delivery.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
