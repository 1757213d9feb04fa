"""boltic destinations: create, inspect, change and delete stream destinations, and see
and steer their webhook deliveries (test, the delivery log, replay).

list and create are the spec's operations; every other command uses an extension of
``boltic server`` (design.md "Destinations that deliver") and, against a server without
it, ends with one line saying so (exit 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from boltic_cli._compat import click
from boltic_cli.commands import QuietOption, YesOption, new_app
from boltic_cli.completers import (
    complete_destination_type,
    complete_event_type,
    complete_source,
)
from boltic_cli.context import current
from boltic_cli.errors import BolticError, UsageError

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.context import Context
    from boltic_cli.models import StreamDestination
    from boltic_cli.output import Column

app = new_app(help="Manage stream destinations and their webhook deliveries.")

# models.DeliveryStatus, in its order (not imported: pydantic stays out of startup). The
# order must match: typing caches `Literal[...] | None` by set, so whichever module built
# it first would set the order --help shows. tests/test_destinations.py holds them equal.
DeliveryStatus = Literal["pending", "succeeded", "failed"]
VERIFY_HINT = (
    "Receivers verify the webhook-signature header with any Standard Webhooks library, "
    "e.g. Python: standardwebhooks.Webhook(secret).verify(body, headers)."
)


def destination_columns() -> list[Column]:
    from boltic_cli.output import Column

    return [
        Column("ID", "id"),
        Column("NAME", "name", max_width=40),
        Column("TYPE", "type"),
        Column("STATUS", "status"),
        Column("CONFIG", "config", kind="secret-json", max_width=50),
        Column("CREATED", "createdAt", kind="time"),
    ]


def destination_detail_columns() -> list[Column]:
    """One destination's fields: the list's, and why it was disabled when it was."""
    from boltic_cli.output import Column

    columns = destination_columns()
    return [*columns[:4], Column("DISABLED BECAUSE", "disabledReason"), *columns[4:]]


def _complete_destination(ctx: click.Context, incomplete: str) -> list[tuple[str, str]]:
    from boltic_cli.completers import complete_destination

    return complete_destination(ctx, incomplete)


DestArg = Annotated[
    str,
    typer.Argument(
        metavar="DEST",
        help="Destination id (dst_...) or exact name.",
        autocompletion=_complete_destination,
    ),
]
NameOption = Annotated[str | None, typer.Option("--name", help="A name people will recognise.")]
ConfigFieldOption = Annotated[
    list[str] | None,
    typer.Option(
        "-c",
        "--config-field",
        metavar="KEY=VALUE|KEY:=JSON",
        help="One config value: key=text or key:=<json>. Repeatable; wins over --config.",
    ),
]
ConfigOption = Annotated[
    str | None,
    typer.Option("--config", metavar="JSON|@FILE|-", help="The config object: JSON, @file or -."),
]
UrlOption = Annotated[
    str | None, typer.Option("--url", help="Webhook URL (http or https): sets config.url.")
]
HeaderOption = Annotated[
    list[str] | None,
    typer.Option(
        "--header",
        "-H",
        metavar="NAME:VALUE",
        help="A header sent with every delivery (config.headers). Repeatable.",
    ),
]


@app.command("list")
def list_(
    quiet: QuietOption = False,
) -> None:
    """List stream destinations."""
    ctx = current()
    with ctx.make_client() as client:
        destinations = client.list_stream_destinations()
    if quiet:
        ctx.output.emit_ids(d.id for d in destinations if d.id)
        return
    ctx.output.emit(destinations, columns=destination_columns())


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name people will recognise.")],
    type_: Annotated[
        str | None,
        typer.Option(
            "--type",
            help="Destination type (default webhook when --url is given).",
            autocompletion=complete_destination_type,
        ),
    ] = None,
    url: UrlOption = None,
    header: HeaderOption = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option(
            "--event-type",
            metavar="TYPE",
            help="Deliver only events of this type (repeatable; default all).",
            autocompletion=complete_event_type,
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            metavar="SOURCE",
            help="Deliver only events of this source, id or name (repeatable; default all).",
            autocompletion=complete_source,
        ),
    ] = None,
    config_field: ConfigFieldOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a stream destination.

    A webhook destination POSTs every matching event to --url, signed the Standard
    Webhooks way. On a terminal the new signing secret is shown once; -o json gives
    the object (with the secret).

    Examples:

      boltic destinations create --name hooks --type webhook --url https://example.com/in

      boltic destinations create --name s3 --type s3 -c bucket=events
    """
    ctx = current()
    merged = _config_from_flags(ctx, {}, config, config_field, url, header)
    if type_ is None:
        if url is None:
            raise UsageError("give --type (or --url for a webhook)")
        type_ = "webhook"
    if event_type:
        merged["eventTypes"] = list(event_type)
    with ctx.make_client() as client:
        if source:
            from boltic_cli.lookup import resolve_source_id

            merged["sourceIds"] = [resolve_source_id(client, s) for s in source]
        destination = client.create_stream_destination(
            {"name": name, "type": type_, "config": merged}
        )
    if ctx.output.format == "table" and ctx.output.stdout_isatty:
        _show_created(ctx, destination)
    else:
        # Output masks secret-looking config values in table and plain formats.
        ctx.output.emit(destination, columns=destination_detail_columns())


