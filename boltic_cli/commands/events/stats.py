"""boltic events stats: exact counts over time and per type (``boltic_cli.stats``)."""

from __future__ import annotations

from typing import Annotated

import typer

from boltic_cli.completers import complete_event_type, complete_source
from boltic_cli.context import current


def stats(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            metavar="SOURCE",
            help="Source id or exact name; repeat for several (default: every source).",
            autocompletion=complete_source,
        ),
    ] = None,
    type_: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            metavar="TYPE",
            help="Only this event type; repeat for several (default: every type).",
            autocompletion=complete_event_type,
        ),
    ] = None,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            "--from",
            metavar="TIME",
            help="Start (inclusive): RFC 3339, a date, or a duration ago (24h, 7d).",
        ),
    ] = "24h",
    until: Annotated[
        str | None,
        typer.Option(
            "--until", "--to", metavar="TIME", help="End (exclusive), default now; a date: its end."
        ),
    ] = None,
    by: Annotated[
        str, typer.Option("--by", metavar="DURATION", help="Bucket size: 15m, 1h, 1d.")
    ] = "1h",
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=16, help="Queries in parallel.")
    ] = 4,
) -> None:
    """Count events over time and per type: exact counts, however many events.

    Each count is the total from the server's query summary (one small query per
    bucket and per type), not a count of fetched pages, so it is exact over
    millions of events and works against any server implementing the API.
    Buckets start on multiples of --by in local time; the first and last are cut to
    the window (marked *). On a terminal: a bar chart over time and a table of
    types. -o json prints every number; -o csv/plain/ndjson one row per bucket
    and per type.

    Examples:

      boltic events stats --since 7d --by 1d

      boltic events stats --source web --type purchase --since 2026-11-01 -o csv
    """
    from boltic_cli.durations import parse_duration, parse_time
    from boltic_cli.errors import UsageError
    from boltic_cli.lookup import cached_source_id
    from boltic_cli.stats import event_stats, plan_buckets

    ctx = current()
    now = ctx.env.clock()
    start = parse_time(since, now=now, option="--since")
    end = parse_time(until, now=now, end_of_day=True, option="--until") if until else now
    step = parse_duration(by, option="--by", positive=True)
    if start >= end:
        raise UsageError("--since must be before --until")
    plan_buckets(start, end, step)  # too many buckets: refused before any request
    with ctx.make_client() as client:
        source_ids = [cached_source_id(client, ref, ctx.source_names) for ref in source or []]
        with ctx.output.progress(
            "counting events: {task.completed:,.0f}/{task.fields[planned]:,} queries", planned=0
        ) as line:

            def progress(done: int, planned: int) -> None:
                if line is not None:
                    line.update(completed=done, planned=planned)

            result = event_stats(
                client,
                since=start,
                until=end,
                by=step,
                source_ids=source_ids,
                event_types=type_,
                concurrency=concurrency,
                on_progress=progress,
            )
    ctx.output.emit_stats(result)
