"""boltic events: send, query and generate events."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from boltic_cli._click import click
from boltic_cli.commands import new_app
from boltic_cli.context import current
from boltic_cli.errors import PartialFailure, UsageError

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.context import Context
    from boltic_cli.models import Event, EventSummary
    from boltic_cli.output import Column
    from boltic_cli.sender import InputItem, SendFailure, SendSummary

app = new_app(help="Send, query and generate events.")

MAX_LIMIT = 1000
BAR_WIDTH = 40
# The API's times have millisecond precision; `to` is exclusive.
ONE_MS = timedelta(milliseconds=1)


def _complete_source(ctx: click.Context, incomplete: str) -> list[tuple[str, str]]:
    from boltic_cli.completers import complete_source

    return complete_source(ctx, incomplete)


def _complete_event_type(ctx: click.Context, incomplete: str) -> list[str]:
    from boltic_cli.completers import complete_event_type

    return complete_event_type(ctx, incomplete)


def event_columns(source_names: dict[str, str] | None = None) -> list[Column]:
    from boltic_cli.output import Column

    names = source_names or {}

    def source_of(event: dict) -> Any:
        source_id = event.get("sourceId")
        return names.get(source_id, source_id) if source_id else None

    def user_of(event: dict) -> Any:
        return event.get("userId") or event.get("anonymousId")

    return [
        Column("TIME", "timestamp", kind="time"),
        Column("TYPE", "type", max_width=24),
        Column("SOURCE", source_of, max_width=24),
        Column("USER", user_of, max_width=20),
        Column("PROPERTIES", "properties", kind="json", max_width=40),
    ]


# events send


@app.command("send")
def send(
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="[SOURCE]",
            help="Source id or exact name (with --file: fills a missing sourceId).",
            autocompletion=_complete_source,
        ),
    ] = None,
    type_: Annotated[
        str | None,
        typer.Option(
            "--type", help="Event type, e.g. page_view.", autocompletion=_complete_event_type
        ),
    ] = None,
    prop: Annotated[
        list[str] | None,
        typer.Option(
            "-p",
            "--prop",
            metavar="KEY=VALUE|KEY:=JSON",
            help="One property: key=text or key:=<json>. Repeatable; wins over --properties.",
        ),
    ] = None,
    properties: Annotated[
        str | None,
        typer.Option("--properties", metavar="JSON|@FILE|-", help="Properties object."),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", metavar="JSON|@FILE|-", help="Context object."),
    ] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="Known user id.")] = None,
    anonymous_id: Annotated[
        str | None, typer.Option("--anonymous-id", help="Anonymous visitor id.")
    ] = None,
    timestamp: Annotated[
        str | None,
        typer.Option(
            "--timestamp",
            metavar="TIME",
            help="When it happened: RFC 3339, a date, or a duration back from now (15m).",
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "-f",
            "--file",
            metavar="FILE|-",
            help="Send many events: NDJSON or a JSON array of event objects ('-': stdin).",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, max=64, help="Parallel requests with --file."),
    ] = 8,
) -> None:
    """Send one event (prints its id), or many from a file with --file.

    With --file, a line that fails does not stop the rest: each failure is reported
    with its line number, a summary follows, and the exit status is 1 if any failed.

    Examples:

      boltic events send web --type signup -p plan=pro -p seats:=3

      boltic events send web --file events.ndjson --concurrency 16
    """
    ctx = current()
    if file is not None:
        single_only = {
            "--type": type_,
            "-p": prop,
            "--properties": properties,
            "--context": context,
            "--user-id": user_id,
            "--anonymous-id": anonymous_id,
            "--timestamp": timestamp,
        }
        given = [name for name, value in single_only.items() if value]
        if given:
            raise UsageError(f"{', '.join(given)} cannot be combined with --file")
        _send_file(ctx, source, file, concurrency)
        return
    if source is None:
        raise UsageError("SOURCE is required (or --file)")
    if not type_:
        raise UsageError("--type is required")
    body = _event_body(ctx, type_, prop, properties, context, user_id, anonymous_id, timestamp)
    with ctx.make_client() as client:
        from boltic_cli.lookup import resolve_source_id

        body["sourceId"] = resolve_source_id(client, source)
        accepted = client.send_event(body)
    if ctx.output.format in ("table", "plain"):
        ctx.output.emit_ids([accepted.event_id])
    else:
        ctx.output.emit(accepted)


def _event_body(
    ctx: Context,
    type_: str,
    prop: list[str] | None,
    properties: str | None,
    context: str | None,
    user_id: str | None,
    anonymous_id: str | None,
    timestamp: str | None,
) -> dict[str, Any]:
    """The EventInput fields the options describe (all checked before any request)."""
    from boltic_cli.durations import parse_time
    from boltic_cli.models import format_time
    from boltic_cli.params import load_json_object, parse_fields

    body: dict[str, Any] = {"type": type_}
    merged: dict[str, Any] = {}
    if properties is not None:
        merged.update(load_json_object(properties, ctx.env.stdin, option="--properties"))
    merged.update(parse_fields(prop or []))
    if merged:
        body["properties"] = merged
    if context is not None:
        body["context"] = load_json_object(context, ctx.env.stdin, option="--context")
    if user_id:
        body["userId"] = user_id
    if anonymous_id:
        body["anonymousId"] = anonymous_id
    if timestamp:
        body["timestamp"] = format_time(
            parse_time(timestamp, now=ctx.env.clock(), option="--timestamp")
        )
    return body


def _send_file(ctx: Context, source: str | None, file: str, concurrency: int) -> None:
    from boltic_cli.lookup import resolve_source_id
    from boltic_cli.sender import BulkSender, read_items

    with ctx.make_client() as client, _open_input(ctx, file) as stream:
        default_source = resolve_source_id(client, source) if source else None
        try:
            # read_items decodes its first chunk now: a file that is not text fails
            # here, before any summary is due.
            items = read_items(stream)
        except UnicodeDecodeError:
            raise _not_utf8(file) from None
        with _send_progress(ctx) as progress:
            sender = BulkSender(
                client,
                concurrency=concurrency,
                default_source_id=default_source,
                on_sent=progress.update if progress else None,
                on_failure=_failure_reporter(ctx, progress),
            )
            try:
                sender.run(_utf8_checked(items, file))
            except BaseException:
                _report_send_summary(ctx, sender.summary(), progress)
                raise
            summary = sender.summary()
            _report_send_summary(ctx, summary, progress)
    if summary.failed:
        total = summary.sent + summary.failed
        raise PartialFailure(f"{summary.failed} of {total} events failed")


@contextlib.contextmanager
def _open_input(ctx: Context, file: str) -> Iterator[TextIO]:
    if file == "-":
        assert ctx.env.stdin is not None
        yield ctx.env.stdin
        return
    try:
        stream = open(file, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as e:
        raise UsageError(f"cannot read {file}: {e.strerror or e}") from None
    with stream:
        yield stream


def _utf8_checked(items: Iterator[InputItem], file: str) -> Iterator[InputItem]:
    try:
        yield from items
    except UnicodeDecodeError:
        raise _not_utf8(file) from None


def _not_utf8(file: str) -> UsageError:
    return UsageError(f"{'stdin' if file == '-' else file} is not UTF-8 text")


class _SendProgress:
    """A progress line with counts and rate on a terminal's stderr."""

    def __init__(self, ctx: Context) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.completed:,.0f} sent"),
            TextColumn("{task.fields[failed]:,} failed"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=ctx.output.err_console,
            transient=True,
        )
        self.task = self.progress.add_task("send", total=None, failed=0, rate="")
        self.console = self.progress.console

    def update(self, summary: SendSummary) -> None:
        task = self.progress.tasks[0]
        rate = f"{task.speed:,.0f}/s" if task.speed else ""
        self.progress.update(self.task, completed=summary.sent, failed=summary.failed, rate=rate)

    def print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _send_progress(ctx: Context) -> Iterator[_SendProgress | None]:
    if not ctx.env.stderr_isatty:
        yield None
        return
    progress = _SendProgress(ctx)
    with progress.progress:
        yield progress


