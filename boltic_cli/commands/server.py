"""boltic server: run the local Streams server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from boltic_cli.commands import new_app
from boltic_cli.context import current

app = new_app(no_args_is_help=False)

# Test- and benchmark-only knobs, deliberately not options.
COMMIT_DELAY_ENV = "BOLTIC_SERVER_COMMIT_DELAY"
BENCH_NOOP_ENV = "BOLTIC_SERVER_BENCH_NOOP"
DELIVERY_IN_LOOP_ENV = "BOLTIC_SERVER_DELIVERY_IN_LOOP"


@app.command()
def server(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", help="Port to listen on (0 picks a free one).", min=0, max=65535),
    ] = 8765,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="FILE|URL",
            envvar="BOLTIC_DATABASE_URL",
            show_envvar=True,
            help="SQLite database file, or a PostgreSQL URL (postgresql://user@host:port/db or "
            "postgres://...). "
            "Default: boltic.db in the data dir.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="BOLTIC_SERVER_TOKEN",
            show_envvar=True,
            help="Admin token. Default: the local token file (created on first start).",
        ),
    ] = None,
    retention: Annotated[
        str | None,
        typer.Option(
            "--retention",
            help="Delete events received longer ago than this "
            "(e.g. 7d, 12h). Default: keep everything.",
            metavar="DURATION",
        ),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log", help="Log every request on stderr (refused ones are always logged)."
        ),
    ] = False,
    delivery_schedule: Annotated[
        str | None,
        typer.Option(
            "--delivery-schedule",
            envvar="BOLTIC_SERVER_DELIVERY_SCHEDULE",
            show_envvar=True,
            help="Pauses before each retry of a failed webhook delivery, comma-separated "
            "(±20% jitter). Default: 5s,5m,30m,2h,5h,10h,10h.",
            metavar="DURATIONS",
        ),
    ] = None,
    delivery_lease: Annotated[
        str | None,
        typer.Option(
            "--delivery-lease",
            envvar="BOLTIC_SERVER_DELIVERY_LEASE",
            show_envvar=True,
            help="How long a claimed delivery is held before another try may take it "
            "(a crash mid-attempt). Default: 60s.",
            metavar="DURATION",
        ),
    ] = None,
    delivery_auto_disable: Annotated[
        str | None,
        typer.Option(
            "--delivery-auto-disable",
            envvar="BOLTIC_SERVER_DELIVERY_AUTO_DISABLE",
            show_envvar=True,
            help="Set a webhook destination inactive after its attempts have all failed "
            "for this long. Default: 5d.",
            metavar="DURATION",
        ),
    ] = None,
    delivery_timeout: Annotated[
        str | None,
        typer.Option(
            "--delivery-timeout",
            envvar="BOLTIC_SERVER_DELIVERY_TIMEOUT",
            show_envvar=True,
            help="How long one delivery attempt may take. Default: 15s.",
            metavar="DURATION",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            envvar="BOLTIC_SERVER_WORKERS",
            show_envvar=True,
            min=1,
            help="Server processes sharing the one address (PostgreSQL only: a SQLite "
            "file has one writer).",
            metavar="N",
        ),
    ] = 1,
) -> None:
    """Run the local Streams server.

    Prints the API URL (http://HOST:PORT/v1) as one line on stdout; the database
    path, where the admin token is kept, and logs go to stderr: one line per refused
    request (time, method, path, status, reason, token kind; never the token), and
    per accepted request with --access-log. Stops cleanly on Ctrl-C or SIGTERM once the
    requests it is answering are done, then exits 130 (Ctrl-C, SIGINT) or 143 (SIGTERM).

    With --workers N (PostgreSQL only) N processes serve the address, supervised by this
    one: the URL is printed once all answer; a worker that dies is reported on stderr
    (its pid, exit code or signal) and replaced; Ctrl-C or SIGTERM stops them all, each
    finishing its requests, with the same exit codes.
    """
    from boltic_cli import paths
    from boltic_cli.durations import parse_duration
    from boltic_cli.server import require_server_extra

    require_server_extra()
    from boltic_cli.server.runner import check_workers, is_loopback, serve
    from boltic_cli.server.settings import (
        ServerSettings,
        database_url,
        postgres_options,
        resolve_admin_token,
    )

    ctx = current()
    ctx.only_formats("plain", "table", command="boltic server")
    environ = ctx.environ
    url = database_url(db)  # a mistyped URL is refused, never taken as a file path
    check_workers(workers, postgres=url is not None)  # before a token file or a socket
    admin_token, token_where = resolve_admin_token(environ, token)
    settings = ServerSettings(
        db_path=(Path(db) if db and url is None else paths.default_db_file(environ)).expanduser(),
        database_url=url,
        **(postgres_options(environ) if url else {}),
        admin_token=admin_token,
        retention=(
            parse_duration(retention, option="--retention", positive=True) if retention else None
        ),
        commit_delay=float(environ.get(COMMIT_DELAY_ENV) or 0),
        bench_noop=environ.get(BENCH_NOOP_ENV) == "1",
        access_log=access_log,
        delivery_in_loop=environ.get(DELIVERY_IN_LOOP_ENV) == "1",
        debug=ctx.options.debug,
        **delivery_settings(
            delivery_schedule, delivery_lease, delivery_auto_disable, delivery_timeout
        ),
    )
    ctx.output.log(f"database: {settings.database()}")
    ctx.output.log(f"admin token: {token_where}")
    if settings.retention:
        ctx.output.log(f"retention: events older than {retention} are deleted")
    if not is_loopback(host):
        ctx.output.log(
            f"warning: listening on {host}, reachable from other machines; "
            "anyone with a write key can send events"
        )

    def announce(url: str) -> None:
        ctx.output.raw(url + "\n")

    serve(settings, host, port, announce, workers=workers)


def delivery_settings(
    schedule: str | None, lease: str | None, auto_disable: str | None, timeout: str | None
) -> dict[str, object]:
    """The ``ServerSettings`` delivery fields given on the command line (or env); a bad
    duration is a UsageError naming the option."""
    from boltic_cli.durations import parse_duration
    from boltic_cli.errors import UsageError

    def seconds(text: str, option: str) -> float:
        return parse_duration(text, option=option, positive=True).total_seconds()

    given: dict[str, object] = {}
    if schedule is not None:
        parts = [p for p in schedule.replace(" ", "").split(",") if p]
        if not parts:
            raise UsageError("invalid --delivery-schedule: give at least one duration")
        given["delivery_schedule"] = tuple(seconds(p, "--delivery-schedule") for p in parts)
    if lease is not None:
        given["delivery_lease"] = seconds(lease, "--delivery-lease")
    if auto_disable is not None:
        given["delivery_auto_disable"] = seconds(auto_disable, "--delivery-auto-disable")
    if timeout is not None:
        given["delivery_timeout"] = seconds(timeout, "--delivery-timeout")
    return given