def _show_created(ctx: Context, destination: StreamDestination) -> None:
    """The one place a table shows the signing secret (design.md): right after creation."""
    from boltic_cli.output import sanitize

    ctx.output.success(f"Created destination {sanitize(destination.name or '')}")
    ctx.output.emit(destination, columns=destination_detail_columns())
    secret = (destination.config or {}).get("signingSecret")
    if isinstance(secret, str) and secret:
        ctx.output.text_lines(
            [
                f"Signing secret (tables mask it from now on): {sanitize(secret)}",
                VERIFY_HINT,
            ]
        )


def _config_from_flags(
    ctx: Context,
    base: dict[str, Any],
    config: str | None,
    fields: list[str] | None,
    url: str | None,
    headers: list[str] | None,
) -> dict[str, Any]:
    """``base`` (or --config instead), then -c fields, --url and --header over it."""
    from boltic_cli.params import load_json_object, parse_fields

    merged: dict[str, Any] = dict(base)
    if config is not None:
        merged = load_json_object(config, ctx.env.stdin, option="--config")
    merged.update(parse_fields(fields or [], option="-c"))
    if url is not None:
        merged["url"] = url
    if headers:
        current_headers = merged.get("headers")
        merged["headers"] = {
            **(current_headers if isinstance(current_headers, dict) else {}),
            **parse_headers(headers),
        }
    return merged


def parse_headers(items: list[str]) -> dict[str, str]:
    """``NAME:VALUE`` items as a dict (spaces around the value dropped); UsageError
    naming --header for an item without a name or a colon."""
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {item!r}: expected NAME:VALUE")
        headers[name.strip()] = value.strip()
    return headers


@app.command("get")
def get(dest: DestArg) -> None:
    """Show one stream destination (secrets masked except in json, yaml and csv)."""
    from boltic_cli.lookup import resolve_destination

    ctx = current()
    with ctx.make_client() as client:
        found = resolve_destination(client, dest)
    ctx.output.emit(found, columns=destination_detail_columns())


@app.command("update")
def update(
    dest: DestArg,
    name: NameOption = None,
    config_field: ConfigFieldOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    header: HeaderOption = None,
) -> None:
    """Change a destination's name or config.

    --config replaces the whole config; -c, --url and --header change single values of
    the current one. A webhook keeps its signing secret unless a new one is given.

    Example: boltic destinations update hooks --url https://example.com/v2 -H X-Team:growth
    """
    from boltic_cli.lookup import resolve_destination

    ctx = current()
    changes_config = config is not None or config_field or url is not None or header
    if name is None and not changes_config:
        raise UsageError("nothing to change: give --name, --config, -c, --url or --header")
    with ctx.make_client() as client:
        found = resolve_destination(client, dest)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if changes_config:
            changes["config"] = _config_from_flags(
                ctx, found.config or {}, config, config_field, url, header
            )
        assert found.id is not None
        updated = client.update_stream_destination(found.id, changes)
    ctx.output.emit(updated, columns=destination_detail_columns())


