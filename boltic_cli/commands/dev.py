"""boltic dev: the local server, a `dev` source and a live tail of everything, in one go."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from boltic_cli.commands import new_app
from boltic_cli.context import Context, current
from boltic_cli.durations import duration_seconds
from boltic_cli.errors import BolticError, UsageError

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.models import StreamSource

app = new_app(no_args_is_help=False)

DEV_SOURCE_NAME = "dev"
DEFAULT_PORT = 8765
HOST = "127.0.0.1"
PROBE_TIMEOUT = 2.0
DEMO_STOP_TIMEOUT = 10.0  # seconds the demo thread gets to finish its last send


@app.command()
def dev(
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="Port to serve on (0: any).")
    ] = DEFAULT_PORT,
    db: Annotated[
        Path | None,
        typer.Option("--db", help="SQLite database file. Default: the user data dir's boltic.db."),
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Also send sample traffic.")] = False,
    demo_rate: Annotated[
        float, typer.Option("--demo-rate", min=0.1, help="Sample events per second.")
    ] = 3.0,
    duration: Annotated[
        str | None, typer.Option("--duration", "-d", help="Stop after this long (90s, 5m).")
    ] = None,
    history: Annotated[
        int, typer.Option("--history", min=0, max=500, help="Recent events to show first.")
    ] = 10,
) -> None:
    """Run the local Streams server, make sure a `dev` source exists, and tail every source.

    Uses a `boltic server` already answering on --port instead of starting one.
    Prints the API URL, the dev source's write key and a curl command that
    sends an event. Ctrl-C (or the end of --duration) stops everything; the
    database is kept.

    Example:

      boltic dev --demo
    """
    from boltic_cli.paths import default_db_file

    ctx = current()
    seconds = duration_seconds(duration, option="--duration")
    token = local_admin_token(ctx)
    db_path = db or default_db_file(ctx.environ)
    with contextlib.ExitStack() as running:
        url = running.enter_context(local_server(ctx, port, db_path, token))
        client = running.enter_context(dev_client(url, token))
        source = ensure_dev_source(client)
        print_banner(ctx, url, source)
        running.enter_context(
            demo_traffic(url, token, source, enabled=demo, rate=demo_rate, ctx=ctx)
        )
        tail_everything(ctx, client, history=history, duration=seconds)


def local_admin_token(ctx: Context) -> str:
    """The token every `boltic server` started without --token shares; made if missing."""
    from boltic_cli.settings import ensure_local_admin_token

    return ensure_local_admin_token(ctx.environ)[0]


# -- the server ------------------------------------------------------------------------


@contextlib.contextmanager
def local_server(ctx: Context, port: int, db_path: Path, token: str) -> Iterator[str]:
    """The API URL of a boltic server on ``port``: one already running, the one that
    holds ``db_path`` (design.md: dev attaches to it), or one started here."""
    if port and boltic_server_answers(port):
        ctx.output.info(f"Using the boltic server already running on port {port}.")
        yield f"http://{HOST}:{port}/v1"
        return
    from boltic_cli.server import require_server_extra

    require_server_extra()
    from boltic_cli.server.dblock import DatabaseInUse
    from boltic_cli.server.runner import start_in_thread
    from boltic_cli.server.settings import ServerSettings

    try:
        handle = start_in_thread(ServerSettings(db_path=db_path, admin_token=token), HOST, port)
    except DatabaseInUse as e:
        if not e.holder.url:
            raise
        ctx.output.info(
            f"Using the boltic server (pid {e.holder.pid}) that serves {db_path} at {e.holder.url}."
        )
        yield e.holder.url
        return
    try:
        yield handle.url
    finally:
        handle.stop()


def boltic_server_answers(port: int) -> bool:
    """True when a boltic server answers on ``port``; False when nothing listens.

    Anything else listening there is an error: starting our own would fail anyway.
    """
    import httpx

    url = f"http://{HOST}:{port}/v1/health"
    try:
        response = httpx.get(url, timeout=PROBE_TIMEOUT)
    except httpx.ConnectError:
        return False
    except httpx.HTTPError as e:
        raise UsageError(
            f"port {port} is in use by something that does not answer HTTP ({type(e).__name__})",
            hint="choose another with --port, or --port 0 for a free one",
        ) from None
    if response.status_code == 200 and _looks_like_health(response):
        return True
    raise UsageError(
        f"port {port} is in use by something that is not a boltic server "
        f"(GET /v1/health answered {response.status_code})",
        hint="choose another with --port, or --port 0 for a free one",
    )


def _looks_like_health(response: Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == "ok"


@contextlib.contextmanager
def dev_client(url: str, token: str) -> Iterator[BolticClient]:
    from boltic_cli.client import BolticClient

    with BolticClient(url, token) as client:
        yield client


def ensure_dev_source(client: BolticClient) -> StreamSource:
    for source in client.list_stream_sources():
        if source.name == DEV_SOURCE_NAME and source.id:
            return source
    return client.create_stream_source({"name": DEV_SOURCE_NAME, "type": "javascript"})


# -- what the user sees ------------------------------------------------------------


def print_banner(ctx: Context, url: str, source: StreamSource) -> None:
    """Where to send events and how (stderr: stdout carries only events)."""
    from boltic_cli.output import curl_send_example

    lines = [
        f"boltic dev: Streams API at {url}",
        f"  source     {source.name} ({source.id})",
        f"  write key  {source.write_key}",
        "  send an event:",
        *(
            f"  {line}"
            for line in curl_send_example(url, source.id or "", source.write_key or "").splitlines()
        ),
        "Tailing every source; Ctrl-C to stop.",
    ]
    for line in lines:
        ctx.output.info(line)


@contextlib.contextmanager
def demo_traffic(
    url: str, token: str, source: StreamSource, *, enabled: bool, rate: float, ctx: Context
) -> Iterator[None]:
    """Sample events sent from a thread while the tail runs (its own client: one per thread)."""
    if not enabled:
        yield
        return
    from boltic_cli.traffic import TrafficRunner

    assert source.id is not None
    with dev_client(url, token) as client:
        runner = TrafficRunner(client, source.id, rate=rate, stop_timeout=DEMO_STOP_TIMEOUT)
        try:
            with runner:
                yield
        finally:
            if isinstance(runner.error, BolticError):
                ctx.output.warn(f"demo traffic stopped: {runner.error}")


def tail_everything(
    ctx: Context, client: BolticClient, *, history: int, duration: float | None
) -> None:
    """Follow every source (new ones join as they appear) the way ``debug tail --all`` does."""
    from boltic_cli.output import TailView
    from boltic_cli.tail import Tail, all_source_ids, seconds_from

    names: dict[str, str] = {}
    engine = Tail(
        client,
        all_source_ids(client, names),
        history=history,
        duration=duration,
        clock=seconds_from(ctx.env.clock),
        sleep=ctx.env.sleep,
    )
    ctx.output.follow_tail(engine, TailView(names=names, multi_source=True))
