"""The root command: global options, lazily loaded groups, and ``main()``.

``main()`` (through ``BolticGroup.main``) is the one place an exception becomes an
exit code and one line on stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from boltic_cli import __version__
from boltic_cli._compat import click, has_runtime_converter, set_runtime_converter
from boltic_cli.context import OUTPUT_FORMATS, Context, Environment, GlobalOptions, Session
from boltic_cli.errors import BolticError, ExitStatus

# name -> (module under boltic_cli.commands, short help). Modules load only when used,
# so `boltic --help` and completion import none of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "sources": ("sources", "Create, list, inspect and delete stream sources."),
    "events": ("events", "Send, query, count and generate events."),
    "destinations": ("destinations", "List and create stream destinations."),
    "debug": ("debug", "Watch live traffic: status, tail, top, wait."),
    "auth": ("auth", "Log in, log out, show how you are authenticated."),
    "config": ("config", "Read and write settings and profiles."),
    "api": ("api", "Make an authenticated API request, like `gh api`."),
    "server": ("server", "Run the local Streams server."),
    "dev": ("dev", "Run the local server, a dev source and a live tail in one go."),
    "completion": ("completion", "Print a shell completion script."),
}

# Global options that work after the command too (design.md, CLI conventions).
HOISTED_FLAGS = {"--json", "--debug", "-v", "--verbose", "--no-color", "--no-pager"}
HOISTED_OPTIONS = {"-o", "--output", "--request-timeout"}


def hoist_output_options(args: list[str]) -> list[str]:
    """Move global flags and ``-o/--output FMT`` to the front so they work after the command."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in HOISTED_FLAGS:
            front.append(arg)
        elif arg in HOISTED_OPTIONS and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        elif arg.startswith(("--output=", "--request-timeout=")) or (
            arg.startswith("-o") and len(arg) > 2
        ):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class PipeClosed(BaseException):
    """stdout was closed by the reader (``| head``)."""


class Interrupted(BaseException):
    exit_status = ExitStatus.INTERRUPTED


class Terminated(BaseException):
    exit_status = ExitStatus.TERMINATED


TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "off", ""})


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError(value)


class PlainValue:
    """Converts a parameter's text without pydantic.

    Typer builds a pydantic TypeAdapter for every parameter it processes, even an unset
    one: importing and building those costs more than the rest of `--version`, a TAB
    press, or the argument parsing of a request command. ``convert`` None passes the
    text through (completion only needs the raw text).
    """

    def __init__(self, convert: Any = None) -> None:
        self.convert = convert

    def coerce(self, value: Any, param: Any, ctx: click.Context) -> Any:
        if value is None:
            return () if param.multiple or param.nargs == -1 else None
        if self.convert is None:
            return value
        try:
            return self.convert(value)
        except (TypeError, ValueError):
            kind = {to_bool: "boolean"}.get(self.convert, self.convert.__name__)
            raise click.exceptions.BadParameter(
                f"{value!r} is not a valid {kind}.", ctx=ctx, param=param
            ) from None


# How a parameter of each type is converted without pydantic; only types whose
# conversion cannot differ from Typer's (no ranges, no custom parser).
ROOT_CONVERTERS: dict[Any, Any] = {str: str, float: float, bool: to_bool}
COMMAND_CONVERTERS: dict[Any, Any] = {str: str, bool: to_bool}


def _is_plain(param: Any) -> bool:
    info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
    return info is not None and info.parser is None and info.min is None and info.max is None


def _use_plain_values(params: list[Any], converters: dict[Any, Any], *, others: bool) -> None:
    """Give ``params`` pydantic-free converters; ``others``: pass every other type through."""
    for param in params:
        if has_runtime_converter(param):
            continue  # not a Typer parameter, or already converted once
        annotation = param.type_descriptor.annotation
        if annotation in converters and _is_plain(param):
            set_runtime_converter(param, PlainValue(converters[annotation]))
        elif others:
            set_runtime_converter(param, PlainValue())


def _use_plain_values_below(command: click.Command, ctx: click.Context, *, others: bool) -> None:
    _use_plain_values(command.get_params(ctx), COMMAND_CONVERTERS, others=others)
    for sub in getattr(command, "commands", {}).values():
        _use_plain_values_below(sub, ctx, others=others)


