"""boltic events query: one page, or every match (``BolticClient.iter_events``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from boltic_cli.completers import complete_event_type, complete_source
from boltic_cli.context import current
from boltic_cli.errors import UsageError

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.context import Context
    from boltic_cli.models import Event, EventSummary
    from boltic_cli.output import Column

MAX_LIMIT = 1000
BAR_WIDTH = 40


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
        # Whole in plain; prefix and tail on a narrow terminal (output.short_id).
        Column("ID", "id", kind="id"),
    ]


def query(
    source: Annotated[
        str | None,
        typer.Option("--source", help="Source id or exact name.", autocompletion=complete_source),
    ] = None,
    type_: Annotated[
        str | None,
        typer.Option("--type", help="Only this event type.", autocompletion=complete_event_type),
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
            help="Events in the one page, 1..1000 (server default 100); --all pages on its own.",
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

    On a terminal the table is followed by the totals and a chart of events per type,
    rows print as they arrive, and long output goes through the pager ($BOLTIC_PAGER,
    $PAGER or less -FRX; --no-pager). -o json prints {data, summary}; -o ndjson one
    event per line.
    """
    from boltic_cli.durations import parse_time

    ctx = current()
    now = ctx.env.clock()
    from_ = parse_time(since, now=now, option="--since") if since else None
    to = parse_time(until, now=now, end_of_day=True, option="--until") if until else None
    if from_ is not None and to is not None and from_ >= to:
        raise UsageError("--since must be before --until")
    ctx.page_output()
    with ctx.make_client() as client:
        source_id = _source_filter(client, source)
        filters = {"source_id": source_id, "event_type": type_, "from_": from_, "to": to}
        if all_:
            _query_all(ctx, client, filters)
        else:
            _query_page(ctx, client, filters, limit)


def _source_filter(client: BolticClient, source: str | None) -> str | None:
    # Fetched even when given by id: an unknown id is "not found" (exit 3), not an
    # empty result. A name seen in the last 30 s costs no request (the name cache).
    from boltic_cli.lookup import SOURCE_ID_PREFIX, cached_source_id, resolve_source

    if not source:
        return None
    if source.startswith(SOURCE_ID_PREFIX):
        return resolve_source(client, source).id
    return cached_source_id(client, source, current().source_names)


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
    from boltic_cli.models import Event

    ctx.output.emit(result.data, columns=columns, model=Event)
    if ctx.output.format == "table":
        counts = Counter(e.type or "" for e in result.data)
        _print_summary(ctx, result.summary, counts, "this page")


def _query_all(ctx: Context, client: BolticClient, filters: dict[str, Any]) -> None:
    first_summary: list[EventSummary | None] = []
    missed: list[int] = []
    events = client.iter_events(
        **filters,
        on_summary=first_summary.append,
        on_warning=ctx.output.warn,
        on_missed=lambda count, when: missed.append(count),
    )
    _emit_all(ctx, client, events, first_summary)
    if missed:
        from boltic_cli.errors import PartialFailure

        raise PartialFailure(
            f"{sum(missed):,} matching events could not be fetched "
            "(more than 1000 share one millisecond)"
        )


def _emit_all(
    ctx: Context,
    client: BolticClient,
    events: Iterator[Event],
    first_summary: list[EventSummary | None],
) -> None:
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
    from boltic_cli.models import Event

    ctx.output.emit_stream(counted(events), columns=columns, model=Event)
    if ctx.output.format == "table":
        summary = first_summary[0] if first_summary else None
        _print_summary(ctx, summary, counts, "all pages")


def _print_summary(
    ctx: Context, summary: EventSummary | None, counts: Counter[str], scope: str
) -> None:
    from boltic_cli.output import format_local_time

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
        # A console that cannot show "█" (cp1252, ascii) gets "#" rather than escapes.
        bar = "█" if ctx.output.can_show("█") else "#"
        lines += ["", f"Events per type ({scope}):", *bar_chart(counts, BAR_WIDTH, bar=bar)]
    ctx.output.text_lines(lines)


def bar_chart(
    counts: Counter[str], width: int, *, max_label: int = 24, bar: str = "█"
) -> list[str]:
    """One line per key, most frequent first: label, a bar of ``bar`` scaled to ``width``,
    count. Labels are laid out by display cells (注文完了 is 8 wide), cut at ``max_label``."""
    from boltic_cli.output import cell_width, clip_cells, pad_cells, sanitize

    if not counts:
        return []
    rows = counts.most_common()
    labels = [clip_cells(sanitize(label) or "(none)", max_label) for label, _ in rows]
    label_width = max(cell_width(label) for label in labels)
    top = rows[0][1]
    lines = []
    for label, (_, count) in zip(labels, rows, strict=True):
        bars = bar * max(1, round(count / top * width))
        lines.append(f"{pad_cells(label, label_width)}  {bars} {count:,}")
    return lines
