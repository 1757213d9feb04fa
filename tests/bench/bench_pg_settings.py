"""Benchmark: batch ingest on PostgreSQL with the test cluster's memory and with more.

Run: .venv/bin/python tests/bench/bench_pg_settings.py [--seconds 15] [--rounds 3]

``bench_postgres.py`` runs PostgreSQL as the tests start it (``tests/pg.py``:
``shared_buffers=64MB``, below PostgreSQL's own default of 128MB, to start fast) with
its default ``max_wal_size`` (1GB). A 15 s batch round writes ~700,000 events (~1.2 GB
of heap, indexes and WAL), so with 64MB the backends write most evicted pages
themselves and a checkpoint is requested mid-round. This runs the same batch ingest
(``bench_postgres.ingest_batch``: 500 per body, 4 connections) on SQLite, on
PostgreSQL as the tests have it, and on PostgreSQL with ``shared_buffers=1GB`` and
``max_wal_size=4GB`` (modest for a server: this machine has 24 GB), alternating over
``--rounds`` rounds, each PostgreSQL run on a new database; it records
pg_stat_bgwriter's counters per run. It informs the settings a deployment should use;
bench_postgres.json keeps the test cluster's, as issue 18's figure.
Writes bench_pg_settings.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.bench import bench_postgres  # noqa: E402
from tests.bench._common import load_averages  # noqa: E402
from tests.pg import start_postgres  # noqa: E402

SETTINGS = {
    "test_cluster": {"shared_buffers": "64MB", "max_wal_size": "1GB"},
    "server_sized": {"shared_buffers": "1GB", "max_wal_size": "4GB"},
}
BGWRITER = (
    "SELECT checkpoints_timed + checkpoints_req, buffers_checkpoint, buffers_clean,"
    " buffers_backend FROM pg_stat_bgwriter"
)


def configure(pg, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        pg.psql(f"ALTER SYSTEM SET {name} = '{value}'")
    pg.stop()
    pg.start()


def bgwriter(pg) -> list[int]:
    return [int(x) for x in pg.psql(BGWRITER).split("\t")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "bench_pg_settings.json")
    args = parser.parse_args()
    report: dict = {
        "command": "python tests/bench/bench_pg_settings.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": load_averages(),
        "settings": SETTINGS,
    }
    pg = start_postgres()
    runs: dict[str, list[dict]] = {"sqlite": [], **{name: [] for name in SETTINGS}}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-settings-") as tmp:
            work = Path(tmp)
            for i in range(args.rounds):
                runs["sqlite"].append(
                    bench_postgres.ingest_batch(str(work / f"b{i}.db"), work, args.seconds, None)
                )
                for name, settings in SETTINGS.items():
                    configure(pg, settings)
                    before = bgwriter(pg)
                    run = bench_postgres.ingest_batch(
                        pg.url(pg.new_database()), work, args.seconds, pg
                    )
                    after = bgwriter(pg)
                    run["bgwriter"] = dict(
                        zip(
                            [
                                "checkpoints",
                                "buffers_checkpoint",
                                "buffers_clean",
                                "buffers_backend",
                            ],
                            [a - b for a, b in zip(after, before, strict=True)],
                            strict=True,
                        )
                    )
                    runs[name].append(run)
                print(
                    f"round {i}: "
                    + ", ".join(f"{k} {v[-1]['events_per_s']:,.0f}" for k, v in runs.items()),
                    file=sys.stderr,
                )
    finally:
        pg.stop()
    mean = {k: sum(r["events_per_s"] for r in v) / len(v) for k, v in runs.items()}
    report["runs"] = runs
    report["mean_events_per_s"] = {k: round(v, 1) for k, v in mean.items()}
    report["ratio_to_sqlite"] = {k: round(mean[k] / mean["sqlite"], 3) for k in SETTINGS}
    report["ratio_per_round"] = {
        k: [
            round(p["events_per_s"] / s["events_per_s"], 3)
            for p, s in zip(runs[k], runs["sqlite"], strict=True)
        ]
        for k in SETTINGS
    }
    report["load_average_after"] = load_averages()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("mean_events_per_s", "ratio_to_sqlite")}, indent=2))


if __name__ == "__main__":
    main()
