"""boltic dev: the local server, a `dev` source and a live tail of everything, in one go."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
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
        str | None,
        typer.Option(
            "--db",
            metavar="FILE|URL",
            help="SQLite database file, or a PostgreSQL URL (postgresql://... or "
            "postgres://...). Default: the user data dir's boltic.db.",
        ),
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
    forward: Annotated[
        str | None,
        typer.Option(
            "--forward",
            metavar="URL",
            help="Forward the dev source's new events to URL (as 'debug forward dev --to URL').",
        ),
    ] = None,
) -> None:
    """Run the local Streams server, make sure a `dev` source exists, and tail every source.

    Uses a `boltic server` already answering on --port instead of starting one.
    Prints the API URL, the dev source's write key and a curl command that
    sends an event. Ctrl-C (or the end of --duration) stops everything; the
    database is kept.

    With --forward URL, the dev source's new events are POSTed to URL as
    `boltic debug forward dev --to URL` would (signed, retried, never dropped
    silently), and the attempts are shown instead of the tail.

    Examples:

      boltic dev --demo

      boltic dev --forward http://localhost:4242/webhook
    """
    ctx = current()
    if forward is not None:
        from boltic_cli.forward import check_url

        check_url(forward)
    seconds = duration_seconds(duration, option="--duration")
    database = database_target(ctx, db)
    token = local_admin_token(ctx)
    with contextlib.ExitStack() as running:
        url = running.enter_context(local_server(ctx, port, database, token))
        client = running.enter_context(dev_client(url, token))
        source = ensure_dev_source(client)
        print_banner(ctx, url, source, forwarding=forward is not None)
        running.enter_context(
            demo_traffic(url, token, source, enabled=demo, rate=demo_rate, ctx=ctx)
        )
        if forward is not None:
            forward_dev_source(ctx, client, source, forward, duration=seconds)
        else:
            tail_everything(ctx, client, history=history, duration=seconds)


def local_admin_token(ctx: Context) -> str:
    """The token every `boltic server` started without --token shares; made if missing."""
    from boltic_cli.settings import ensure_local_admin_token

    return ensure_local_admin_token(ctx.environ)[0]


# -- the server ------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """What ``--db`` names: a SQLite file, or a PostgreSQL URL (``url``) with its pool
    options from BOLTIC_PG_*."""

    path: Path
    url: str | None = None
    options: dict[str, float | int] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.url is None:
            return str(self.path)
        from boltic_cli.server.settings import redact_url

        return redact_url(self.url)


def database_target(ctx: Context, db: str | None) -> Database:
    """``--db`` resolved as ``boltic server`` resolves it (settings.database_url: a
    mistyped URL is a UsageError); default: the data dir's boltic.db."""
    from boltic_cli.paths import default_db_file
    from boltic_cli.server.settings import database_url, postgres_options

    url = database_url(db)
    if url is not None:
        return Database(Path(), url, postgres_options(ctx.environ))
    return Database(Path(db) if db else default_db_file(ctx.environ))


@contextlib.contextmanager
def local_server(ctx: Context, port: int, database: Database, token: str) -> Iterator[str]:
    """The API URL of a boltic server on ``port``: one already running, the one that
    holds the SQLite file (design.md: dev attaches to it), or one started here (on
    PostgreSQL too: any number of servers share it)."""
    if port and boltic_server_answers(port):
        ctx.output.info(f"Using the boltic server already running on port {port}.")
        yield f"http://{HOST}:{port}/v1"
        return
    from boltic_cli.server import require_server_extra

    require_server_extra()
    from boltic_cli.server.dblock import DatabaseInUse
    from boltic_cli.server.runner import start_in_thread
    from boltic_cli.server.settings import ServerSettings

    settings = ServerSettings(
        db_path=database.path.expanduser(),
        database_url=database.url,
        admin_token=token,
        **database.options,  # type: ignore[arg-type]
    )
    try:
        handle = start_in_thread(settings, HOST, port)
    except DatabaseInUse as e:
        if not e.holder.url:
            raise
        ctx.output.info(
            f"Using the boltic server (pid {e.holder.pid}) that serves {database} "
            f"at {e.holder.url}."
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


def print_banner(ctx: Context, url: str, source: StreamSource, *, forwarding: bool = False) -> None:
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
        "Forwarding the dev source:" if forwarding else "Tailing every source; Ctrl-C to stop.",
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


def forward_dev_source(
    ctx: Context, client: BolticClient, source: StreamSource, url: str, *, duration: float | None
) -> None:
    """`debug forward dev --to URL` while dev runs: new events of the dev source only."""
    from boltic_cli.forward import Forwarder, OriginalEvents, forward_secret
    from boltic_cli.output import ForwardView, follow_forward
    from boltic_cli.tail import Tail

    assert source.id is not None
    secret = forward_secret(ctx.settings)
    originals = OriginalEvents(client)
    forwarder = Forwarder(
        url, secret, duration=duration, wall_clock=ctx.env.clock, originals=originals
    )
    engine = Tail(originals, [source.id], history=0, duration=duration, sleep=forwarder.sleep)
    view = ForwardView(names={source.id: source.name or source.id})
    for line in view.banner(sources=[source.name or source.id], url=url, secret=secret):
        ctx.output.info(line)
    follow_forward(ctx.output, forwarder, engine.records(), view)
