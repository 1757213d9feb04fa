"""What a command gets: the environment, global options, settings, output and a client.

Tests replace the ``Environment`` (streams, env vars, tty facts, an HTTP transport
bound to the in-process server, a clock) and pass it as ``obj`` to the root command.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

# The one list of formats is output's; re-exported for app, config and completion.
from boltic_cli.output import JSON_FORMATS, OUTPUT_FORMATS

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.lookup import SourceNameCache
    from boltic_cli.output import Output
    from boltic_cli.settings import Settings

__all__ = ["JSON_FORMATS", "OUTPUT_FORMATS", "Context", "Environment", "GlobalOptions", "current"]


DEFAULT_PAGER = "less -FRX"


def utcnow() -> datetime:
    return datetime.now(UTC)


# The error handler of every output stream: a character the stream's encoding cannot
# hold (a cp1252 console, PYTHONIOENCODING=ascii, LANG=C) is written as a JSON escape,
# \uXXXX (a surrogate pair beyond the BMP). Inside a JSON string that is the same
# character, so JSON stays valid and equal; in text formats it is a visible escape.
# Never an "unexpected UnicodeEncodeError" (design.md, "Values the CLI and server
# must survive").
ESCAPE_ERRORS = "boltic-escape"


def escape_unencodable(error: UnicodeError) -> tuple[str, int]:
    """``codecs`` error handler: the unencodable characters as ``\\uXXXX`` escapes."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    escapes = []
    for char in error.object[error.start : error.end]:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            escapes.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            escapes.append(f"\\u{code:04x}")
    return "".join(escapes), error.end


codecs.register_error(ESCAPE_ERRORS, escape_unencodable)


def tolerant_output(stream: Any) -> Any:
    """``stream`` set to escape what its encoding cannot hold (``escape_unencodable``),
    when it is a text stream that can be reconfigured; returned as is otherwise."""
    if getattr(stream, "errors", None) == ESCAPE_ERRORS:
        return stream
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            reconfigure(errors=ESCAPE_ERRORS)
    return stream


def utf8_input(stream: Any) -> Any:
    """``stdin`` decoded as UTF-8 whatever the locale says: JSON piped in is UTF-8
    (RFC 8259). A stream already read from, or not reconfigurable, is left alone."""
    encoding = getattr(stream, "encoding", None)
    reconfigure = getattr(stream, "reconfigure", None)
    if not encoding or reconfigure is None:
        return stream
    try:
        if codecs.lookup(encoding).name != "utf-8":
            reconfigure(encoding="utf-8")
    except (LookupError, ValueError, OSError, io.UnsupportedOperation):
        pass
    return stream


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@dataclass
class Environment:
    """What the process sees. ``None`` fields are read from the process when resolved."""

    environ: Mapping[str, str] | None = None
    stdin: TextIO | None = None
    stdout: TextIO | None = None
    stderr: TextIO | None = None
    stdin_isatty: bool | None = None
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None
    # An httpx transport the client should use instead of the network (tests).
    transport: Any = None
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep

    def resolved(self) -> Environment:
        """A copy with every unset field taken from the running process."""
        # The one place streams are set up: output never fails on a character its
        # encoding lacks, and stdin is read as UTF-8.
        stdin = utf8_input(self.stdin if self.stdin is not None else sys.stdin)
        stdout = tolerant_output(self.stdout if self.stdout is not None else sys.stdout)
        stderr = tolerant_output(self.stderr if self.stderr is not None else sys.stderr)
        return replace(
            self,
            environ=self.environ if self.environ is not None else os.environ,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            stdin_isatty=_isatty(stdin) if self.stdin_isatty is None else self.stdin_isatty,
            stdout_isatty=_isatty(stdout) if self.stdout_isatty is None else self.stdout_isatty,
            stderr_isatty=_isatty(stderr) if self.stderr_isatty is None else self.stderr_isatty,
        )