def _failure_reporter(
    ctx: Context, progress: _SendProgress | None
) -> Callable[[SendFailure], None]:
    from boltic_cli.output import dumps_json, sanitize

    def report(failure: SendFailure) -> None:
        if ctx.is_json:
            text = dumps_json(failure.to_dict())
        else:
            text = sanitize(f"{failure.where}: {_describe_error(failure.error)}")
        if progress is not None:
            progress.print(text)
        else:
            ctx.log(text)

    return report


def _describe_error(error: dict[str, Any]) -> str:
    text = str(error.get("message") or "failed")
    details = error.get("details")
    if details and str(details) not in text:
        text += f": {details}"
    if error.get("code"):
        text += f" (HTTP {error['code']})"
    return text


def _report_send_summary(
    ctx: Context, summary: SendSummary, progress: _SendProgress | None = None
) -> None:
    figures = summary.to_dict()
    if ctx.is_json:
        ctx.output.emit(figures)
        return
    text = (
        f"Sent {figures['sent']:,} events in {figures['seconds']:.1f}s "
        f"({figures['rate']:,.0f}/s), {figures['failed']:,} failed"
    )
    if summary.interrupted:
        text += " (stopped early)"
    if progress is not None:
        progress.print(text)
    else:
        ctx.log(text)


# events query


