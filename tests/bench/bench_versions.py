"""Benchmark: the cost per request of FastAPI/Starlette/uvicorn versions, on a no-op route.

Run: .venv/bin/python tests/bench/bench_versions.py --venv /tmp/v115 --venv .venv
         [--seconds 8] [--rounds 3] [--variant starlette --variant fastapi ...]

Each --venv is a virtualenv with boltic-cli installed (``pip install -e .[server]``)
and the library versions under test, e.g.::

    python3 -m venv /tmp/v115 && /tmp/v115/bin/pip install -e '.[server]' \\
        'fastapi==0.115.*' 'starlette==0.46.*' 'uvicorn[standard]==0.34.*'

For every round, venv and variant (``_noop_server.py``: a bare Starlette route, a bare
FastAPI route, the same with FastAPI's native telemetry off, ``boltic server``'s no-op
route behind its request gate), serves the route with that venv's Python and runs wrk
against it (16 connections, POST). Records requests/s, p50/p99 and, steadier on a
shared machine, the server's CPU microseconds per request (/proc/PID/stat), with the
load average. ``boltic-send`` is the server's real sendEvent (insert
and commit). Rounds alternate the venvs so that the machine's noise falls on all.
Writes bench_versions.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import load_averages  # noqa: E402
from bench_server import machine, wrk  # noqa: E402

TOKEN = "bench-server-admin-token-0123456789"
VARIANTS = ("starlette", "fastapi", "fastapi-no-telemetry", "boltic", "boltic-send")
CONNECTIONS = 16


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(python: str, variant: str, seconds: int, script: Path) -> dict | None:
    command = [python, str(HERE / "_noop_server.py"), variant]
    env = {**os.environ, "BENCH_NOOP_DIR": str(script.parent)}
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        try:
            assert process.stdout is not None
            first = process.stdout.readline().split()
            if len(first) != 2:
                log.seek(0)
                return {"skipped": log.read().strip().splitlines()[-1:]}
            url, path = first
            versions = json.loads(process.stdout.readline())
            if variant == "boltic-send":
                script = send_script(url, script.parent)
            wrk(url + path, script, 1, CONNECTIONS)  # warm up
            load_before = load_averages()
            cpu_before = cpu_seconds(process.pid)
            result = wrk(url + path, script, seconds, CONNECTIONS)
            cpu = cpu_seconds(process.pid) - cpu_before
        finally:
            process.terminate()
            process.wait(30)
    if result["non_2xx"]:
        raise SystemExit(f"{variant} with {python}: {result['non_2xx']} answers were not 2xx")
    return {
        "versions": versions,
        "requests_per_s": result["requests_per_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "server_cpu_us_per_request": round(cpu / result["requests"] * 1e6, 1),
        "load_average_before": load_before,
        "load_average_after": load_averages(),
    }


def send_script(url: str, work: Path) -> Path:
    """A wrk script posting one event to a new source of the server at ``url``."""
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    source = httpx.post(
        f"{url}/v1/streams/sources", json={"name": "bench", "type": "server"}, headers=headers
    ).json()
    script = work / "send.lua"
    body = json.dumps({"sourceId": source["id"], "type": "page_view", "properties": {"n": 1}})
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{body}'\n"
    )
    return script


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--venv", action="append", required=True)
    parser.add_argument("--variant", action="append", choices=VARIANTS)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "bench_versions.json")
    args = parser.parse_args()
    variants = args.variant or list(VARIANTS)
    work = Path(tempfile.mkdtemp(prefix="bench-versions-"))
    script = work / "noop.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.body = \'{"sourceId":"src_x","type":"page_view"}\'\n'
    )
    load_start = load_averages()
    runs: dict[str, dict[str, list[dict]]] = {}
    for _ in range(args.rounds):
        for venv in args.venv:
            python = str(Path(venv) / "bin" / "python")
            for variant in variants:
                run = measure(python, variant, args.seconds, script)
                runs.setdefault(venv, {}).setdefault(variant, []).append(run)
                print(venv, variant, json.dumps(run), file=sys.stderr, flush=True)
    summary: dict[str, dict] = {}
    for venv, by_variant in runs.items():
        for variant, results in by_variant.items():
            measured = [r for r in results if "requests_per_s" in r]
            if not measured:
                continue
            summary.setdefault(venv, {"versions": measured[0]["versions"]})[variant] = {
                "best_requests_per_s": max(r["requests_per_s"] for r in measured),
                "min_cpu_us_per_request": min(r["server_cpu_us_per_request"] for r in measured),
            }
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "load_average_start": load_start,
        "load_average_end": load_averages(),
        "caveat": "2 cores shared with wrk and other developers' runs: requests/s moves "
        "with the load; CPU per request is the steadier figure",
        "summary": summary,
        "runs": runs,
    }
    shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
