"""Parsers for option values shared by commands: fields, JSON objects, filters.

Durations and times have their one parser in ``durations``.

Pure functions: they read only the file or stdin they are handed, and every bad
input is a one-line ``UsageError`` (exit 2) raised before any request is made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from boltic_cli.errors import UsageError

# Fields of the Event object itself; any other first path segment names a property.
EVENT_FIELDS = frozenset(
    {
        "id",
        "sourceId",
        "type",
        "properties",
        "context",
        "userId",
        "anonymousId",
        "timestamp",
        "receivedAt",
    }
)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; a server would refuse the body they end up in.
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _json_problem(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} (line {error.lineno} column {error.colno})"
    return str(error)


# --- -p key=value / key:=json ------------------------------------------------------


def parse_fields(items: Iterable[str]) -> dict[str, Any]:
    """httpie-style fields as a dict: ``key=text``, ``key:=json``, ``a.b=c`` nests."""
    result: dict[str, Any] = {}
    for item in items:
        path, value = _parse_field(item)
        _set_path(result, path, value, item)
    return result


def _parse_field(item: str) -> tuple[list[str], Any]:
    equals = item.find("=")
    if equals < 0:
        raise UsageError(f"invalid field {item!r}: expected key=value or key:=<json>")
    typed = equals > 0 and item[equals - 1] == ":"
    key = item[: equals - 1] if typed else item[:equals]
    raw = item[equals + 1 :]
    path = key.split(".")
    if not key or not all(path):
        raise UsageError(f"invalid field {item!r}: the key is empty")
    if not typed:
        return path, raw
    try:
        return path, _loads(raw)
    except ValueError as e:
        raise UsageError(f"invalid JSON in field {item!r}: {_json_problem(e)}") from None


def _set_path(target: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    for depth, part in enumerate(path[:-1]):
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(path[: depth + 1])
            raise UsageError(f"invalid field {item!r}: {prefix} is already set to a non-object")
        target = child
    target[path[-1]] = value


# --- --properties / --context / --config: JSON, @file or - -------------------------


def load_json_object(arg: str, stdin: TextIO | None, *, option: str = "value") -> dict[str, Any]:
    """A JSON object given inline, as ``@file``, or as ``-`` (read from ``stdin``)."""
    if arg == "-":
        source = "stdin"
        if stdin is None:
            raise UsageError(f"{option}: no stdin to read from")
        text = stdin.read()
    elif arg.startswith("@"):
        source = arg[1:]
        text = _read_file(source, option)
    else:
        source = "the argument"
        text = arg
    try:
        value = _loads(text)
    except ValueError as e:
        raise UsageError(f"{option}: invalid JSON in {source}: {_json_problem(e)}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option}: expected a JSON object in {source}, got {json_kind(value)}")
    return value


def _read_file(name: str, option: str) -> str:
    if not name:
        raise UsageError(f"{option}: '@' needs a file name, e.g. @body.json")
    path = Path(name).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{option}: {name} is not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"{option}: cannot read {name}: {e.strerror or e}") from None


def json_kind(value: Any) -> str:
    """How a message names a JSON value's kind: "an array", "a string", "null"..."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


# --- --where key=value -------------------------------------------------------------

_MISSING = object()


@dataclass(frozen=True)
class Where:
    """One ``--where`` filter: the path in the event, the raw text and its JSON value."""

    path: tuple[str, ...]
    text: str
    value: Any

    def matches(self, event: Mapping[str, Any]) -> bool:
        actual = _resolve(event, self.path)
        if actual is _MISSING:
            return False
        if _same_scalar(actual, self.value):
            return True
        # `code=10` should find a property sent as the string "10" as well.
        return isinstance(actual, str) and actual == self.text


def parse_where(items: Iterable[str]) -> list[Where]:
    """``key=value`` filters; the value is a JSON scalar when it parses as one, else text.

    The key is a dotted path into the event's properties (``plan.tier=pro``), unless
    it starts with an Event field (``type``, ``userId``, ``context.ip``...); a property
    with such a name is reached as ``properties.type``.
    """
    return [_parse_where_item(item) for item in items]


def _parse_where_item(item: str) -> Where:
    key, equals, text = item.partition("=")
    path = tuple(key.split("."))
    if not equals:
        raise UsageError(f"invalid filter {item!r}: expected key=value")
    if not key or not all(path):
        raise UsageError(f"invalid filter {item!r}: the key is empty")
    return Where(path=_event_path(path), text=text, value=_scalar_or_text(text))


def _event_path(path: tuple[str, ...]) -> tuple[str, ...]:
    if path[0] in EVENT_FIELDS:
        return path
    return ("properties", *path)


def _scalar_or_text(text: str) -> Any:
    try:
        value = _loads(text)
    except ValueError:
        return text
    return text if isinstance(value, dict | list) else value


def _resolve(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _same_scalar(actual: Any, expected: Any) -> bool:
    # In Python True == 1; in a filter `ok=true` must not match 1, nor `n=1` match true.
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return actual == expected
    if isinstance(actual, dict | list):
        return False
    return type(actual) is type(expected) and actual == expected


def matches(event: Mapping[str, Any], predicates: Iterable[Where]) -> bool:
    """Whether the event (a wire dict) satisfies every filter."""
    return all(predicate.matches(event) for predicate in predicates)


# An HTTP header name (RFC 9110 token).
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_headers(items: Iterable[str], *, option: str = "--header") -> dict[str, str]:
    """``Name: value`` items as a dict (a repeated name: the last wins); the value is
    stripped. ``UsageError`` naming ``option`` for an item without ``:``, a name that is
    not an HTTP token, or a value with a line break (header injection)."""
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not HEADER_NAME.match(name) or "\n" in value or "\r" in value:
            raise UsageError(f"bad {option} {item!r}: expected 'Name: value'")
        headers[name] = value.strip()
    return headers
