"""boltic config: read and write settings and profiles."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from boltic_cli.commands import new_app
from boltic_cli.completers import complete_profile
from boltic_cli.context import OUTPUT_FORMATS, Context, current
from boltic_cli.errors import BolticError

app = new_app(help="Read and write settings and profiles.")


@app.command("list")
def list_() -> None:
    """Show the settings of the profile in use, with env and flag overrides applied.

    Values under secret-looking keys are masked in table and plain output.
    """
    ctx = current()
    ctx.output.emit(_masked(ctx, ctx.settings.values))


@app.command()
def get(
    key: Annotated[str, typer.Argument(help="Setting name, e.g. api_url or output.")],
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Show a secret-looking value unmasked.")
    ] = False,
) -> None:
    """Print one setting of the profile in use (exits 1 when it is not set)."""
    ctx = current()
    settings = ctx.settings
    if key not in settings.values:
        raise BolticError(f"{key} is not set in profile {settings.profile}")
    value = settings.values[key]
    if not reveal:
        value = _masked(ctx, {key: value})[key]
    if ctx.output_format not in ("table", "plain"):
        ctx.output.emit(value)  # json, ndjson, yaml, csv: the value as data
        return
    ctx.output.raw((value if isinstance(value, str) else json.dumps(value)) + "\n")


@app.command("set")
def set_(
    key: Annotated[str, typer.Argument(help="Setting name, e.g. api_url or output.")],
    value: Annotated[str, typer.Argument(help="New value.")],
) -> None:
    """Set KEY to VALUE in the profile in use (saved in config.toml).

    Checked before it is saved: api_url is an http(s) URL that includes /v1
    (http://127.0.0.1:8765/v1), output one of the output formats,
    request_timeout a number of seconds from 0.1 to 600. Other keys are stored
    as given.
    """
    from boltic_cli.settings import check_setting

    ctx = current()
    settings = ctx.settings
    value = check_setting(key, value, output_formats=OUTPUT_FORMATS)
    settings.config.set_value(settings.profile, key, value)
    settings.config.save()
    ctx.output.success(f"Set {key} in profile {settings.profile}")
    _warn_if_overridden(ctx, key)


@app.command()
def unset(key: Annotated[str, typer.Argument(help="Setting name to remove.")]) -> None:
    """Remove KEY from the profile in use, back to its default."""
    ctx = current()
    settings = ctx.settings
    if not settings.config.unset_value(settings.profile, key):
        ctx.output.info(f"{key} was not set in profile {settings.profile}")
        return
    settings.config.save()
    ctx.output.success(f"Unset {key} in profile {settings.profile}")


@app.command()
def use(
    profile: Annotated[
        str,
        typer.Argument(
            metavar="PROFILE", help="Profile to make current.", autocompletion=complete_profile
        ),
    ],
) -> None:
    """Make PROFILE the current profile."""
    from boltic_cli.settings import Settings

    ctx = current()
    chosen = Settings.load(ctx.environ, profile=profile)
    chosen.config.use(chosen.profile)
    chosen.config.save()
    ctx.output.success(f"Now using profile {chosen.profile} ({chosen.api_url})")
    if ctx.environ.get("BOLTIC_PROFILE"):
        ctx.output.warn("BOLTIC_PROFILE is set and overrides the current profile")


@app.command()
def profiles() -> None:
    """List the profiles: the built-in `local` and those in config.toml."""
    from boltic_cli.output import Column

    ctx = current()
    settings = ctx.settings
    rows = [
        {
            "name": name,
            "api_url": settings.config.profile_values(name)["api_url"],
            "current": name == settings.profile,
        }
        for name in settings.profile_names()
    ]
    ctx.output.emit(
        rows,
        columns=[
            Column("CURRENT", lambda row: "*" if row["current"] else ""),
            Column("PROFILE", "name"),
            Column("API URL", "api_url"),
        ],
    )


def _masked(ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
    if ctx.output_format not in ("table", "plain"):
        return values
    from boltic_cli.output import mask_secrets

    return mask_secrets(values)


def _warn_if_overridden(ctx: Context, key: str) -> None:
    from boltic_cli.settings import overriding_variable

    variable = overriding_variable(key, ctx.environ)
    if variable:
        ctx.output.warn(f"{variable} is set and overrides {key}")
