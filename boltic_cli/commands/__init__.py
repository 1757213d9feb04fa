"""Command groups, one module each. Each module exposes ``app``, a Typer app.

What every group shares lives here (groups never import each other): ``new_app`` and
the declarations of arguments and options that mean the same in every group
(``SourceArg``, ``QuietOption``, ``YesOption``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from boltic_cli.completers import complete_source

# SOURCE where a command takes one source (design.md: its id or its exact name).
SourceArg = Annotated[
    str,
    typer.Argument(
        metavar="SOURCE", help="Source id or exact name.", autocompletion=complete_source
    ),
]
# -q on every list command: only the ids (Output.emit_ids).
QuietOption = Annotated[bool, typer.Option("-q", "--quiet", help="Print only the ids.")]
# --yes on every destructive command (design.md: they ask on a terminal; without one
# they need --yes); Context.require_yes_off_terminal and confirm_delete read it.
YesOption = Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")]


def new_app(**kwargs: Any) -> typer.Typer:
    """A Typer app with the settings every group shares (plain, fast help)."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(
        rich_markup_mode=None,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        **kwargs,
    )
