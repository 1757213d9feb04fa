"""Benchmark: which HTTP client the server's delivery worker should use.

Run: .venv/bin/python tests/bench/bench_delivery_client.py [--quick]

Measures, in one run, with a fast loopback receiver in another process
(`python -m tests.receivers`, asyncio, answers 200):

  1. deliveries/s and CPU per delivery (this process's CPU time / deliveries) for
     httpx.AsyncClient, aiohttp.ClientSession and raw asyncio streams (a baseline, not
     a candidate), each sending signed ~400-byte webhooks (webhooks.delivery_headers)
     with 4 in flight (design.md: at most 4 per destination) on one keep-alive pool;
  2. single-event ingest (wrk, 16 connections, POST /v1/streams/events) against
     `create_app` under uvicorn in a subprocess, with a pump that delivers one webhook
     per 202 (polling a counter every 5 ms, like a worker polling its store): without
     a pump; with each client in the server's own event loop; and with aiohttp and
     streams in a thread with its own (selector) event loop (--modes picks the runs).
     The ratio to "none" is what a destination costs ingest. The pump does not claim or
     record through the store: bench_delivery.py measures the real worker.

Writes bench_delivery_client.json beside this file with the library versions and the
load average (the machine is shared: figures are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import load_averages, machine  # noqa: E402

from boltic_cli import webhooks  # noqa: E402

TOKEN = "bench-server-admin-token-0123456789"
SECRET = webhooks.new_signing_secret()
BODY = json.dumps(
    {
        "id": "evt_01JDQ8Y8ZK3M4N5P6Q7R8S9T0V",
        "sourceId": "src_01JDQ8Y8ZK3M4N5P6Q7R8S9T0W",
        "type": "page_view",
        "properties": {"path": "/pricing", "plan": "pro", "n": 1, "title": "Pricing - Boltic"},
        "context": {"ip": "127.0.0.1", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) bench"},
        "timestamp": "2026-11-30T08:00:00.000Z",
        "receivedAt": "2026-11-30T08:00:00.000Z",
    },
    separators=(",", ":"),
).encode()
IN_FLIGHT = 4


def headers(n: int) -> dict[str, str]:
    return webhooks.delivery_headers(
        SECRET, f"dlv_{n}", BODY, timestamp=int(time.time()), user_agent="boltic-server/bench"
    )


# the clients: each returns an async "send one" and an async close


async def httpx_client(url: str):
    import httpx

    client = httpx.AsyncClient(
        timeout=webhooks.ATTEMPT_TIMEOUT, limits=httpx.Limits(max_connections=IN_FLIGHT)
    )

    async def send(n: int) -> int:
        response = await client.post(url, content=BODY, headers=headers(n))
        await response.aread()
        return response.status_code

    return send, client.aclose


async def aiohttp_client(url: str):
    import aiohttp

    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=webhooks.ATTEMPT_TIMEOUT),
        connector=aiohttp.TCPConnector(limit=IN_FLIGHT),
        skip_auto_headers=("User-Agent",),
    )

    async def send(n: int) -> int:
        async with session.post(url, data=BODY, headers=headers(n), allow_redirects=False) as r:
            await r.read()
            return r.status

    return send, session.close


async def streams_client(url: str):
    """Raw asyncio streams: HTTP/1.1 by hand on a small pool (a floor, not a candidate)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(IN_FLIGHT):
        pool.put_nowait(await asyncio.open_connection(parts.hostname, parts.port))

    async def send(n: int) -> int:
        reader, writer = await pool.get()
        try:
            head = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers(n).items())
            head += f"Content-Length: {len(BODY)}\r\n\r\n"
            writer.write(head.encode() + BODY)
            status_line = await reader.readuntil(b"\r\n\r\n")
            status = int(status_line.split(b" ", 2)[1])
            length = 0
            for line in status_line.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            return status
        finally:
            pool.put_nowait((reader, writer))

    async def close() -> None:
        while not pool.empty():
            pool.get_nowait()[1].close()

    return send, close


CLIENTS = {"httpx": httpx_client, "aiohttp": aiohttp_client, "streams": streams_client}


async def deliver(make, url: str, n: int) -> dict:
    send, close = await make(url)
    try:
        for i in range(50):  # warm the pool
            await send(i)
        counter = iter(range(n))
        failures = 0

        async def lane() -> None:
            nonlocal failures
            for i in counter:
                if await send(i) != 200:
                    failures += 1

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await close()
    return {
        "deliveries": n,
        "failures": failures,
        "deliveries_per_s": round(n / wall),
        "cpu_ms_per_delivery": round(cpu / n * 1000, 3),
    }


# the server with a pump (run as a subprocess: --serve MODE)