class BolticGroup(TyperGroup):
    completing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"boltic_cli.commands.{COMMANDS[cmd_name][0]}")
        command = typer.main.get_command(module.app)
        command.name = cmd_name
        if not command.help:
            command.help = COMMANDS[cmd_name][1]
        # Completion parses every command on the line and uses no value: keep it all
        # free of pydantic.
        _use_plain_values_below(command, ctx, others=self.completing)
        return command

    def _prepare_shell_completion(self, prog_name: str, complete_var: str | None) -> None:
        """When the shell asks for completions (Click's ``_PROG_COMPLETE`` variable), use ours."""
        if complete_var is None:
            complete_var = f"_{prog_name}_COMPLETE".replace("-", "_").upper()
        if not os.environ.get(complete_var):
            return
        from boltic_cli.completers import register_shells

        self.completing = True
        register_shells()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        if incomplete and not incomplete[0].isalnum():
            return super().shell_complete(ctx, incomplete)
        # Command names from the static table: completing them imports no group.
        CompletionItem = click.shell_completion.CompletionItem

        return [
            CompletionItem(name, help=short)
            for name, (_, short) in COMMANDS.items()
            if name.startswith(incomplete)
        ]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Here, not in __init__: Typer appends --install-completion after construction.
        _use_plain_values(self.get_params(ctx), ROOT_CONVERTERS, others=False)
        return super().parse_args(ctx, hoist_output_options(list(args)))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:
            raise PipeClosed() from e
        except KeyboardInterrupt as e:
            raise Interrupted() from e

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        env = extra.pop("obj", None)
        session = Session(env if isinstance(env, Environment) else Environment())
        extra.pop("standalone_mode", None)
        argv = list(sys.argv[1:] if args is None else args)
        self._prepare_shell_completion(prog_name or "boltic", extra.get("complete_var"))

        def invoke() -> Any:
            if not all(arg.isascii() for arg in argv):
                from boltic_cli.params import check_arguments

                check_arguments(argv)  # bytes that are not UTF-8: exit 2 naming the option
            return super(BolticGroup, self).main(
                argv, prog_name or "boltic", standalone_mode=False, obj=session, **extra
            )

        code = run(invoke, session, argv)
        sys.exit(int(code))


def _raised_debug(argv: list[str]) -> bool:
    return "--debug" in argv


def _wants_json(session: Session, argv: list[str]) -> bool:
    if session.context is not None:
        try:
            return session.context.is_json
        except BolticError:
            return False
    hoisted = hoist_output_options(argv)
    return "--json" in hoisted or any(
        a in ("json", "ndjson", "-ojson", "-ondjson", "--output=json", "--output=ndjson")
        for a in hoisted[:4]
    )


