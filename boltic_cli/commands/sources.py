"""boltic sources: create, list, inspect, update and delete stream sources."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from boltic_cli.commands import QuietOption, SourceArg, YesOption, new_app
from boltic_cli.context import current
from boltic_cli.errors import UsageError

if TYPE_CHECKING:
    from boltic_cli.context import Context
    from boltic_cli.models import StreamSource
    from boltic_cli.output import Column

app = new_app(help="Create, list, inspect, update and delete stream sources.")

# The spec's enum (models.SourceType, not imported here: pydantic stays out of --help).
SourceType = Literal["javascript", "server", "mobile", "webhook"]
SourceStatus = Literal["active", "inactive"]


def source_columns() -> list[Column]:
    from boltic_cli.output import Column

    return [
        Column("ID", "id"),
        Column("NAME", "name", max_width=40),
        Column("TYPE", "type"),
        Column("STATUS", "status"),
        Column("EVENTS TODAY", "eventsToday", kind="number"),
        Column("CREATED", "createdAt", kind="time"),
    ]


def source_detail_columns() -> list[Column]:
    """One source's fields: the list's columns and its write key (meant to be shared)."""
    from boltic_cli.output import Column

    columns = source_columns()
    status = next(i for i, c in enumerate(columns) if c.key == "status")
    return [*columns[: status + 1], Column("WRITE KEY", "writeKey"), *columns[status + 1 :]]


@app.command("list")
def list_(
    quiet: QuietOption = False,
) -> None:
    """List stream sources (paged on a terminal: $BOLTIC_PAGER, $PAGER or less -FRX)."""
    ctx = current()
    ctx.page_output()
    with ctx.make_client() as client:
        sources = client.list_stream_sources()
    if quiet:
        ctx.output.emit_ids(s.id for s in sources if s.id)
    else:
        ctx.output.emit(sources, columns=source_columns())


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name people will recognise.")],
    type_: Annotated[SourceType, typer.Option("--type", help="Where the events come from.")],
) -> None:
    """Create a stream source and show its write key.

    On a terminal it also prints a curl command that sends a test event with the
    new write key; with -o json it prints the source object.
    """
    ctx = current()
    if not name.strip():
        raise UsageError("--name must contain more than spaces (it is how people refer to it)")
    with ctx.make_client() as client:
        _warn_if_name_taken(ctx, client.list_stream_sources(), name)
        source = client.create_stream_source({"name": name, "type": type_})
    ctx.source_names.forget()  # a name may now mean two sources
    if ctx.output.format == "table":
        _show_created(ctx, source)
    else:
        ctx.output.emit(source, columns=source_detail_columns())


def _warn_if_name_taken(ctx: Context, sources: list[StreamSource], name: str) -> None:
    """Names are how people refer to sources: a second one of a name makes every
    command given that name ask for an id instead, and a name with an id prefix
    (``src_``...) is never looked up as a name. Said, not refused."""
    from boltic_cli.lookup import describe_matches, is_id
    from boltic_cli.output import sanitize

    if is_id(name):
        ctx.output.warn(
            f"the name {sanitize(name)!r} starts like an id, so commands will read it as "
            "one and never find this source by its name"
        )
    taken = [s for s in sources if s.name == name]
    if taken:
        ctx.output.warn(
            f"a source named {sanitize(name)!r} already exists ({describe_matches(taken)}); "
            "commands given this name will need an id instead"
        )


def _show_created(ctx: Context, source: StreamSource) -> None:
    from boltic_cli.output import curl_send_example, sanitize

    ctx.output.success(f"Created source {sanitize(source.name or '')}")
    lines = [f"ID:        {source.id}"]
    if source.write_key:
        lines += [
            f"Write key: {source.write_key}",
            "",
            "Send a test event:",
            "",
            curl_send_example(ctx.settings.api_url, source.id or "", source.write_key),
        ]
    ctx.output.text_lines(lines)


@app.command("get")
def get(source: SourceArg) -> None:
    """Show one stream source."""
    from boltic_cli.lookup import resolve_source

    ctx = current()
    with ctx.make_client() as client:
        found = resolve_source(client, source)
    ctx.output.emit(found, columns=source_detail_columns())


@app.command("update")
def update(
    source: SourceArg,
    name: Annotated[str | None, typer.Option("--name", help="The new name.")] = None,
    status: Annotated[
        SourceStatus | None,
        typer.Option("--status", help="inactive pauses the source: its events are refused."),
    ] = None,
) -> None:
    """Rename a stream source or pause it (--status inactive) and resume it.

    An inactive source refuses events (403) and keeps its write key; setting it
    active again makes the key work again. Uses an extension of boltic server
    (PATCH /streams/sources/{id}): a server that offers only the Streams API
    says so and the command exits 1.
    """
    from boltic_cli.lookup import resolve_source_id

    ctx = current()
    if name is None and status is None:
        raise UsageError("nothing to update: give --name and/or --status")
    if name is not None and not name.strip():
        raise UsageError("--name must not be empty or only spaces")
    body = {k: v for k, v in (("name", name), ("status", status)) if v is not None}
    with ctx.make_client() as client:
        source_id = resolve_source_id(client, source)
        updated = client.update_stream_source(source_id, body)
    if name is not None:
        ctx.source_names.forget()
    ctx.output.emit(updated, columns=source_detail_columns())


@app.command("delete")
def delete(
    source: SourceArg,
    yes: YesOption = False,
) -> None:
    """Delete a stream source and all its events; its write key stops working at once.

    Asks for confirmation on a terminal; needs --yes otherwise.
    """
    from boltic_cli.lookup import resolve_source
    from boltic_cli.output import sanitize

    ctx = current()
    ctx.require_yes_off_terminal(yes, "deleting a source")
    with ctx.make_client() as client:
        found = resolve_source(client, source)
        label = f"{sanitize(found.name or '')} ({found.id})"
        ctx.confirm_delete(f"Source {label} and all its events will be deleted.", yes=yes)
        assert found.id is not None
        client.delete_stream_source(found.id)
    ctx.source_names.forget()
    ctx.output.success(f"Deleted source {label}")
