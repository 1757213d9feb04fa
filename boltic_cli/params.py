"""Parsers for option values shared by commands: fields, JSON objects, filters.

Durations and times have their one parser in ``durations``.

Pure functions: they read only the file or stdin they are handed, and every bad
input is a one-line ``UsageError`` (exit 2) raised before any request is made.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
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


# The deepest nesting the server accepts in a request body (design.md, "Values the CLI
# and server must survive"); the CLI refuses deeper values before sending them.
MAX_JSON_DEPTH = 200
# An object given to --properties, --context, --config or as fields sits one level
# inside the request body.
MAX_OPTION_DEPTH = MAX_JSON_DEPTH - 1

_BRACKET_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
BOM = "\ufeff"
DEPTH_PROBLEM = f"nested deeper than the server accepts ({MAX_JSON_DEPTH} levels in a request body)"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON can hold (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond the range of a JSON number (about 1.8e308)")
    return value


def _any_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        # Python's limit on converting digits (sys.get_int_max_str_digits(), 4300);
        # the server's JSON parser has the same one.
        raise ValueError(f"an integer of {len(text)} digits is too long to handle") from None


def loads_json(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``text`` as strict JSON: what any server can take back unchanged.

    A leading UTF-8 byte-order mark is skipped. Raises ``ValueError`` (a
    ``json.JSONDecodeError`` for syntax) with a one-phrase reason for NaN, Infinity,
    numbers beyond float range (``1e999``), integers beyond Python's digit limit,
    lone UTF-16 surrogates in keys or strings (not text: they cannot be encoded),
    and nesting deeper than ``max_depth`` containers (checked before parsing, so no
    input can make the parser recurse too deep). Integers of any other size are kept
    exactly. Rules: design.md, "Values the CLI and server must survive".
    """
    text = text.removeprefix(BOM)
    check_depth(text, max_depth)
    value = json.loads(
        text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_any_int
    )
    if "\\u" in text or _SURROGATE.search(text):
        check_text(value)
    return value


