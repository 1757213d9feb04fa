"""boltic debug: is a source receiving events, watch them arrive, wait for one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from boltic_cli.commands import SourceArg, new_app
from boltic_cli.completers import complete_event_type, complete_source
from boltic_cli.context import Context, current
from boltic_cli.durations import duration_seconds

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.models import Event
    from boltic_cli.output import TailView
    from boltic_cli.tail import Tail

app = new_app(help="Watch live traffic: status, tail, top, wait.")

# Declarations the debug commands share: one each, so the same flag cannot drift.
SourcesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Source ids or exact names.",
        metavar="SOURCE...",
        show_default=False,
        autocompletion=complete_source,
    ),
]
DurationOption = Annotated[
    str | None, typer.Option("--duration", "-d", help="Stop after this long (90s, 5m).")
]
TypeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--type",
        "-t",
        help="Only events of this type (repeatable).",
        metavar="TYPE",
        autocompletion=complete_event_type,
    ),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        help="Only events whose property KEY equals VALUE (dotted paths; repeatable).",
        metavar="KEY=VALUE",
    ),
]
IntervalOption = Annotated[
    float,
    typer.Option("--interval", min=0.05, help="Longest pause between polls when idle (seconds)."),
]


def event_columns() -> list[Any]:
    from boltic_cli.output import Column

    return [
        Column("Received", "receivedAt", kind="time"),
        Column("Type", "type", max_width=32),
        Column(
            "User",
            lambda e: e.get("userId") or e.get("anonymousId") or "",
            max_width=36,
            name="user",
        ),
        Column("Properties", "properties", kind="json", max_width=60),
        Column("Id", "id"),
    ]


# -- debug status ------------------------------------------------------------------


@app.command("status")
def status(
    source: SourceArg,
    last: Annotated[
        int, typer.Option("--last", "-n", min=0, max=500, help="How many recent events to show.")
    ] = 5,
) -> None:
    """Show whether SOURCE receives events: connected, last event, events today, recent events.

    A source counts as connected when an event arrived in the last 5 minutes.
    """
    from boltic_cli.lookup import resolve_source

    ctx = current()
    with ctx.make_client() as client:
        found = resolve_source(client, source)
        assert found.id is not None
        debug = client.debug_stream_source(found.id, limit=max(last, 1))
    events = debug.data[:last]
    report = {
        "source": found.to_wire(),
        "connected": bool(debug.connected),
        "lastEventAt": debug.to_wire().get("lastEventAt"),
        "eventsToday": found.events_today,
        "events": [e.to_wire() for e in events],
    }
    if ctx.is_json or ctx.output_format in ("yaml", "csv"):
        ctx.output.emit({k: v for k, v in report.items() if v is not None})
        return
    ctx.output.emit(report, columns=status_columns())
    if events:
        ctx.output.emit(events, columns=event_columns())
    else:
        ctx.output.info("No events received yet.")


def status_columns() -> list[Any]:
    from boltic_cli.output import Column

    # Tables show human headers; plain output labels each line with its wire name.
    return [
        Column(
            "Source",
            lambda r: f"{r['source'].get('name', '')} ({r['source'].get('id')})",
            name="source",
        ),
        Column("Status", "source.status", name="status"),
        Column("Connected", lambda r: "yes" if r["connected"] else "no", name="connected"),
        Column("Last event", "lastEventAt", kind="time"),
        Column("Events today", "eventsToday", kind="number"),
    ]


# -- debug tail --------------------------------------------------------------------


@app.command("tail")
def tail(
    sources: SourcesArg = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Tail every source.")] = False,
    history: Annotated[
        int, typer.Option("--history", min=0, max=500, help="Recent events to show first.")
    ] = 10,
    type_: TypeOption = None,
    where: WhereOption = None,
    max_events: Annotated[
        int | None, typer.Option("--max-events", "-n", min=1, help="Stop after N events.")
    ] = None,
    duration: DurationOption = None,
    interval: IntervalOption = 1.0,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=500, hidden=True)] = 500,
) -> None:
    """Follow events as they arrive: recent history first, then live, oldest to newest.

    Several sources (or --all) are merged by arrival time. Missed events (more
    than one page between two polls) are reported, never skipped silently.
    Connection errors and server errors are retried with backoff. Stops on
    Ctrl-C, --max-events or --duration. With -o ndjson (or json: a stream has
    no end to close an array at) every line has a "kind": "event" (the event
    object), or "gap", "reconnecting", "connected".

    Examples:

      boltic debug tail web --type purchase

      boltic debug tail --all -o ndjson | jq .type
    """
    from boltic_cli.output import TailView
    from boltic_cli.tail import Tail

    check_sources_or_all(sources, all_, "tail")
    ctx = current()
    accept = event_filter(type_, where)
    seconds = duration_seconds(duration, option="--duration")
    with ctx.make_client() as client:
        names, source_list = followed_sources(client, sources, all_)
        engine = Tail(
            client,
            source_list,
            history=history,
            interval=interval,
            page_size=page_size,
            accept=accept,
            duration=seconds,
            clock=engine_clock(ctx),
            sleep=ctx.env.sleep,
        )
        view = TailView(names=names, multi_source=all_ or len(names) > 1)
        ctx.output.follow_tail(engine, view, max_events=max_events)


# -- debug top -------------------------------------------------------------------


@app.command("top")
def top(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Source ids or exact names (default: every source).",
            metavar="SOURCE...",
            show_default=False,
            autocompletion=complete_source,
        ),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Every source, as they come and go (the default).")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.2, help="Seconds between redraws (and snapshots)."),
    ] = 1.0,
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration", "-d", metavar="DURATION", help="Stop after this long (90s, 5m)."
        ),
    ] = None,
) -> None:
    """A live view of the flow: which sources send, how fast, and what.

    Per source: connected or not, events/s now (last 5 s) and over the last
    minute, a sparkline of the last 60 s, events today, the last event's age,
    gaps and reconnects; below, the top event types of the last 60 s. Built on
    the tail (one follower per source, merged): it counts every event the tail
    sees and says when it may have missed some (a gap). Redrawn every
    --interval; Ctrl-C leaves and restores the terminal. Piped, or with
    -o json/ndjson: one snapshot object per line per interval.

    Examples:

      boltic debug top

      boltic debug top web checkout -o ndjson --duration 1m | jq .rateNow
    """
    from functools import partial

    from boltic_cli.errors import UsageError
    from boltic_cli.tail import Tail
    from boltic_cli.top import TopAggregator, TopFeed

    if all_ and sources:
        raise UsageError("name the sources to watch, or use --all (not both)")
    ctx = current()
    if ctx.output.format in ("yaml", "csv"):
        # -o is never silently ignored (issue 13): snapshots are JSON lines.
        raise UsageError(
            f"debug top does not print {ctx.output.format}: it draws a live view on a "
            "terminal, or one JSON snapshot per line (-o json or ndjson)"
        )
    seconds = duration_seconds(duration, option="--duration")
    clock = engine_clock(ctx)
    with ctx.make_client() as client:
        names = source_names(client, sources or [])
        make_tail = partial(Tail, client, duration=seconds, clock=clock)
        aggregator = TopAggregator(names, names=names, clock=clock, now=ctx.env.clock)
        feed = TopFeed(
            make_tail,
            aggregator,
            list_sources=client.list_stream_sources,
            source_ids=list(names),
            follow_all=not sources,
            interval=interval,
            sleep=ctx.env.sleep,
        )
        ctx.output.follow_top(feed)


# -- debug wait --------------------------------------------------------------------


@app.command("wait")
def wait(
    source: SourceArg,
    type_: TypeOption = None,
    where: WhereOption = None,
    timeout: Annotated[
        str, typer.Option("--timeout", help="Give up after this long (30s, 5m).")
    ] = "60s",
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DURATION",
            help="Events received in the last DURATION (5m) count too: send first, then wait.",
        ),
    ] = None,
    interval: IntervalOption = 0.5,
) -> None:
    """Wait until a new event matching --type/--where arrives at SOURCE, and print it.

    Events already there when the wait starts do not count, unless they arrived
    within --since. Exits 0 when one arrives, 1 when --timeout runs out: an
    end-to-end check for CI. On a terminal it shows what it waits for and the
    time left.

    Example:

      boltic events send web --type signup -p plan=pro

      boltic debug wait web --type signup --where plan=pro --since 5m --timeout 2m
    """
    from boltic_cli.errors import WaitTimedOut
    from boltic_cli.lookup import cached_source_id
    from boltic_cli.output import TailView
    from boltic_cli.tail import Tail

    ctx = current()
    accept = event_filter(type_, where)
    seconds = duration_seconds(timeout, option="--timeout")
    since_seconds = duration_seconds(since, option="--since")
    since_time = (
        ctx.env.clock() - timedelta(seconds=since_seconds) if since_seconds is not None else None
    )
    with ctx.make_client() as client:
        source_id = cached_source_id(client, source, ctx.source_names)
        engine = Tail(
            client,
            [source_id],
            history=0,
            interval=interval,
            accept=accept,
            duration=seconds,
            clock=engine_clock(ctx),
            sleep=ctx.env.sleep,
            since=since_time,
        )
        what = wait_description(source, source_id, type_, where, since)
        found = first_event(ctx, engine, TailView(names={source_id: source}), what)
    if found is None:
        raise WaitTimedOut(f"no matching event arrived at {source} within {timeout}")
    ctx.output.emit(found, columns=event_columns())


def wait_description(
    source: str, source_id: str, types: list[str] | None, where: list[str] | None, since: str | None
) -> str:
    """What ``debug wait`` waits for, in words: source, filter, --since."""
    kind = " or ".join(types) if types else "any"
    label = source if source == source_id else f"{source} ({source_id})"
    text = f"{kind} event at {label}"
    if where:
        text += " where " + " and ".join(where)
    if since:
        text += f", received in the last {since} or later"
    return text


def first_event(ctx: Context, engine: Tail, view: TailView, what: str = "") -> Event | None:
    """The first event the engine yields (None when its time runs out); notices on stderr.

    When stderr is a terminal (and the format is not JSON), a line says what it waits
    for (``what``) and a transient status line counts down the time left.
    """
    if not ctx.env.stderr_isatty or ctx.is_json:
        return _first(ctx, engine, view, None)
    left = _time_left(engine)
    ctx.output.info(f"Waiting up to {left} for {what} (Ctrl-C to stop)")
    with ctx.output.progress("waiting: {task.fields[left]} left", left=left) as line:

        def refresh() -> None:
            if line is not None:
                line.update(left=_time_left(engine))

        return _first(ctx, engine, view, refresh)


def _first(
    ctx: Context, engine: Tail, view: TailView, on_idle: Callable[[], None] | None
) -> Event | None:
    for record in engine.records(on_idle=on_idle):
        if record.kind == "event":
            return record.event
        if record.kind != "connected":
            ctx.output.info(view.notice(record))
    return None


def _time_left(engine: Tail) -> str:
    if engine.deadline is None:
        return "no limit"
    seconds = max(0.0, engine.deadline - engine.clock())
    if seconds >= 120:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{seconds:.0f}s"


# -- debug forward -----------------------------------------------------------------


@app.command("forward")
def forward(
    sources: SourcesArg = None,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="URL", help="Where to POST each event (used as given)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Forward every source.")] = False,
    type_: TypeOption = None,
    where: WhereOption = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "-H",
            "--header",
            metavar="'NAME: VALUE'",
            help="Extra header on each POST. Repeatable.",
        ),
    ] = None,
    history: Annotated[
        int,
        typer.Option("--history", min=0, max=500, help="Recent events to forward first."),
    ] = 0,
    max_events: Annotated[
        int | None,
        typer.Option("--max-events", "-n", min=1, help="Stop after N events were settled."),
    ] = None,
    duration: DurationOption = None,
    print_secret: Annotated[
        bool, typer.Option("--print-secret", help="Print only the signing secret and exit.")
    ] = False,
    attempt_timeout: Annotated[
        float,
        typer.Option("--attempt-timeout", min=0.1, help="Seconds one POST may take."),
    ] = 10.0,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", min=1, max=64, help="POSTs at once (1 keeps the events in order)."
        ),
    ] = 1,
    buffer: Annotated[
        int,
        typer.Option(
            "--buffer",
            min=1,
            help="Most events held while the endpoint fails (then the oldest drop).",
        ),
    ] = 10_000,
    interval: IntervalOption = 1.0,
) -> None:
    """Forward live events to a local endpoint, signed like the server's webhook deliveries.

    Each event is POSTed to --to URL as JSON with Standard Webhooks headers
    (webhook-id is the event id), signed with this profile's local secret
    (whsec_..., made on first use and kept in the config file; --print-secret
    prints it). Nothing is lost silently: connection errors, timeouts, 408,
    429 and 5xx are retried with backoff (honouring Retry-After) while later
    events wait, in order, up to --buffer events (beyond it the oldest are
    dropped and counted); any other answer is reported and that event
    skipped. One line per attempt on stdout; -o ndjson gives one record per
    attempt or notice, each with a "kind". A summary (forwarded, failed,
    dropped, pending) ends every run: with --max-events or --duration the exit
    status is 0 when every event was forwarded, 1 otherwise; Ctrl-C is 130.

    Examples:

      boltic debug forward web --to http://localhost:4242/webhook

      boltic debug forward --all --type purchase --to 'http://localhost:3000/hooks?env=dev'
    """
    from boltic_cli.errors import PartialFailure, UsageError
    from boltic_cli.forward import Forwarder, OriginalEvents, check_url, forward_secret
    from boltic_cli.output import ForwardView, follow_forward
    from boltic_cli.params import parse_headers
    from boltic_cli.tail import Tail

    ctx = current()
    if print_secret:
        ctx.output.raw(forward_secret(ctx.settings) + "\n")
        return
    if to is None:
        raise UsageError("missing --to URL: where to forward the events")
    check_sources_or_all(sources, all_, "forward")
    check_url(to)
    headers = parse_headers(header or [], option="--header")
    accept = event_filter(type_, where)
    seconds = duration_seconds(duration, option="--duration")
    secret = forward_secret(ctx.settings)
    with ctx.make_client() as client:
        names, source_list = followed_sources(client, sources, all_)
        # The tail polls through it, so each event is POSTed as the API returned it.
        originals = OriginalEvents(client, capacity=buffer + 1000)
        forwarder = Forwarder(
            to,
            secret,
            headers=headers,
            attempt_timeout=attempt_timeout,
            concurrency=concurrency,
            buffer=buffer,
            max_events=max_events,
            duration=seconds,
            wall_clock=ctx.env.clock,
            originals=originals,
        )
        engine = Tail(
            originals,
            source_list,
            history=history,
            interval=interval,
            accept=accept,
            duration=seconds,
            sleep=forwarder.sleep,
        )
        view = ForwardView(names=names, multi_source=all_ or len(names) > 1)
        filters = [f"type {t}" for t in type_ or []] + list(where or [])
        for line in view.banner(
            sources=[] if all_ else list(names.values()), url=to, secret=secret, filters=filters
        ):
            ctx.output.info(line)
        follow_forward(ctx.output, forwarder, engine.records(), view)
    stats = forwarder.stats
    if not stats.clean:
        raise PartialFailure(
            f"not every event was forwarded: {stats.failed} failed, {stats.dropped} dropped, "
            f"{stats.pending} pending"
        )


# -- shared helpers -------------------------------------------------------------------


def event_filter(types: list[str] | None, where: list[str] | None) -> Callable[[Event], bool]:
    """The --type / --where test an event must pass (checked before any request)."""
    from boltic_cli.params import parse_where

    wanted = set(types or ())
    conditions = parse_where(where or ())

    def accept(event: Event) -> bool:
        if wanted and event.type not in wanted:
            return False
        if not conditions:
            return True
        wire = event.to_wire()
        return all(condition.matches(wire) for condition in conditions)

    return accept


def engine_clock(ctx: Context) -> Callable[[], float]:
    """Seconds from the environment's clock, so tests that move it move the tail."""
    from boltic_cli.tail import seconds_from

    return seconds_from(ctx.env.clock)


def check_sources_or_all(sources: list[str] | None, all_: bool, verb: str) -> None:
    """SOURCE... or --all, exactly one of them (UsageError, before any request)."""
    if all_ == bool(sources):
        from boltic_cli.errors import UsageError

        raise UsageError(f"name the sources to {verb}, or use --all (not both)")


def followed_sources(
    client: BolticClient, sources: list[str] | None, all_: bool
) -> tuple[dict[str, str], Any]:
    """What a tail follows: id -> name of the named sources, and the list it polls:
    their ids, or with --all every source as they come and go (``all_source_ids``)."""
    from boltic_cli.tail import all_source_ids

    names = source_names(client, sources or [])
    return names, all_source_ids(client, names) if all_ else list(names)


def source_names(client: BolticClient, refs: list[str]) -> dict[str, str]:
    """id -> name of the named sources (resolved before polling: a typo fails at once)."""
    from boltic_cli.lookup import resolve_source

    names: dict[str, str] = {}
    for ref in refs:
        found = resolve_source(client, ref)
        assert found.id is not None
        names[found.id] = found.name or found.id
    return names
