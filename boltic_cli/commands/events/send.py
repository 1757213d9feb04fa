"""boltic events send: one event from options, or many from a file (``sender.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from boltic_cli.completers import complete_event_type, complete_source
from boltic_cli.context import current
from boltic_cli.errors import PartialFailure, UsageError

if TYPE_CHECKING:
    from boltic_cli.context import Context
    from boltic_cli.output import ProgressLine
    from boltic_cli.sender import InputItem, SendFailure, SendSummary


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


def _send_file(ctx: Context, source: str | None, file: str, concurrency: int) -> None:
    from boltic_cli.lookup import cached_source_id
    from boltic_cli.sender import BulkSender, read_items

    with ctx.make_client() as client, _open_input(ctx, file) as stream:
        default_source = cached_source_id(client, source, ctx.source_names) if source else None
        try:
            # read_items decodes its first chunk now: a file that is not text fails
            # here, before any summary is due.
            items = read_items(stream)
        except UnicodeDecodeError:
            raise _not_utf8(file) from None
        counters = ("{task.completed:,.0f} sent", "{task.fields[failed]:,} failed")
        with ctx.output.progress(*counters, "{task.fields[rate]}", failed=0, rate="") as progress:
            sender = BulkSender(
                client,
                concurrency=concurrency,
                default_source_id=default_source,
                on_sent=_progress_updater(progress),
                on_failure=_failure_reporter(ctx),
            )
            try:
                sender.run(_utf8_checked(items, file))
            except BaseException:
                _report_send_summary(ctx, sender.summary())
                raise
            summary = sender.summary()
            _report_send_summary(ctx, summary)
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


def _progress_updater(progress: ProgressLine | None) -> Callable[[SendSummary], None] | None:
    if progress is None:
        return None

    def update(summary: SendSummary) -> None:
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


def _report_send_summary(ctx: Context, summary: SendSummary) -> None:
    figures = summary.to_dict()
    if ctx.output_format not in ("table", "plain"):  # the summary is the data
        ctx.output.emit(figures)
        return
    text = (
        f"Sent {figures['sent']:,} events in {figures['seconds']:.1f}s "
        f"({figures['rate']:,.0f}/s), {figures['failed']:,} failed"
    )
    if summary.interrupted:
        text += " (stopped early)"
    ctx.output.log(text)
