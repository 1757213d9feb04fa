"""boltic events: send, query and generate events (one module per job)."""

from __future__ import annotations

from boltic_cli._click import click
from boltic_cli.commands import new_app

app = new_app(help="Send, query and generate events.")


def complete_source(ctx: click.Context, incomplete: str) -> list[tuple[str, str]]:
    """Source names for shell completion (the completers load only when asked)."""
    from boltic_cli.completers import complete_source

    return complete_source(ctx, incomplete)


def complete_event_type(ctx: click.Context, incomplete: str) -> list[str]:
    """Event types for shell completion."""
    from boltic_cli.completers import complete_event_type

    return complete_event_type(ctx, incomplete)


# Registered in this order: it is the order of the group's help.
from boltic_cli.commands.events import send  # noqa: E402, I001
from boltic_cli.commands.events import query  # noqa: E402
from boltic_cli.commands.events import generate  # noqa: E402

__all__ = ["app", "generate", "query", "send"]