def _silence_stdout() -> None:
    """After the reader went away: point fd 1 at /dev/null so the final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _report(error: BolticError, session: Session, argv: list[str]) -> None:
    stderr = session.env.stderr or sys.stderr
    line = f"{error.prefix}{error.message}"
    if error.details and error.details not in error.message:
        line += f": {error.details}"
    if error.hint:
        line += f" ({error.hint})"
    from boltic_cli.output import sanitize

    # Messages quote input and server details: one line, nothing a terminal acts on.
    stderr.write(sanitize(line) + "\n")
    if _wants_json(session, argv):
        stderr.write(json.dumps(error.to_dict()) + "\n")
    stderr.flush()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def run(invoke: Any, session: Session, argv: list[str]) -> int:
    """Run ``invoke`` and turn whatever it raises into an exit code."""
    from boltic_cli.errors import UsageError

    debug = _raised_debug(argv)
    previous = None
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = invoke()
        return int(result) if isinstance(result, int) else 0
    except PipeClosed:
        _silence_stdout()
        return ExitStatus.OK
    except BrokenPipeError:
        _silence_stdout()
        return ExitStatus.OK
    except BolticError as e:
        if debug:
            traceback.print_exc()
        _report(e, session, argv)
        return e.exit_status
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        # Ctrl-C (or end of input) at a prompt: the cursor is still on the prompt's line.
        (session.env.stderr or sys.stderr).write("\nInterrupted\n")
        return ExitStatus.INTERRUPTED
    except click.exceptions.NoArgsIsHelpError as e:
        (session.env.stdout or sys.stdout).write(e.ctx.get_help() + "\n")
        return ExitStatus.OK
    except click.ClickException as e:
        hint = ""
        if isinstance(e, click.exceptions.UsageError) and e.ctx is not None:
            hint = f" (see '{e.ctx.command_path} --help')"
        _report(UsageError(_usage_message(e) + hint), session, argv)
        return ExitStatus.USAGE
    except (Interrupted, KeyboardInterrupt):
        (session.env.stderr or sys.stderr).write("Interrupted\n")
        return ExitStatus.INTERRUPTED
    except Terminated:
        (session.env.stderr or sys.stderr).write("Terminated\n")
        return ExitStatus.TERMINATED
    except RecursionError:
        # Only an answer from some other server can nest this deep: ours refuses
        # bodies deeper than 200 levels, and so does the CLI's input.
        if debug:
            traceback.print_exc()
        from boltic_cli.errors import UnexpectedResponse

        error = UnexpectedResponse("the data is nested too deeply to handle")
        _report(error, session, argv)
        return error.exit_status
    except Exception as e:
        if debug:
            traceback.print_exc()
        stderr = session.env.stderr or sys.stderr
        stderr.write(f"Error: unexpected {type(e).__name__}: {e} (run with --debug for details)\n")
        return ExitStatus.ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _complete_profile(ctx: click.Context, incomplete: str) -> list[str]:
    from boltic_cli.completers import complete_profile

    return complete_profile(ctx, incomplete)


def _complete_output_format(ctx: click.Context, incomplete: str) -> list[str]:
    from boltic_cli.completers import complete_output_format

    return complete_output_format(ctx, incomplete)


def _version_callback(value: bool) -> None:
    if value:
        click.echo(f"boltic {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=BolticGroup,
    name="boltic",
    help="boltic: manage Boltic Streams sources and destinations, send and query events, "
    "and watch live traffic.",
    rich_markup_mode=None,
    add_completion=True,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Profile to use [env: BOLTIC_PROFILE].",
            autocompletion=_complete_profile,
        ),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="API base URL, including /v1 [env: BOLTIC_API_URL]."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            autocompletion=_complete_output_format,
            help=f"Output format: {'|'.join(OUTPUT_FORMATS)}. Default: table on a terminal, "
            "plain when piped, or $BOLTIC_OUTPUT.",
            metavar="FORMAT",
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Same as -o json.")] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="One stderr line per HTTP call.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks and bodies.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="Never colour output.")] = False,
    no_pager: Annotated[
        bool,
        typer.Option(
            "--no-pager", help="Never page long output on a terminal [env: BOLTIC_PAGER]."
        ),
    ] = False,
    request_timeout: Annotated[
        float | None,
        typer.Option("--request-timeout", help="HTTP timeout in seconds.", metavar="SECONDS"),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    session = ctx.obj
    if not isinstance(session, Session):
        session = ctx.obj = Session(Environment())
    if output is not None and output.lower() not in OUTPUT_FORMATS:
        raise typer.BadParameter(
            f"{output!r} is not one of {', '.join(OUTPUT_FORMATS)}", param_hint="'-o'"
        )
    options = GlobalOptions(
        profile=profile,
        api_url=api_url,
        output="json" if json_ else output,
        verbose=verbose,
        debug=debug,
        no_color=no_color,
        request_timeout=request_timeout,
        no_pager=no_pager,
    )
    session.context = Context(env=session.env.resolved(), options=options)


def get_cli() -> click.Command:
    return typer.main.get_command(app)


def _usage_message(error: Any) -> str:
    """Click's message for a usage error, a bad value in words that say what is allowed
    (``models.problem_phrase``) rather than pydantic's, which Typer passes on."""
    from boltic_cli._compat import click, pydantic_errors_behind

    errors = pydantic_errors_behind(error)
    if errors and isinstance(error, click.exceptions.BadParameter):
        from boltic_cli.models import problem_phrase

        error.message = "; ".join(problem_phrase(err) for err in errors)
    return error.format_message().replace("Value error, ", "")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    get_cli().main(argv, prog_name="boltic")
