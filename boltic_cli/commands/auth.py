"""boltic auth: log in, log out, show how you are authenticated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from boltic_cli.commands import new_app
from boltic_cli.completers import complete_profile
from boltic_cli.context import Context, current
from boltic_cli.errors import CredentialsError, NetworkError, UsageError

if TYPE_CHECKING:
    from boltic_cli.settings import ConfigFile, Settings

app = new_app(help="Log in, log out, show how you are authenticated.")

ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Profile to act on (default: the current one).",
        metavar="NAME",
        autocompletion=complete_profile,
    ),
]


@app.command()
def login(
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Profile to log in to (default: the current one, or 'cloud').",
            metavar="NAME",
            autocompletion=complete_profile,
        ),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            help="API base URL including /v1 (default: https://api.boltic.io/v1).",
            metavar="URL",
        ),
    ] = None,
    with_token: Annotated[
        bool, typer.Option("--with-token", help="Read the token from stdin.")
    ] = False,
    insecure_storage: Annotated[
        bool,
        typer.Option(
            "--insecure-storage",
            help="Keep the token in a 0600 file in the config dir instead of the keyring.",
        ),
    ] = False,
) -> None:
    """Store an API token for a profile and make that profile current.

    On a terminal the token is asked for without echo; in scripts pipe it in with
    --with-token. The token is checked with one cheap call first: a token the API
    refuses (401) is not stored (exit 4); when the API cannot be reached it is stored
    with a warning.
    """
    from boltic_cli.credentials import TokenStore
    from boltic_cli.settings import ConfigFile, check_api_url, check_profile_name, config_file_path

    ctx = current()
    config = ConfigFile.load(config_file_path(ctx.environ))
    name = check_profile_name(_login_profile(ctx, config, profile))
    url = check_api_url(api_url or _api_url_flag(ctx) or config.profile_values(name)["api_url"])
    store = TokenStore(ctx.environ, config.path.parent)
    # Fail on a missing keyring before asking for a token that could not be kept.
    store.check_writable(name, insecure_storage)
    token = _read_token(ctx, with_token)
    check = check_token(ctx, url, token)
    if check.state == "rejected":
        raise CredentialsError(
            f"the API at {url} refused this token: nothing stored", hint=check.detail
        )
    store.set(name, token, insecure=insecure_storage)
    config.set_value(name, "api_url", url)
    config.use(name)
    config.save()
    ctx.output.success(
        f"Logged in: profile {name} ({url}), token in {_describe(store.where(name))}"
    )
    if check.state == "unreachable":
        ctx.output.warn(f"could not check the token: {check.detail}")
    if ctx.environ.get("BOLTIC_TOKEN", "").strip():
        ctx.output.warn("BOLTIC_TOKEN is set and is used instead of the stored token")


@app.command()
def status(profile: ProfileOption = None) -> None:
    """Show the profile in use, its API URL, where its token is kept (never the token)
    and whether the API accepts it (one cheap call; a write key is not checked, since
    it may only send events).

    Exits 4 when the profile has no token or the API refuses it, 5 when the API
    cannot be reached.
    """
    ctx = current()
    settings = _settings_for(ctx, profile)
    source = settings.token_source()
    token = settings.token() if source != "none" else None
    check = check_token(ctx, settings.api_url, token) if token else TokenCheck("none", "")
    ctx.output.emit(
        {
            "profile": settings.profile,
            "api_url": settings.api_url,
            "credentials": source,
            "token_check": check.state,
            "logged_in": source != "none" and check.state != "rejected",
        }
    )
    if source == "none":
        raise _no_token_error(settings)
    if check.state == "rejected":
        raise CredentialsError(
            f"the API refused the token of profile {settings.profile}", hint=check.detail
        )
    if check.state == "unreachable":
        raise NetworkError(f"could not check the token: {check.detail}")


@dataclass(frozen=True)
class TokenCheck:
    """What the API said of a token: ``state`` is accepted | rejected | write key |
    unreachable | none; ``detail`` a one-line reason or hint (never the token)."""

    state: str
    detail: str


def check_token(ctx: Context, api_url: str, token: str | None) -> TokenCheck:
    """One cheap call (``listStreamSources``, a single try) to see whether the API
    accepts ``token``. A write key (``wk_``) is never sent anywhere but
    ``POST /streams/events`` (design.md, "Extensions beyond the spec"), so it is
    reported as such without a call."""
    from boltic_cli.errors import AuthenticationFailed, BolticError, PermissionDenied

    if token and token.startswith("wk_"):
        return TokenCheck("write key", "a source's write key: it can only send events")
    try:
        with ctx.make_client(token=token, base_url=api_url, retries=1) as client:
            client.list_stream_sources()
    except (AuthenticationFailed, PermissionDenied) as e:
        return TokenCheck("rejected", e.message)
    except NetworkError as e:
        return TokenCheck("unreachable", e.message)
    except BolticError as e:
        return TokenCheck("unreachable", e.message)
    return TokenCheck("accepted", "")


@app.command()
def logout(profile: ProfileOption = None) -> None:
    """Forget the stored token of a profile (the current one by default).

    The profile and its API URL stay. The local server's own token file is left alone.
    """
    ctx = current()
    settings = _settings_for(ctx, profile)
    if settings.token_store.delete(settings.profile):
        ctx.output.success(f"Logged out of profile {settings.profile}")
    else:
        ctx.output.info(f"No token stored for profile {settings.profile}")
    if ctx.environ.get("BOLTIC_TOKEN", "").strip():
        ctx.output.warn("BOLTIC_TOKEN is still set and still used")


@app.command()
def token(profile: ProfileOption = None) -> None:
    """Print the token of the profile in use, for scripts.

    This is the one command that shows a token.
    """
    ctx = current()
    ctx.only_formats("plain", "table", command="boltic auth token")
    settings = _settings_for(ctx, profile)
    value = settings.token()
    if not value:
        raise _no_token_error(settings)
    ctx.output.raw(value + "\n")


def _login_profile(ctx: Context, config: ConfigFile, explicit: str | None) -> str:
    """--profile, else the global choice, else the current profile unless it is `local`."""
    from boltic_cli.settings import CLOUD_PROFILE, LOCAL_PROFILE

    chosen = explicit or ctx.options.profile or ctx.environ.get("BOLTIC_PROFILE")
    if chosen:
        return chosen
    if config.current_profile and config.current_profile != LOCAL_PROFILE:
        return config.current_profile
    return CLOUD_PROFILE


def _api_url_flag(ctx: Context) -> str | None:
    """The global --api-url when typed; BOLTIC_API_URL is an override, never saved."""
    from boltic_cli._compat import click

    root = click.globals.get_current_context().find_root()
    if root.get_parameter_source("api_url") != click.core.ParameterSource.COMMANDLINE:
        return None
    return ctx.options.api_url


def _read_token(ctx: Context, with_token: bool) -> str:
    if with_token:
        assert ctx.env.stdin is not None
        text = ctx.env.stdin.read()
    elif ctx.env.stdin_isatty:
        text = typer.prompt("Token", hide_input=True, err=True)
    else:
        raise UsageError(
            "no terminal to ask for the token: pipe it in with --with-token",
            hint='e.g. echo "$TOKEN" | boltic auth login --with-token',
        )
    token = text.strip()
    if not token:
        raise UsageError("the token is empty")
    # It goes into an Authorization header: visible ASCII only.
    if not all("!" <= char <= "~" for char in token):
        raise UsageError("the token must be one line of printable ASCII without spaces")
    return token


def _settings_for(ctx: Context, profile: str | None) -> Settings:
    if profile is None:
        return ctx.settings
    from boltic_cli.settings import Settings

    return Settings.load(ctx.environ, profile=profile, api_url=ctx.options.api_url)


def _describe(where: str | None) -> str:
    if where == "keyring":
        return "the system keyring"
    return where or "nowhere"


def _no_token_error(settings: Settings) -> CredentialsError:
    from boltic_cli.settings import LOCAL_PROFILE

    if settings.profile == LOCAL_PROFILE:
        hint = (
            f"start 'boltic server', which writes {settings.local_token_file}, or set BOLTIC_TOKEN"
        )
    else:
        hint = f"run 'boltic auth login --profile {settings.profile}' or set BOLTIC_TOKEN"
    return CredentialsError(f"no token for profile {settings.profile}", hint=hint)