@app.command("query")
def query(
    source: Annotated[
        str | None,
        typer.Option("--source", help="Source id or exact name.", autocompletion=_complete_source),
    ] = None,
    type_: Annotated[
        str | None,
        typer.Option("--type", help="Only this event type.", autocompletion=_complete_event_type),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            "--from",
            metavar="TIME",
            help="From this time on (inclusive): RFC 3339, a date, or a duration ago (2h).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", "--to", metavar="TIME", help="Before this time (exclusive); a date: its end."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=MAX_LIMIT,
            help="Events per page, 1..1000 (server default 100).",
        ),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Every matching event, page by page back in time (not just one page)."
        ),
    ] = False,
) -> None:
    """Query events, newest first, with a summary of all matches.

    On a terminal the table is followed by the totals and a chart of events per type.
    -o json prints {data, summary}; -o ndjson one event per line.
    """
    from boltic_cli.durations import parse_time

    ctx = current()
    now = ctx.env.clock()
    from_ = parse_time(since, now=now, option="--since") if since else None
    to = parse_time(until, now=now, end_of_day=True, option="--until") if until else None
    if from_ is not None and to is not None and from_ >= to:
        raise UsageError("--since must be before --until")
    with ctx.make_client() as client:
        source_id = _source_filter(client, source)
        filters = {"source_id": source_id, "event_type": type_, "from_": from_, "to": to}
        if all_:
            _query_all(ctx, client, filters, limit or MAX_LIMIT)
        else:
            _query_page(ctx, client, filters, limit)


def _source_filter(client: BolticClient, source: str | None) -> str | None:
    from boltic_cli.lookup import resolve_source_id

    return resolve_source_id(client, source) if source else None


def _source_names(ctx: Context, client: BolticClient) -> dict[str, str]:
    """Source names by id, for a table a person reads (not worth a request otherwise)."""
    if ctx.output.format != "table":
        return {}
    return {s.id: s.name for s in client.list_stream_sources() if s.id and s.name}


def _query_page(
    ctx: Context, client: BolticClient, filters: dict[str, Any], limit: int | None
) -> None:
    result = client.query_events(**filters, limit=limit)
    if ctx.output.format in ("json", "yaml"):
        ctx.output.emit(result)
        return
    columns = event_columns(_source_names(ctx, client))
    ctx.output.emit(result.data, columns=columns)
    if ctx.output.format == "table":
        counts = Counter(e.type or "" for e in result.data)
        _print_summary(ctx, result.summary, counts, "this page")


def _query_all(ctx: Context, client: BolticClient, filters: dict[str, Any], page: int) -> None:
    first_summary: list[EventSummary | None] = []
    events = walk_events(
        client,
        filters,
        page,
        on_summary=first_summary.append,
        on_warning=ctx.output.warn,
    )
    if ctx.output.format in ("json", "yaml"):
        from boltic_cli.models import EventQueryResult

        data = list(events)
        summary = first_summary[0] if first_summary else None
        ctx.output.emit(EventQueryResult(data=data, summary=summary))
        return
    counts: Counter[str] = Counter()

    def counted(items: Iterator[Event]) -> Iterator[Event]:
        for event in items:
            counts[event.type or ""] += 1
            yield event

    columns = event_columns(_source_names(ctx, client))
    ctx.output.emit_stream(counted(events), columns=columns)
    if ctx.output.format == "table":
        summary = first_summary[0] if first_summary else None
        _print_summary(ctx, summary, counts, "all pages")


def _event_time(event: Event) -> datetime | None:
    return event.timestamp or event.received_at


def walk_events(
    client: BolticClient,
    filters: dict[str, Any],
    page: int,
    *,
    on_summary: Callable[[EventSummary | None], None] = lambda s: None,
    on_warning: Callable[[str], None] = lambda s: None,
) -> Iterator[Event]:
    """Every event matching ``filters``, newest first, one request of ``page`` at a time.

    The spec has no cursor, so each next page asks for events before the oldest
    one seen (``to`` is exclusive, hence +1 ms to include its ties) and drops the
    ties already printed. Only ties at the page boundary can repeat, so that is
    all the memory it keeps. More than ``page`` events at one timestamp cannot all
    be reached this way: that is warned about, and the walk goes on before them.
    """
    to = filters.get("to")
    boundary_ids: set[str] = set()
    first = True
    while True:
        result = client.query_events(**{**filters, "to": to}, limit=page)
        if first:
            on_summary(result.summary)
            first = False
        for event in result.data:
            if event.id not in boundary_ids:
                yield event
        if len(result.data) < page:
            return
        newest, oldest = _event_time(result.data[0]), _event_time(result.data[-1])
        if oldest is None or newest is None:
            on_warning("events without a timestamp: cannot page further back")
            return
        if newest == oldest:
            from boltic_cli.models import format_time

            on_warning(
                f"a full page of {page} events share the timestamp {format_time(oldest)}; "
                "events at that time beyond the page cannot be fetched and are skipped"
            )
            to, boundary_ids = oldest, set()
            continue
        to = oldest + ONE_MS
        boundary_ids = {e.id for e in result.data if e.id and _event_time(e) == oldest}


