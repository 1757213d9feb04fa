"""Benchmark: the server's batch ceiling (POST /streams/events/batch, 500 events per body)
beside its single-POST ceiling, under wrk, and where a batch item's microseconds go.

Run: .venv/bin/python tests/bench/bench_batch.py [--seconds 10] [--rounds 2]

Against `boltic server` in a subprocess (temp database), alternating the two loads
``--rounds`` times (the machine is shared: alternating spreads the noise over both):
  - single: POST /streams/events, one event per request, 16 keep-alive connections;
  - batch: POST /streams/events/batch, bodies of 500 events (~100 KiB), 4 connections;
events/s is what the database holds afterwards divided by wrk's duration (every
answer is sent after the commit, so stored == acknowledged; wrk's non-2xx must be 0),
with the CPU time and run-queue wait per stored event of each server thread (the
event loop "MainThread", the writer "boltic-writer", the executor's readers).
Then, in this process, the CPU time per item of each step of a batch: validating the
body, making ids, building the stored JSON, rendering the answer, and the INSERT with
its indexes and counting triggers (plus the same INSERT without the triggers and
without the indexes, to show what each costs). Records library versions (fastapi,
starlette, uvicorn, pydantic) and the load average before and after, and writes
bench_batch.json beside this file. Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

if shutil.which("wrk") is None:
    raise SystemExit("bench_batch: wrk is not installed (apt-get install -y wrk); nothing measured")

from _common import load_averages  # noqa: E402
from bench_server import Server, create_source, lua_post, machine, wrk  # noqa: E402

BATCH_ITEMS = 500
SINGLE_CONNECTIONS = 16
BATCH_CONNECTIONS = 4
LIBRARIES = ("fastapi", "starlette", "uvicorn", "pydantic", "pydantic-core", "httptools", "uvloop")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def make_event(source_id: str, i: int) -> dict:
    return {
        "sourceId": source_id,
        "type": ("page_view", "click", "signup")[i % 3],
        "properties": {"path": f"/pricing/{i}", "plan": "pro", "n": i, "ok": True},
        "userId": f"user-{i % 50}",
        "timestamp": "2026-11-30T08:00:00.123Z",
    }


def count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def run_load(server: Server, db: Path, url: str, script: Path, seconds: int, conns: int) -> dict:
    before, threads_before = count(db), server.threads()
    started = time.monotonic()
    result = wrk(url, script, seconds, conns)
    elapsed = time.monotonic() - started
    stored = count(db) - before
    threads_after = server.threads()
    per_event = {}
    for name, end in threads_after.items():
        start = threads_before.get(name, {"cpu_s": 0.0, "runqueue_wait_s": 0.0})
        cpu = (end["cpu_s"] - start["cpu_s"]) / max(stored, 1) * 1e6
        if cpu >= 0.1:
            per_event[name] = {
                "cpu_us": round(cpu, 1),
                "runqueue_wait_us": round(
                    (end["runqueue_wait_s"] - start["runqueue_wait_s"]) / max(stored, 1) * 1e6, 1
                ),
            }
    return {
        **result,
        "stored": stored,
        "events_per_s": round(stored / elapsed),
        "server_threads_per_event": per_event,
    }


def per_item_costs(work: Path, source_id: str) -> dict:
    """CPU microseconds per item of each step of a 500-event batch, in this process."""
    from boltic_cli.models import EventBatchInput, format_time
    from boltic_cli.server.ids import IdGenerator
    from boltic_cli.server.routes import events as route
    from boltic_cli.server.store import EventRecord
    from boltic_cli.server.store.sqlite import connect, insert_events, migrate

    raw = json.dumps({"batch": [make_event(source_id, i) for i in range(BATCH_ITEMS)]}).encode()
    ids = IdGenerator()
    reps = 40

    def cpu_us(fn) -> float:
        fn()
        started = time.process_time()
        for _ in range(reps):
            fn()
        return round((time.process_time() - started) / reps / BATCH_ITEMS * 1e6, 2)

    items = EventBatchInput.model_validate_json(raw).batch
    now_ms = int(time.time() * 1000)
    receipt = route.Receipt(
        now_ms,
        format_time(datetime.fromtimestamp(now_ms / 1000, UTC)),
        "127.0.0.1",
        "wrk",
        ',"context":{"ip":"127.0.0.1","userAgent":"wrk"}',
    )
    records = [route._record(m, ids.new("evt_"), receipt) for m in items]
    figures = {
        "validate_body": cpu_us(lambda: EventBatchInput.model_validate_json(raw)),
        "make_ids": cpu_us(lambda: ids.new_many("evt_", BATCH_ITEMS)),
        "stored_json": cpu_us(lambda: [route._record(m, "evt_x", receipt) for m in items]),
        "render_answer": cpu_us(
            lambda: route._render_batch(
                BATCH_ITEMS, {}, list(range(BATCH_ITEMS)), [r.id for r in records]
            )
        ),
    }
    variants = {
        "insert_row_indexes_triggers": "",
        "insert_without_triggers": "DROP TRIGGER events_count_insert;",
        "insert_without_triggers_and_indexes": "DROP TRIGGER events_count_insert;"
        + "".join(
            f"DROP INDEX {name};"
            for name in (
                "events_by_source_type_time",
                "events_by_source_time",
                "events_by_type_time",
                "events_by_time",
                "events_by_source_received",
            )
        ),
    }
    for name, script in variants.items():
        conn = connect(work / f"{name}.db")
        migrate(conn)
        conn.executescript(script)

        def insert(conn: sqlite3.Connection = conn) -> None:
            fresh = [
                EventRecord(i, r.source_id, r.type, r.timestamp, r.received_at, r.body)
                for i, r in zip(ids.new_many("evt_", BATCH_ITEMS), records, strict=True)
            ]
            insert_events(conn, fresh)  # autocommitted with synchronous=FULL

        figures[name + "_cpu"] = cpu_us(insert)
        started = time.perf_counter()
        for _ in range(reps):
            insert()
        figures[name + "_wall"] = round(
            (time.perf_counter() - started) / reps / BATCH_ITEMS * 1e6, 2
        )
        conn.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    load_before = load_averages()
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    db = work / "batch.db"
    server = Server(db, work / "server.log")
    runs: dict[str, list[dict]] = {"single": [], "batch": []}
    try:
        source = create_source(server.url)
        single = lua_post(work / "single.lua", make_event(source["id"], 0))
        batch = lua_post(
            work / "batch.lua",
            {"batch": [make_event(source["id"], i) for i in range(BATCH_ITEMS)]},
        )
        for _ in range(args.rounds):
            runs["single"].append(
                run_load(
                    server,
                    db,
                    f"{server.url}/streams/events",
                    single,
                    args.seconds,
                    SINGLE_CONNECTIONS,
                )
            )
            runs["batch"].append(
                run_load(
                    server,
                    db,
                    f"{server.url}/streams/events/batch",
                    batch,
                    args.seconds,
                    BATCH_CONNECTIONS,
                )
            )
    finally:
        server.stop()
    load_after = load_averages()
    costs = per_item_costs(work, source["id"])
    shutil.rmtree(work, ignore_errors=True)
    single_best = max(r["events_per_s"] for r in runs["single"])
    batch_best = max(r["events_per_s"] for r in runs["batch"])
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *sys.argv]),
        "machine": machine(),
        "libraries": versions(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "caveat": "2 cores shared by the server, wrk and other developers' test runs",
        "single": {"connections": SINGLE_CONNECTIONS, "runs": runs["single"]},
        "batch": {
            "connections": BATCH_CONNECTIONS,
            "items_per_request": BATCH_ITEMS,
            "runs": runs["batch"],
        },
        "single_ceiling_events_per_s": single_best,
        "batch_ceiling_events_per_s": batch_best,
        "batch_over_single": round(batch_best / single_best, 2),
        "target_batch_over_single": 6,
        "per_item_cpu_us": costs,
    }
    for kind in ("single", "batch"):
        for run in runs[kind]:
            if run["non_2xx"]:
                raise SystemExit(f"{kind}: {run['non_2xx']} answers were not 2xx")
    (HERE / "bench_batch.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine",)}, indent=2))


if __name__ == "__main__":
    main()