@app.command("enable")
def enable(dest: DestArg) -> None:
    """Set a destination active: it gets new deliveries and its waiting ones resume."""
    _set_status(dest, "active")


@app.command("disable")
def disable(dest: DestArg) -> None:
    """Set a destination inactive: no new deliveries; pending ones wait until enabled."""
    _set_status(dest, "inactive")


def _set_status(dest: str, status: str) -> None:
    from boltic_cli.lookup import resolve_destination_id
    from boltic_cli.output import sanitize

    ctx = current()
    with ctx.make_client() as client:
        destination_id = resolve_destination_id(client, dest)
        updated = client.update_stream_destination(destination_id, {"status": status})
    if ctx.output.format == "table":
        verb = "Enabled" if status == "active" else "Disabled"
        ctx.output.success(f"{verb} destination {sanitize(updated.name or '')} ({updated.id})")
    else:
        ctx.output.emit(updated, columns=destination_detail_columns())


@app.command("delete")
def delete(
    dest: DestArg,
    yes: YesOption = False,
) -> None:
    """Delete a destination and its delivery log; pending deliveries are dropped.

    Asks for confirmation on a terminal; needs --yes otherwise.
    """
    from boltic_cli.lookup import resolve_destination
    from boltic_cli.output import sanitize

    ctx = current()
    ctx.require_yes_off_terminal(yes, "deleting a destination")
    with ctx.make_client() as client:
        found = resolve_destination(client, dest)
        label = f"{sanitize(found.name or '')} ({found.id})"
        ctx.confirm_delete(f"Destination {label} and its deliveries will be deleted.", yes=yes)
        assert found.id is not None
        client.delete_stream_destination(found.id)
    ctx.output.success(f"Deleted destination {label}")


@app.command("test")
def test(dest: DestArg) -> None:
    """Deliver a boltic.test event to DEST now and show the attempt.

    Shows the outcome, the receiver's status, how long it took and the first lines of
    its answer. Nothing is stored. Exits 0 when the receiver accepted it (2xx), 1
    otherwise.
    """
    from boltic_cli.lookup import resolve_destination_id
    from boltic_cli.output import delivery_attempt_columns

    ctx = current()
    with ctx.make_client() as client:
        destination_id = resolve_destination_id(client, dest)
        result = client.test_stream_destination(destination_id)
    ctx.output.emit(result, columns=delivery_attempt_columns(detail=True))
    if result.outcome != "success":
        shown = result.response_status if result.response_status is not None else result.error
        raise BolticError(f"test delivery failed: {result.outcome} ({shown})")


@app.command("deliveries")
def deliveries(
    dest: DestArg,
    delivery_id: Annotated[
        str | None,
        typer.Argument(
            metavar="DELIVERY_ID",
            help="Show every attempt of this delivery (dlv_..., or the event's evt_... id).",
        ),
    ] = None,
    status: Annotated[
        DeliveryStatus | None, typer.Option("--status", help="Only deliveries in this state.")
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", metavar="EVENT_ID", help="Only this event's.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=500, help="How many, newest first.")
    ] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print attempts as they happen.")
    ] = False,
    duration: Annotated[
        str | None,
        typer.Option("--duration", "-d", help="With --follow: stop after this long (90s, 5m)."),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="With --follow: seconds between polls.")
    ] = 1.0,
) -> None:
    """Recent deliveries of DEST, or every attempt of one (DELIVERY_ID).

    The table shows each delivery's event, the event's type when known, its state,
    attempts, the last answer and when the next attempt is due. --follow polls the
    log and prints each attempt as it happens until Ctrl-C or --duration (deliveries
    already there when it starts are not repeated). With DELIVERY_ID: json and yaml
    give the delivery with its history, the other formats one row per attempt (the
    table after the delivery's fields).

    Examples:

      boltic destinations deliveries hooks --status failed

      boltic destinations deliveries hooks --follow -o ndjson
    """
    from boltic_cli.durations import duration_seconds
    from boltic_cli.lookup import resolve_destination_id

    ctx = current()
    seconds = duration_seconds(duration, option="--duration")
    if delivery_id is not None and follow:
        raise UsageError("--follow follows the log; give no DELIVERY_ID with it")
    with ctx.make_client() as client:
        destination_id = resolve_destination_id(client, dest)
        if delivery_id is not None:
            delivery_id = _delivery_of(client, destination_id, delivery_id)
            _show_delivery(ctx, client.get_destination_delivery(destination_id, delivery_id))
        elif follow:
            _follow(ctx, client, destination_id, status, event, interval, seconds)
        else:
            found = client.list_destination_deliveries(
                destination_id, status=status, event_id=event, limit=limit
            )
            _emit_deliveries(ctx, client, found)