def check_depth(text: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise ``ValueError`` when the JSON ``text`` nests more than ``max_depth`` arrays
    and objects (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    for match in _BRACKET_OR_STRING.finditer(text):
        char = match.group()[0]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise ValueError(DEPTH_PROBLEM)
        elif char in "]}":
            depth -= 1


def json_depth(value: Any) -> int:
    """How many arrays and objects nest in ``value`` (a scalar is 0, ``[]`` is 1)."""
    deepest = 0
    stack: list[tuple[int, Any]] = [(0, value)]
    while stack:
        depth, item = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend(
                (depth, child) for child in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def strict_decoder() -> json.JSONDecoder:
    """A decoder for ``raw_decode`` with ``loads_json``'s number rules; its values still
    need ``check_text`` and a depth check (``json_depth``), and ``RecursionError``
    from it means nesting far beyond ``MAX_JSON_DEPTH``."""
    return json.JSONDecoder(
        parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_any_int
    )


def check_text(value: Any, path: str = "") -> None:
    """Raise ``ValueError`` naming the place of a key or string in ``value`` that holds a
    lone UTF-16 surrogate (``"\\ud83d"`` without its pair): it is not text."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            _check_string(item, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key, where)
                stack.append((f"{where}.{key}" if where else key, child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))


def _check_string(text: str, where: str) -> None:
    if (match := _SURROGATE.search(text)) is not None:
        place = f" at {_printable(where)}" if where else ""
        raise ValueError(
            f"lone surrogate \\u{ord(match.group()):04x}{place} is not valid text "
            "(half of a UTF-16 pair, or bytes that are not UTF-8)"
        )


def _printable(text: str) -> str:
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def check_arguments(args: Sequence[str]) -> None:
    """Raise ``UsageError`` for the first command-line argument that is not valid text.

    Bytes that are not UTF-8 reach Python as lone surrogates (``$'\\xe9'`` becomes
    ``"\\udce9"``), which no request or output can carry. The message names the option
    (``--type``, from ``--type=X`` or the word before the value) or the argument's
    position, and shows the bad bytes escaped.
    """
    for index, arg in enumerate(args):
        if not _SURROGATE.search(arg):
            continue
        if arg.startswith("-") and "=" in arg:
            name = arg.partition("=")[0]
        elif index > 0 and args[index - 1].startswith("-") and args[index - 1] != "--":
            name = args[index - 1]
        else:
            name = f"argument {index + 1}"
        shown = _SURROGATE.sub(_escaped_byte, arg)
        raise UsageError(
            f"{_printable(name)}: '{shown}' is not valid UTF-8 text "
            "(check the shell's quoting and the locale's encoding)"
        )


def _escaped_byte(match: re.Match[str]) -> str:
    code = ord(match.group())
    # surrogateescape maps an undecodable byte 0xNN to U+DCNN.
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def _loads(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    return loads_json(text, max_depth=max_depth)


def _json_problem(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} (line {error.lineno} column {error.colno})"
    return str(error)


# --- -p key=value / key:=json ------------------------------------------------------


def parse_fields(
    items: Iterable[str], *, option: str | None = None, max_depth: int = MAX_OPTION_DEPTH
) -> dict[str, Any]:
    """httpie-style fields as a dict: ``key=text``, ``key:=json``, ``a.b=c`` nests.

    JSON values are strict (``loads_json``); the whole dict may nest at most
    ``max_depth`` levels (by default: what fits one level inside a request body).
    A bad item is a ``UsageError`` quoting it (cut when long), after ``option: ``
    when the flag is given (``-p``).
    """
    result: dict[str, Any] = {}
    for item in items:
        try:
            path, value = _parse_field(item, max_depth)
            _set_path(result, path, value, item)
        except UsageError as e:
            if option is None:
                raise
            raise UsageError(f"{option}: {e.message}") from None
    return result


def _quoted(item: str, limit: int = 60) -> str:
    """``repr`` of a field for a message, cut to ``limit`` characters."""
    shown = _printable(item)
    return repr(shown if len(shown) <= limit else shown[: limit - 1] + "…")


def _parse_field(item: str, max_depth: int) -> tuple[list[str], Any]:
    try:
        check_text(item)
    except ValueError as e:
        raise UsageError(f"invalid field {_quoted(item)}: {e}") from None
    equals = item.find("=")
    if equals < 0:
        raise UsageError(f"invalid field {_quoted(item)}: expected key=value or key:=<json>")
    typed = equals > 0 and item[equals - 1] == ":"
    key = item[: equals - 1] if typed else item[:equals]
    raw = item[equals + 1 :]
    path = key.split(".")
    if not key or not all(path):
        raise UsageError(f"invalid field {_quoted(item)}: the key is empty")
    if not typed:
        return path, raw
    try:
        return path, _loads(raw, max_depth - len(path))
    except ValueError as e:
        raise UsageError(f"invalid JSON in field {_quoted(item)}: {_json_problem(e)}") from None


def _set_path(target: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    for depth, part in enumerate(path[:-1]):
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(path[: depth + 1])
            raise UsageError(
                f"invalid field {_quoted(item)}: {prefix} is already set to a non-object"
            )
        target = child
    target[path[-1]] = value


# --- --properties / --context / --config: JSON, @file or - -------------------------


def load_json_object(
    arg: str, stdin: TextIO | None, *, option: str = "value", max_depth: int = MAX_OPTION_DEPTH
) -> dict[str, Any]:
    """A JSON object given inline, as ``@file``, or as ``-`` (read from ``stdin``).

    Files and stdin are UTF-8, with or without a byte-order mark, any line ends. The
    JSON is strict (``loads_json``) and may nest ``max_depth`` levels (by default:
    what fits one level inside a request body). Every refusal is a ``UsageError``
    naming ``option``.
    """
    if arg == "-":
        source = "stdin"
        if stdin is None:
            raise UsageError(f"{option}: no stdin to read from")
        text = read_text_stream(stdin, "stdin", option)
    elif arg.startswith("@"):
        source = arg[1:]
        text = _read_file(source, option)
    else:
        source = "the argument"
        text = arg
    try:
        value = _loads(text, max_depth)
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
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{option}: {name} is not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"{option}: cannot read {name}: {e.strerror or e}") from None


def read_text_stream(stream: TextIO, name: str, option: str) -> str:
    """All of ``stream`` as text: its bytes decoded as UTF-8 (a BOM skipped) when it has
    them, whatever the locale's encoding; raises ``UsageError`` when they are not UTF-8."""
    buffer = getattr(stream, "buffer", None)
    try:
        if buffer is not None:
            return buffer.read().decode("utf-8-sig")
        return stream.read().removeprefix(BOM)
    except UnicodeDecodeError:
        raise UsageError(f"{option}: {name} is not UTF-8 text") from None


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
