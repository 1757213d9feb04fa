"""boltic events send: one event from options, or many from a file (``sender.py``)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from boltic_cli.completers import complete_event_type, complete_source
from boltic_cli.context import current
from boltic_cli.errors import PartialFailure, UsageError

if TYPE_CHECKING:
    from boltic_cli.context import Context
    from boltic_cli.output import ProgressLine
    from boltic_cli.sender import InputItem, SendFailure, SendFigures, SendSummary


def send(
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="[SOURCE]",
            help="Source id or exact name (with --file: fills a missing sourceId).",
            autocompletion=complete_source,
        ),
    ] = None,
    type_: Annotated[
        str | None,
        typer.Option(
            "--type", help="Event type, e.g. page_view.", autocompletion=complete_event_type
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
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            max=64,
            help="Parallel requests with --file (default: 8).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            max=500,
            help="Events per batch request with --file (default: as many as fit, up to 500).",
        ),
    ] = None,
    no_batch: Annotated[
        bool,
        typer.Option("--no-batch", help="With --file: one request per event, no batches."),
    ] = False,
    message_ids: Annotated[
        bool,
        typer.Option(
            "--message-ids",
            help="With --file: give events without a messageId one made from the line's "
            "content and number, so sending the same file again stores nothing twice.",
        ),
    ] = False,
    print_ids: Annotated[
        bool,
        typer.Option(
            "--print-ids",
            help="With --file: print each accepted event's line and id (LINE, [ITEM,] ID; "
            "an object per line with -o json/ndjson).",
        ),
    ] = False,
) -> None:
    """Send one event (prints its id), or many from a file with --file.

    With --file, a line that fails does not stop the rest: each failure is reported
    with its line number, a summary follows, and the exit status is 1 if any failed.
    Events go in batches of up to 500 when the server offers POST
    /streams/events/batch, else one request each (the result is the same).

    Examples:

      boltic events send web --type signup -p plan=pro -p seats:=3

      boltic events send web --file events.ndjson --message-ids
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
        options = _FileOptions(concurrency, batch_size, not no_batch, message_ids, print_ids)
        _send_file(ctx, source, file, options)
        return
    file_only = {
        "--concurrency": concurrency,
        "--batch-size": batch_size,
        "--no-batch": no_batch,
        "--message-ids": message_ids,
        "--print-ids": print_ids,
    }
    given = [name for name, value in file_only.items() if value]
    if given:
        raise UsageError(f"{', '.join(given)} only go with --file")
    if source is None:
        raise UsageError("SOURCE is required (or --file)")
    if not type_:
        raise UsageError("--type is required")
    body = _event_body(ctx, type_, prop, properties, context, user_id, anonymous_id, timestamp)
    with ctx.make_client() as client:
        from boltic_cli.lookup import cached_source_id

        body["sourceId"] = cached_source_id(client, source, ctx.source_names)
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
    merged.update(parse_fields(prop or [], option="-p"))
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


@dataclass(frozen=True)
class _FileOptions:
    concurrency: int | None
    batch_size: int | None
    batch: bool
    message_ids: bool
    print_ids: bool


def _send_file(ctx: Context, source: str | None, file: str, options: _FileOptions) -> None:
    from boltic_cli.lookup import cached_source_id
    from boltic_cli.sender import BulkSender, read_items

    with ctx.make_client() as client, _open_input(ctx, file) as stream:
        try:
            # read_items decodes its first chunk now: a file that is not text fails
            # here, before any summary is due.
            items = _utf8_checked(read_items(stream), file)
            first = next(items, None)
        except UnicodeDecodeError:
            raise _not_utf8(file) from None
        if source is None and _lacks_source_id(first):
            # Every event would fail the same way: say so once, before sending any.
            where = f"line {first.line}" + (f", item {first.item}" if first.item else "")
            raise UsageError(
                f"the first event ({where}) has no sourceId",
                hint="give SOURCE (it fills a missing sourceId) or add sourceId to the events",
            )
        default_source = cached_source_id(client, source, ctx.source_names) if source else None
        all_items = itertools.chain([first] if first is not None else [], items)
        counters = ("{task.completed:,.0f} sent", "{task.fields[failed]:,} failed")
        with ctx.output.progress(*counters, "{task.fields[rate]}", failed=0, rate="") as progress:
            printer = _IdPrinter(ctx) if options.print_ids else None
            sender = BulkSender(
                client,
                concurrency=options.concurrency,
                batch=options.batch,
                batch_size=options.batch_size,
                message_ids=options.message_ids,
                default_source_id=default_source,
                on_sent=_progress_updater(progress, printer),
                on_failure=_failure_reporter(ctx),
                on_accepted=printer.add if printer is not None else None,
            )
            try:
                sender.run(all_items)
            except BaseException:
                if printer is not None:
                    printer.flush()
                report_send_figures(ctx, sender.summary())
                raise
            summary = sender.summary()
            if printer is not None:
                printer.flush()
            report_send_figures(ctx, summary)
    raise_for_failures(summary)