def _delivery_of(client: BolticClient, destination_id: str, ref: str) -> str:
    """The delivery id ``ref`` names: itself, or for an event id (``evt_``) the delivery
    of that event to this destination (NotFound when there is none)."""
    from boltic_cli.errors import NotFound

    if not ref.startswith("evt_"):
        return ref
    found = client.list_destination_deliveries(destination_id, event_id=ref, limit=1)
    if not found or not found[0].id:
        raise NotFound(404, f"no delivery of event {ref!r} to this destination")
    return found[0].id


def _emit_deliveries(ctx: Context, client: BolticClient, found: list[Any]) -> None:
    from boltic_cli.output import delivery_columns

    types = {} if ctx.output.format not in ("table", "plain") else event_types(client, found)
    ctx.output.emit(found, columns=delivery_columns(types))


def event_types(client: BolticClient, found: list[Any]) -> dict[str, str]:
    """event id -> type for the deliveries shown, from one spec query of the events since
    the oldest delivery (best effort: types of events beyond that page stay unknown)."""
    from datetime import timedelta

    created = [d.created_at for d in found if d.created_at is not None]
    if not created:
        return {}
    try:
        page = client.query_events(from_=min(created) - timedelta(days=1), limit=1000)
    except BolticError:
        return {}
    return {e.id: e.type for e in page.data if e.id and e.type}


def _show_delivery(ctx: Context, delivery: Any) -> None:
    from boltic_cli.output import delivery_attempt_columns, delivery_columns

    if ctx.output.format in ("json", "yaml"):
        ctx.output.emit(delivery)
        return
    if ctx.output.format == "table":
        ctx.output.emit(delivery, columns=delivery_columns({}, detail=True))
    ctx.output.emit(delivery.history or [], columns=delivery_attempt_columns())


def _follow(
    ctx: Context,
    client: BolticClient,
    destination_id: str,
    status: str | None,
    event: str | None,
    interval: float,
    seconds: float | None,
) -> None:
    from boltic_cli.output import follow_deliveries
    from boltic_cli.tail import seconds_from

    if ctx.output.stderr_isatty:
        ctx.output.info(f"Following deliveries of {destination_id}; Ctrl-C to stop.")
    feed = client.follow_deliveries(
        destination_id,
        status=status,
        event_id=event,
        interval=interval,
        duration=seconds,
        clock=seconds_from(ctx.env.clock),
        sleep=ctx.env.sleep,
    )
    follow_deliveries(ctx.output, feed)


@app.command("replay")
def replay(
    dest: DestArg,
    failed: Annotated[
        bool, typer.Option("--failed", help="Queue the failed deliveries again.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="TIME", help="Only deliveries created since (2h, 2026-11-26)."
        ),
    ] = None,
) -> None:
    """Queue DEST's failed deliveries again, with a fresh retry schedule; says how many.

    Example: boltic destinations replay hooks --failed --since 1d
    """
    from boltic_cli.durations import parse_time
    from boltic_cli.lookup import resolve_destination_id
    from boltic_cli.output import sanitize

    ctx = current()
    if not failed:
        raise UsageError("say which deliveries to replay: --failed")
    when = None if since is None else parse_time(since, now=ctx.env.clock(), option="--since")
    with ctx.make_client() as client:
        destination_id = resolve_destination_id(client, dest)
        result = client.replay_destination_deliveries(destination_id, since=when)
    if ctx.output.format == "table":
        count = result.queued or 0
        noun = "delivery" if count == 1 else "deliveries"
        ctx.output.text_lines([f"Queued {count} failed {noun} of {sanitize(dest)} again."])
    else:
        ctx.output.emit(result)
