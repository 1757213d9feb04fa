"""boltic destinations: list and create stream destinations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from boltic_cli.commands import new_app
from boltic_cli.completers import complete_destination_type
from boltic_cli.context import current

if TYPE_CHECKING:
    from boltic_cli.output import Column

app = new_app(help="List and create stream destinations.")


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


@app.command("list")
def list_(
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only the ids.")] = False,
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
        str,
        typer.Option(
            "--type",
            help="Destination type, e.g. webhook (needs config url).",
            autocompletion=complete_destination_type,
        ),
    ],
    config_field: Annotated[
        list[str] | None,
        typer.Option(
            "-c",
            "--config-field",
            metavar="KEY=VALUE|KEY:=JSON",
            help="One config value: key=text or key:=<json>. Repeatable; wins over --config.",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", metavar="JSON|@FILE|-", help="The config object: JSON, @file or -."
        ),
    ] = None,
) -> None:
    """Create a stream destination.

    Example: boltic destinations create --name hooks --type webhook -c url=https://example.com/in
    """
    from boltic_cli.params import load_json_object, parse_fields

    ctx = current()
    merged: dict[str, Any] = {}
    if config is not None:
        merged.update(load_json_object(config, ctx.env.stdin, option="--config"))
    merged.update(parse_fields(config_field or [], option="-c"))
    with ctx.make_client() as client:
        destination = client.create_stream_destination(
            {"name": name, "type": type_, "config": merged}
        )
    # Output masks secret-looking config values in table and plain formats.
    ctx.output.emit(destination, columns=destination_columns())