def serve(mode: str, receiver_url: str, db: Path, count_file: Path) -> None:
    import socket

    import uvicorn

    from boltic_cli.server.app import create_app
    from boltic_cli.server.runner import log_config
    from boltic_cli.server.settings import ServerSettings

    state = {"ingested": 0, "delivered": 0}
    app = create_app(ServerSettings(db_path=db, admin_token=TOKEN))

    async def counting(scope, receive, send):
        async def counted_send(message):
            if message["type"] == "http.response.start" and message["status"] == 202:
                state["ingested"] += 1
            await send(message)

        await app(scope, receive, counted_send)

    async def pump() -> None:
        send, close = await CLIENTS[mode.removesuffix("-thread")](receiver_url)
        sem = asyncio.Semaphore(IN_FLIGHT)
        running: set[asyncio.Task] = set()

        async def one(n: int) -> None:
            try:
                await send(n)
                state["delivered"] += 1
            finally:
                sem.release()

        try:
            while True:
                while state["delivered"] + IN_FLIGHT - sem._value < state["ingested"]:
                    await sem.acquire()
                    task = asyncio.ensure_future(one(state["delivered"]))
                    running.add(task)
                    task.add_done_callback(running.discard)
                await asyncio.sleep(0.005)
        finally:
            await close()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(counting, log_config=log_config("warning"), access_log=False)
    server = uvicorn.Server(config)

    async def main() -> None:
        tasks = [asyncio.ensure_future(server.serve(sockets=[sock]))]
        if mode != "none" and not mode.endswith("-thread"):
            tasks.append(asyncio.ensure_future(pump()))
        while not server.started:
            await asyncio.sleep(0.01)
        print(f"http://127.0.0.1:{sock.getsockname()[1]}/v1", flush=True)
        # uvicorn re-raises the SIGTERM that stops it once serve() returns: the counts
        # are written as they go.
        while not tasks[0].done():
            count_file.write_text(json.dumps(state))
            await asyncio.sleep(0.25)

    if mode.endswith("-thread"):
        # Its own loop in its own thread: a plain asyncio (selector) loop, whose socket
        # calls release the GIL, so the serving loop runs meanwhile.
        def pump_thread() -> None:
            loop = asyncio.SelectorEventLoop()
            loop.run_until_complete(pump())

        threading.Thread(target=pump_thread, daemon=True).start()
    sys.setswitchinterval(0.0005)  # as runner.serve
    # uvicorn serves on uvloop when it is installed (config.loop "auto"): so do we.
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    import gc

    gc.collect()
    gc.freeze()  # as runner.serve
    asyncio.run(main())


def ingest(mode: str, receiver_url: str, work: Path, seconds: int) -> dict:
    import httpx
    from bench_server import lua_post, wrk

    db, count_file = work / f"{mode}.db", work / f"{mode}.count"
    command = [sys.executable, __file__, "--serve", mode, "--receiver", receiver_url]
    command += ["--db", str(db), "--count-file", str(count_file)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        source = httpx.post(
            f"{url}/streams/sources", json={"name": "b", "type": "server"}, headers=auth
        ).json()
        event = {"sourceId": source["id"], "type": "page_view", "properties": {"n": 1}}
        result = wrk(f"{url}/streams/events", lua_post(work / "post.lua", event), seconds, 16)
        time.sleep(1.5)
    finally:
        server.terminate()
        server.wait(30)
    counts = json.loads(count_file.read_text())
    return {
        "events_per_s": result["requests_per_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "non_2xx": result["non_2xx"],
        **counts,
    }


def versions() -> dict:
    return {
        name: importlib.metadata.version(name)
        for name in ("httpx", "aiohttp", "uvicorn", "fastapi", "standardwebhooks")
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve")
    parser.add_argument("--receiver")
    parser.add_argument("--db", type=Path)
    parser.add_argument("--count-file", type=Path)
    parser.add_argument(
        "--modes",
        default="none,httpx,aiohttp,aiohttp-thread,streams,streams-thread,none",
        help="ingest runs, in order: none, or a client name, -thread for its own loop",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.receiver, args.db, args.count_file)
        return
    n = 2000 if args.quick else 6000
    seconds = 5 if args.quick else 10
    load_before = load_averages()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.receivers"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert receiver.stdout is not None
        url = receiver.stdout.readline().strip()
        throughput = {}
        for name, make in CLIENTS.items():
            throughput[name] = asyncio.run(deliver(make, url, n))
            print(name, throughput[name], file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            modes = args.modes.split(",")
            runs = []
            for mode in modes:
                runs.append({"mode": mode, **ingest(mode, url, Path(tmp), seconds)})
                print(runs[-1], file=sys.stderr)
    finally:
        receiver.terminate()
        receiver.wait(10)
    nones = [r["events_per_s"] for r in runs if r["mode"] == "none"]
    none = sum(nones) / len(nones)
    for r in runs:
        r["ratio_to_none"] = round(r["events_per_s"] / none, 3)
    result = {
        "command": " ".join(
            [".venv/bin/python", "tests/bench/bench_delivery_client.py", *sys.argv[1:]]
        ),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(load_average_before=load_before, load_average_after=load_averages()),
        "versions": versions(),
        "in_flight": IN_FLIGHT,
        "body_bytes": len(BODY),
        "client_throughput": throughput,
        "ingest_with_pump": runs,
    }
    out = HERE / "bench_delivery_client.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()