def _print_summary(
    ctx: Context, summary: EventSummary | None, counts: Counter[str], scope: str
) -> None:
    from boltic_cli.output import format_local_time

    console = ctx.output.console
    lines = [""]
    if summary is not None and summary.total_events is not None:
        lines.append(f"Total events:  {summary.total_events:,}")
    if summary is not None and summary.unique_event_types is not None:
        lines.append(f"Unique types:  {summary.unique_event_types:,}")
    time_range = summary.time_range if summary is not None else None
    if time_range is not None and time_range.from_ is not None and time_range.to is not None:
        now = ctx.env.clock()
        start = format_local_time(time_range.from_, now)
        end = format_local_time(time_range.to, now)
        lines.append(f"Time range:    {start} to {end}")
    if counts:
        lines += ["", f"Events per type ({scope}):", *bar_chart(counts, BAR_WIDTH)]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def bar_chart(counts: Counter[str], width: int, *, max_label: int = 24) -> list[str]:
    """One line per key, most frequent first: label, a bar scaled to ``width``, count."""
    from boltic_cli.output import sanitize

    if not counts:
        return []
    rows = counts.most_common()
    labels = [_clip(sanitize(label) or "(none)", max_label) for label, _ in rows]
    label_width = max(len(label) for label in labels)
    top = rows[0][1]
    lines = []
    for label, (_, count) in zip(labels, rows, strict=True):
        bar = "█" * max(1, round(count / top * width))
        lines.append(f"{label.ljust(label_width)}  {bar} {count:,}")
    return lines


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


# events generate


@app.command("generate")
def generate(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE", help="Source id or exact name.", autocompletion=_complete_source
        ),
    ],
    rate: Annotated[
        float | None,
        typer.Option("--rate", min=0.001, help="Events per second (default: as fast as it can)."),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many events.")
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option("--duration", metavar="DURATION", help="Stop after this long (90s, 5m)."),
    ] = None,
    type_: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            help="Only these event types. Repeatable.",
            autocompletion=_complete_event_type,
        ),
    ] = None,
) -> None:
    """Send realistic sample traffic to a source until --count, --duration or Ctrl-C.

    Prints a summary at the end (sent, failed, seconds, rate).
    """
    from boltic_cli.durations import duration_seconds
    from boltic_cli.lookup import resolve_source_id

    ctx = current()
    seconds = duration_seconds(duration, option="--duration")
    with ctx.make_client() as client:
        source_id = resolve_source_id(client, source)
        with _generate_progress(ctx) as on_sent:
            summary = _run_generator_interruptibly(
                ctx, client, source_id, rate, count, seconds, type_, on_sent
            )
    _report_generate_summary(ctx, summary)


def _run_generator_interruptibly(
    ctx: Context,
    client: BolticClient,
    source_id: str,
    rate: float | None,
    count: int | None,
    seconds: float | None,
    types: list[str] | None,
    on_sent: Callable[[dict], None] | None,
) -> dict[str, Any]:
    """Run the generator in a thread so Ctrl-C and SIGTERM (which land in this one) can
    stop it cleanly: the summary is printed before the signal ends the command."""
    from boltic_cli.generator import run_generator

    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["summary"] = run_generator(
                client,
                source_id,
                rate=rate,
                count=count,
                duration=seconds,
                types=types,
                on_sent=on_sent,
                stop=stop,
            )
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=work, name="boltic-generate", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(timeout=0.2)
    except BaseException:
        stop.set()
        thread.join()
        if "summary" in outcome:
            _report_generate_summary(ctx, {**outcome["summary"], "interrupted": True})
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["summary"]


@contextlib.contextmanager
def _generate_progress(ctx: Context) -> Iterator[Callable[[dict], None] | None]:
    if not ctx.env.stderr_isatty:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.completed:,.0f} events sent"),
        TimeElapsedColumn(),
        console=ctx.output.err_console,
        transient=True,
    )
    task = progress.add_task("generate", total=None)
    with progress:
        yield lambda event: progress.advance(task)


def _report_generate_summary(ctx: Context, summary: dict[str, Any]) -> None:
    if ctx.is_json:
        ctx.output.emit(summary)
        return
    text = (
        f"Sent {summary.get('sent', 0):,} events in {summary.get('seconds', 0):.1f}s "
        f"({summary.get('rate', 0):,.0f}/s), {summary.get('failed', 0):,} failed"
    )
    ctx.output.info(text)
