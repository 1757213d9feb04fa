"""Command groups, one module each. Each module exposes ``app``, a Typer app."""

from __future__ import annotations

from typing import Any

import typer


def new_app(**kwargs: Any) -> typer.Typer:
    """A Typer app with the settings every group shares (plain, fast help)."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(
        rich_markup_mode=None,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        **kwargs,
    )
