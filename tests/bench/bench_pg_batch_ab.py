"""Benchmark: batch ingest on PostgreSQL, this tree against another, same run.

Run: .venv/bin/python tests/bench/bench_pg_batch_ab.py --before-tree DIR [--rounds 4]

``bench_postgres.ingest_batch`` (500 events per body, 4 connections, 15 s) served from
this source tree and from ``DIR`` (e.g. ``git worktree add --detach /tmp/before
COMMIT``), alternating which goes first each round, each run on a new database of one
throwaway PostgreSQL. A before/after of a change to the insert path, free of the drift
between separate benchmark runs on a shared machine (the SQLite/PostgreSQL ratio of
bench_postgres.py moves by ±0.15 between runs here). Writes bench_pg_batch_ab.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.bench import bench_postgres  # noqa: E402
from tests.bench._common import load_averages  # noqa: E402
from tests.bench.bench_write_key import git_commit  # noqa: E402
from tests.pg import start_postgres  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-tree", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=HERE / "bench_pg_batch_ab.json")
    args = parser.parse_args()
    trees = {"before": args.before_tree.resolve(), "after": ROOT}
    report: dict = {
        "command": "python tests/bench/bench_pg_batch_ab.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": load_averages(),
        "commits": {name: git_commit(tree) for name, tree in trees.items()},
    }
    server = bench_postgres.Server
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    pg = start_postgres()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-ab-") as tmp:
            for i in range(args.rounds):
                for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
                    bench_postgres.Server = functools.partial(server, tree=trees[name])
                    run = bench_postgres.ingest_batch(
                        pg.url(pg.new_database()), Path(tmp), args.seconds, pg
                    )
                    runs[name].append(run)
                    print(f"round {i} {name}: {run['events_per_s']:,.0f} events/s", file=sys.stderr)
    finally:
        bench_postgres.Server = server
        pg.stop()
    report["runs"] = runs
    for key in ("events_per_s", "postgres_cpu_us_per_event"):
        report[f"mean_{key}"] = {
            name: round(sum(r[key] for r in rs) / len(rs), 1) for name, rs in runs.items()
        }
    report["after_to_before"] = round(
        report["mean_events_per_s"]["after"] / report["mean_events_per_s"]["before"], 3
    )
    report["load_average_after"] = load_averages()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k.startswith(("mean", "after"))}))


if __name__ == "__main__":
    main()
