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
            _query_all(ctx, client, filters, limit or MAX_LIMIT)
        else:
            _query_page(ctx, client, filters, limit)


def _source_filter(client: BolticClient, source: str | None) -> str | None:
    from boltic_cli.lookup import cached_source_id

    return cached_source_id(client, source, current().source_names) if source else None


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
    events = client.iter_events(
        **filters,
        page_size=page,
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
        lines += ["", f"Events per type ({scope}):", *bar_chart(counts, BAR_WIDTH)]
    ctx.output.text_lines(lines)


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
