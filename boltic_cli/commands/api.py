"""boltic api: a raw, authenticated request to the Streams API, like `gh api`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl

import typer

from boltic_cli.commands import new_app
from boltic_cli.context import current
from boltic_cli.errors import UsageError
from boltic_cli.params import parse_fields, parse_headers

if TYPE_CHECKING:
    import httpx

    from boltic_cli.context import Context

app = new_app()

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# Methods whose fields travel in the query string; the others send a JSON body.
QUERY_METHODS = frozenset({"GET", "DELETE", "HEAD", "OPTIONS"})


@app.command()
def api(
    method: Annotated[
        str, typer.Argument(metavar="METHOD", help=f"HTTP method: {', '.join(METHODS)}.")
    ],
    path: Annotated[
        str, typer.Argument(metavar="PATH", help="Path below the API URL: /streams/sources.")
    ],
    field: Annotated[
        list[str] | None,
        typer.Option(
            "-f",
            "--field",
            metavar="KEY=VALUE",
            help="A field: key=value (string) or key:=<json> (typed). Repeatable. "
            "Body fields for POST/PUT/PATCH, query parameters for GET/DELETE.",
        ),
    ] = None,
    input_: Annotated[
        str | None,
        typer.Option(
            "--input",
            metavar="FILE",
            help="Send FILE (or - for stdin) as the body; fields then go to the query.",
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("-H", "--header", metavar="'NAME: VALUE'", help="Extra header. Repeatable."),
    ] = None,
) -> None:
    """Make an authenticated API request and print the answer.

    PATH is relative to the profile's API URL (which includes /v1). The JSON
    answer is printed pretty on a terminal; piped, it is the answer's bytes,
    unchanged. A status of 400 or more prints the body and exits with the
    matching exit code.

    \b
    Examples:
      boltic api GET /streams/sources
      boltic api POST /streams/sources -f name=web -f type=javascript
      boltic api GET /streams/events -f limit:=5
      boltic api POST /streams/events --input event.json
    """
    ctx = current()
    # The answer is printed as the server sent it (JSON): other formats are refused.
    ctx.only_formats("plain", "table", "json", command="boltic api")
    verb = _method(method)
    fields = parse_fields(field or [], option="-f")
    headers = parse_headers(header or [], option="--header")
    params: Any = None
    body: Any = None
    content: bytes | None = None
    if input_ is not None:
        content = _read_input(ctx, input_)
        params = _query_params(fields)
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
            # JSON has no byte-order mark (RFC 8259); editors on Windows write one.
            content = content.removeprefix(b"\xef\xbb\xbf")
    elif verb in QUERY_METHODS:
        params = _query_params(fields)
    elif fields:
        body = fields
    # httpx replaces a URL's query when given params: merge PATH's own query first.
    path, _, query = path.partition("?")
    params = parse_qsl(query, keep_blank_values=True) + (params or [])
    with ctx.make_client() as client:
        response = client.request(
            verb, path, params=params or None, json=body, content=content, headers=headers
        )
        _print_body(ctx, response)
        if response.status_code >= 400:
            client.raise_for_status(response)


def _method(method: str) -> str:
    verb = method.upper()
    if verb not in METHODS:
        raise UsageError(f"unknown HTTP method {method!r} (choose from {', '.join(METHODS)})")
    return verb


def _query_params(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """Fields as query parameters: lists repeat the key, other JSON values are serialised."""
    params: list[tuple[str, str]] = []
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            params.append((key, item if isinstance(item, str) else json.dumps(item)))
    return params


def _read_input(ctx: Context, source: str) -> bytes:
    if source == "-":
        stdin = ctx.env.stdin
        assert stdin is not None
        buffer = getattr(stdin, "buffer", None)
        return buffer.read() if buffer is not None else stdin.read().encode()
    try:
        return Path(source).expanduser().read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read --input {source}: {e.strerror or e}") from None


def _print_body(ctx: Context, response: httpx.Response) -> None:
    if not response.content:
        return
    if not ctx.env.stdout_isatty:
        # Piped: the answer's bytes, unchanged (design.md). Parsing and printing again
        # would rewrite it: {"a":1,"a":2} would become {"a":2}, 1.10 would become 1.1.
        ctx.output.raw(response.content)
        return
    text = _pretty(response)
    ctx.output.raw(text if text.endswith("\n") else text + "\n")


def _pretty(response: httpx.Response) -> str:
    """The body for a terminal: JSON indented, other text with control characters and
    escape sequences made visible (bodies carry event data)."""
    from boltic_cli.output import dumps_json, sanitize

    try:
        data = response.json()
    except ValueError:
        return "\n".join(sanitize(line) for line in response.text.split("\n"))
    return dumps_json(data, indent=2)