def _lacks_source_id(item: InputItem | None) -> bool:
    """A readable item without ``sourceId`` (an unreadable one fails on its own line)."""
    return item is not None and item.body is not None and not item.body.get("sourceId")


class _IdPrinter:
    """``--print-ids``: accepted ids with their line, written after each request."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pending: list[tuple[InputItem, str]] = []

    def add(self, item: InputItem, event_id: str) -> None:
        self.pending.append((item, event_id))

    def flush(self) -> None:
        pairs, self.pending = self.pending, []
        if self.ctx.is_json:
            for item, event_id in pairs:
                where = {"line": item.line} | ({"item": item.item} if item.item else {})
                self.ctx.output.emit_record({**where, "eventId": event_id})
            return
        from boltic_cli.output import sanitize

        rows = (
            "\t".join(str(part) for part in (item.line, item.item, sanitize(event_id)) if part)
            for item, event_id in pairs
        )
        text = "".join(row + "\n" for row in rows)
        if text:
            self.ctx.output.raw(text)


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


def _progress_updater(
    progress: ProgressLine | None, printer: _IdPrinter | None
) -> Callable[[SendSummary], None] | None:
    if progress is None and printer is None:
        return None

    def update(summary: SendSummary) -> None:
        if printer is not None:
            printer.flush()
        if progress is not None:
            speed = progress.speed
            rate = f"{speed:,.0f}/s" if speed else ""
            progress.update(completed=summary.sent, failed=summary.failed, rate=rate)

    return update


def _failure_reporter(ctx: Context) -> Callable[[SendFailure], None]:
    from boltic_cli.output import dumps_json, sanitize

    def report(failure: SendFailure) -> None:
        if ctx.is_json:
            text = dumps_json(failure.to_dict())
        else:
            text = sanitize(f"{failure.where}: {_describe_error(failure.error)}")
        ctx.output.log(text)

    return report


def _describe_error(error: dict[str, Any]) -> str:
    text = str(error.get("message") or "failed")
    details = error.get("details")
    if details and str(details) not in text:
        text += f": {details}"
    if error.get("code"):
        text += f" (HTTP {error['code']})"
    return text


def report_send_figures(ctx: Context, summary: SendFigures) -> None:
    """The end of ``events send --file`` and ``events generate``: in table or plain one
    line on stderr (``Sent 1,000 events in 2.0s (998 accepted, 2 failed; 499/s)``: the
    events tried, then how they went; the rate counts accepted ones; `` (stopped
    early)`` after Ctrl-C), in other formats the figures are the data
    (``SendFigures.to_dict``: ``sent`` is the accepted count there)."""
    figures = summary.to_dict()
    if ctx.output_format not in ("table", "plain"):  # the summary is the data
        ctx.output.emit(figures)
        return
    tried = figures["sent"] + figures["failed"]
    text = (
        f"Sent {tried:,} events in {figures['seconds']:.1f}s "
        f"({figures['sent']:,} accepted, {figures['failed']:,} failed; "
        f"{figures['rate']:,.0f}/s)"
    )
    if summary.interrupted:
        text += " (stopped early)"
    ctx.output.log(text)


def raise_for_failures(summary: SendFigures, first_failure: dict[str, Any] | None = None) -> None:
    """End ``events send --file`` and ``events generate`` with ``PartialFailure`` (exit 1,
    design.md) when any event failed: ``K of N events failed``, with the first failure's
    reason (``first_failure``, a ``SendFailure.error``) when the failures were not
    each reported already. A run that could not reach the server at all ends with
    the sender's ``NetworkError`` (exit 5) before this."""
    if not summary.failed:
        return
    total = summary.sent + summary.failed
    message = f"{summary.failed:,} of {total:,} events failed"
    if first_failure is not None:
        message += f"; the first: {_describe_error(first_failure)}"
    raise PartialFailure(message)