@dataclass
class GlobalOptions:
    profile: str | None = None
    api_url: str | None = None
    output: str | None = None
    verbose: bool = False
    debug: bool = False
    no_color: bool = False
    request_timeout: float | None = None
    no_pager: bool = False


@dataclass
class Context:
    """One command run: built by the root callback, read by every command."""

    env: Environment
    options: GlobalOptions = field(default_factory=GlobalOptions)

    @property
    def environ(self) -> Mapping[str, str]:
        assert self.env.environ is not None
        return self.env.environ

    @cached_property
    def settings(self) -> Settings:
        from boltic_cli.settings import Settings

        return Settings.load(
            self.environ, profile=self.options.profile, api_url=self.options.api_url
        )

    @cached_property
    def output_format(self) -> str:
        fmt = (
            self.options.output or self.environ.get("BOLTIC_OUTPUT") or self.settings.get("output")
        )
        if fmt:
            fmt = fmt.lower()
            if fmt not in OUTPUT_FORMATS:
                from boltic_cli.errors import UsageError

                raise UsageError(
                    f"unknown output format {fmt!r} (choose from {', '.join(OUTPUT_FORMATS)})"
                )
            return fmt
        return "table" if self.env.stdout_isatty else "plain"

    @property
    def is_json(self) -> bool:
        return self.output_format in JSON_FORMATS

    def only_formats(self, *formats: str, command: str) -> str:
        """The output format for a command that can print only ``formats``.

        A format given with ``-o``/``--json`` that is not among them is refused
        (UsageError, exit 2, one line): it is never silently ignored. A default that
        does not apply (``BOLTIC_OUTPUT``, the ``output`` setting) gives way to the
        first of ``formats``, which the Output then uses.
        """
        fmt = self.output_format
        if fmt in formats:
            return fmt
        if self.options.output is not None:
            from boltic_cli.errors import UsageError

            raise UsageError(f"{command} cannot print -o {fmt} (it prints {', '.join(formats)})")
        self.__dict__["output_format"] = formats[0]
        if "output" in self.__dict__:
            self.output.format = formats[0]
        return formats[0]

    @cached_property
    def color(self) -> bool:
        """Colour on stdout: off when piped, with NO_COLOR or --no-color; FORCE_COLOR forces."""
        return self._color_for(self.env.stdout_isatty)

    @cached_property
    def stderr_color(self) -> bool:
        """Colour on stderr, decided like stdout's but on stderr's own terminal."""
        return self._color_for(self.env.stderr_isatty)

    def _color_for(self, isatty: bool | None) -> bool:
        # no-color.org: NO_COLOR counts when set to a non-empty value; NO_COLOR= is "unset".
        if self.options.no_color or self.environ.get("NO_COLOR"):
            return False
        if self.environ.get("FORCE_COLOR"):
            return True
        return bool(isatty)

    @property
    def width(self) -> int | None:
        columns = self.environ.get("COLUMNS", "")
        return int(columns) if columns.isdigit() else None

    @cached_property
    def output(self) -> Output:
        from boltic_cli.output import Output

        assert self.env.stdout is not None and self.env.stderr is not None
        return Output(
            format=self.output_format,
            stdout=self.env.stdout,
            stderr=self.env.stderr,
            color=self.color,
            stdout_isatty=bool(self.env.stdout_isatty),
            stderr_isatty=bool(self.env.stderr_isatty),
            width=self.width,
            clock=self.env.clock,
            stderr_color=self.stderr_color,
        )

    def page_output(self) -> None:
        """Send this command's stdout through a pager, as git and gh do: only when stdout
        is a terminal and not with ``--no-pager``. The command is ``$BOLTIC_PAGER``, else
        ``$PAGER``, else ``less -FRX`` (``-F``: short output just prints); an empty
        ``BOLTIC_PAGER`` (or ``cat``) turns paging off. The pager is waited for when the
        command ends (quitting it early ends the command quietly, like ``| head``).
        Call it before the command prints anything."""
        if not self.env.stdout_isatty or self.options.no_pager:
            return
        command = self.environ.get("BOLTIC_PAGER")
        if command is None:
            command = self.environ.get("PAGER") or DEFAULT_PAGER
        if command.strip() in ("", "cat"):
            return
        if self.output.start_pager(command, self.environ):
            from boltic_cli._compat import click

            click.globals.get_current_context().call_on_close(self.output.close_pager)

    @cached_property
    def token(self) -> str | None:
        """The profile's token, read once per command run (a keyring read can be slow)."""
        return self.settings.token()

    @cached_property
    def source_names(self) -> SourceNameCache:
        """The brief cache of source names -> ids for this profile's API URL and token
        (``lookup.SourceNameCache``, in the cache dir)."""
        from boltic_cli.lookup import NAME_CACHE_FILE, SourceNameCache
        from boltic_cli.paths import cache_dir

        return SourceNameCache(
            cache_dir(self.environ) / NAME_CACHE_FILE,
            self.settings.api_url,
            self.token,
            clock=lambda: self.env.clock().timestamp(),
        )

    def log(self, message: str) -> None:
        """One informational line on stderr (never data)."""
        assert self.env.stderr is not None
        self.env.stderr.write(message + "\n")
        self.env.stderr.flush()

    def require_yes_off_terminal(self, yes: bool, action: str) -> None:
        """design.md "Destructive commands ask on a terminal; without one they need
        --yes": without ``yes`` and with no terminal on stdin to ask on, a one-line
        ``UsageError`` (exit 2) saying ``action`` (``"deleting a source"``) needs --yes.
        Call it before any request; ``confirm_delete`` asks later."""
        if not yes and not self.env.stdin_isatty:
            from boltic_cli.errors import UsageError

            raise UsageError(f"{action} needs --yes when not run from a terminal")

    def confirm_delete(self, consequence: str, *, yes: bool) -> None:
        """Ask before a delete (not with ``yes``): ``consequence`` (``"Source web
        (src_...) and all its events will be deleted."``, names sanitized by the caller)
        on a line of its own, then the short prompt ``Delete it? [y/N]:`` on stderr, so
        a long name never leaves the prompt's ":" alone on the next line of an
        80-column terminal. Raises ``Declined`` ("Nothing deleted.", exit 1, the user's
        choice, not an error) on no; Ctrl-C/Ctrl-D end the command as interrupted."""
        if yes:
            return
        import typer

        from boltic_cli.errors import Declined

        self.output.info(consequence)
        if not typer.confirm("Delete it?", default=False, err=True):
            raise Declined("Nothing deleted.")

    def _log_http(self, method: str, url: str, status: int | None, ms: float) -> None:
        self.log(f"{method} {url} {status if status is not None else 'ERR'} {ms:.0f}ms")

    def make_client(
        self,
        *,
        token: str | None = None,
        timeout: float | None = None,
        retries: int = 3,
        base_url: str | None = None,
    ) -> BolticClient:
        """A client for the current profile (or ``base_url``); use it as a context manager."""
        from boltic_cli.client import BolticClient

        return BolticClient(
            base_url or self.settings.api_url,
            token if token is not None else self.token,
            retries=retries,
            timeout=timeout if timeout is not None else self._request_timeout(),
            transport=self.env.transport,
            on_response=self._log_http if (self.options.verbose or self.options.debug) else None,
            sleep=self.env.sleep,
        )

    def _request_timeout(self) -> float | None:
        """--request-timeout, else the profile's ``request_timeout`` setting."""
        if self.options.request_timeout is not None:
            return self.options.request_timeout
        return self.settings.request_timeout


@dataclass
class Session:
    """Carried as the root ``obj``: the environment in, the built ``Context`` out."""

    env: Environment
    context: Context | None = None


def current() -> Context:
    """The ``Context`` of the command being run."""
    from boltic_cli._compat import click

    session = click.globals.get_current_context().find_root().obj
    assert isinstance(session, Session) and session.context is not None
    return session.context
