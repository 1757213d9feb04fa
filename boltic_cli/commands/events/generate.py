"""boltic events generate: realistic sample traffic (``traffic.py``) until told to stop."""

from __future__ import annotations

from typing import Annotated

import typer

from boltic_cli.commands import SourceArg
from boltic_cli.commands.events.send import raise_for_failures, report_send_figures
from boltic_cli.completers import complete_event_type
from boltic_cli.context import current


def generate(
    source: SourceArg,
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
            autocompletion=complete_event_type,
        ),
    ] = None,
) -> None:
    """Send realistic sample traffic to a source until --count, --duration or Ctrl-C.

    Prints a summary at the end (events sent: accepted, failed; seconds, rate). The
    exit status is 1 if any event failed (the first failure's reason is shown), 5 if
    the server could not be reached (the run stops then).
    """
    from boltic_cli.durations import duration_seconds
    from boltic_cli.lookup import cached_source_id
    from boltic_cli.traffic import TrafficRunner

    ctx = current()
    seconds = duration_seconds(duration, option="--duration")
    with ctx.make_client() as client:
        source_id = cached_source_id(client, source, ctx.source_names)
        with ctx.output.progress("{task.completed:,.0f} events sent") as progress:
            on_sent = (lambda event: progress.advance()) if progress is not None else None
            runner = TrafficRunner(
                client,
                source_id,
                rate=rate,
                count=count,
                duration=seconds,
                types=type_,
                on_sent=on_sent,
            )
            with runner:
                try:
                    summary = runner.wait()
                except BaseException:
                    # What ended the run (an unreachable server: exit 5, as for events
                    # send --file), or Ctrl-C and SIGTERM, which land in this thread,
                    # not the sending one: stop it. The summary so far comes first.
                    report_send_figures(ctx, runner.summary if runner.error else runner.stop())
                    raise
    report_send_figures(ctx, summary)
    raise_for_failures(summary, summary.first_failure)
