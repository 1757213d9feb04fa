"""A no-op POST route served by uvicorn, for bench_versions.py (run by each venv's Python).

Usage: PYTHON _noop_server.py VARIANT [--loop auto|asyncio] [--http auto|h11|httptools]

VARIANT: ``starlette`` (a bare Starlette route), ``fastapi`` (a bare FastAPI route),
``fastapi-no-telemetry`` (the same with FastAPI's native OpenTelemetry off, where the
installed FastAPI has it), ``boltic`` (``boltic server``'s app with its benchmark
no-op route, behind the request gate: the route bench_server.py measures),
``boltic-send`` (the same app's sendEvent: a real insert and commit). Serves on
127.0.0.1, a free port, with the settings of ``boltic server`` (no access log, no
server header, the switch interval and frozen GC of ``runner.serve``), and prints
``URL PATH`` on stdout once it accepts requests, then the versions as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ACCEPTED = b'{"eventId":"evt_00000000000000000000000000","status":"accepted"}'
TOKEN = "bench-server-admin-token-0123456789"


def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def noop(request):
        return Response(ACCEPTED, 202, media_type="application/json")

    return Starlette(routes=[Route("/noop", noop, methods=["POST"])]), "/noop"


def fastapi_app(telemetry: bool):
    from fastapi import FastAPI
    from starlette.responses import Response

    kwargs = {}
    if not telemetry:
        import inspect

        if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
            raise SystemExit("this FastAPI has no native telemetry")
        kwargs["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, **kwargs)

    @app.post("/noop")
    async def noop() -> Response:
        return Response(ACCEPTED, 202, media_type="application/json")

    return app, "/noop"


def boltic_app():
    from boltic_cli.server.app import create_app
    from boltic_cli.server.settings import ServerSettings

    # The caller (bench_versions.py) passes its work dir and removes it afterwards: uvicorn
    # ends on SIGTERM by re-raising it, so this process cannot clean up after itself.
    work = tempfile.mkdtemp(prefix="noop-", dir=os.environ.get("BENCH_NOOP_DIR"))
    db = Path(work) / "noop.db"
    settings = ServerSettings(db_path=db, admin_token=TOKEN, bench_noop=True)
    return create_app(settings), "/v1/_bench/noop"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant")
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    args = parser.parse_args()
    import uvicorn

    if args.variant == "starlette":
        app, path = starlette_app()
    elif args.variant.startswith("fastapi"):
        app, path = fastapi_app(telemetry=args.variant == "fastapi")
    elif args.variant == "boltic":
        app, path = boltic_app()
    elif args.variant == "boltic-send":
        app, _ = boltic_app()
        path = "/v1/streams/events"
    else:
        raise SystemExit(f"unknown variant {args.variant}")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        access_log=False,
        log_level="warning",
        server_header=False,
        lifespan="on" if args.variant == "boltic" else "auto",
        loop=args.loop,
        http=args.http,
    )
    versions = {}
    for name in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            loop = type(asyncio.get_running_loop()).__module__
            print(f"http://127.0.0.1:{port} {path}", flush=True)
            print(json.dumps({**versions, "loop": loop, "http": args.http}), flush=True)

    sys.setswitchinterval(0.0005)
    gc.collect()
    gc.freeze()
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
