"""Property: any JSON value a user can give survives CLI -> server -> `events query -o json`
unchanged, or is refused cleanly (exit 2, one line); never a 500, never "unexpected".

The values are deep, wide, unicode-heavy (NUL, CJK, emoji, bidi and line separators),
with extreme numbers (huge integers, the float edges, NaN and Infinity, 1e999-style
overflow), lone surrogate escapes, and times anywhere in (and just past) the calendar
with any offset.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltic_cli.models import format_time

DIGIT_LIMIT = 4300  # Python's int <-> text limit; the server's parser has the same
MAX_PROPERTIES_DEPTH = 199  # the body nests one more: 200, the server's limit


@dataclass(frozen=True)
class Digits:
    """An integer written as its digits (one beyond the digit limit cannot be a Python int)."""

    text: str


@dataclass(frozen=True)
class LoneSurrogate:
    """A JSON string holding an unpaired UTF-16 escape such as ``"\\ud83d"``."""

    code: int


def to_text(value: Any) -> str:
    """JSON text as a user might write it; NaN/Infinity/1e999 written as such."""
    if isinstance(value, Digits):
        return value.text
    if isinstance(value, LoneSurrogate):
        return f'"half \\u{value.code:04x}"'
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def refusal_reason(value: Any, depth: int = 0) -> str | None:
    """Why the CLI must refuse ``value`` (at nesting ``depth``), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "not finite"
    if isinstance(value, Digits):
        return "digits" if len(value.text.lstrip("-")) > DIGIT_LIMIT else None
    if isinstance(value, LoneSurrogate):
        return "surrogate"
    if isinstance(value, dict | list):
        if depth + 1 > MAX_PROPERTIES_DEPTH:
            return "depth"
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if (reason := refusal_reason(child, depth + 1)) is not None:
                return reason
    return None


def expected(value: Any) -> Any:
    if isinstance(value, Digits):
        return int(value.text)
    if isinstance(value, dict):
        return {k: expected(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expected(v) for v in value]
    return value


text = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["注文完了", "🎉🎊", "a\u0000b", "\u202e\u2066rtl", "x\u2028y\u0085z", "\x1b[31mred", ""]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 5e-324, -0.0, 2**53 + 1]),
    st.integers(min_value=1, max_value=DIGIT_LIMIT + 3).map(lambda n: Digits("9" * n)),
    text,
)
rare = st.sampled_from(
    [math.nan, math.inf, -math.inf, LoneSurrogate(0xD83D), LoneSurrogate(0xDC00)]
)
values = st.recursive(
    st.one_of(scalars, scalars, scalars, rare),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


@st.composite
def properties(draw) -> dict[str, Any]:
    wrap = draw(st.sampled_from([0, 0, 0, 1, 50, 197, 198, 199, 250]))
    value = draw(values)
    for _ in range(wrap):
        value = [value]
    props = draw(st.dictionaries(text, values, max_size=5))
    props[draw(text)] = value
    return props


offsets = st.integers(min_value=-1439, max_value=1439).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=offsets
) | st.sampled_from(
    [
        datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))),
        datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
    ]
)


def utc_or_none(value: datetime) -> datetime | None:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None


_types = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(props=properties(), when=st.none() | times)
def test_values_round_trip_or_are_refused_cleanly(cli, source, props, when):
    event_type = f"prop{next(_types)}"
    args = ["events", "send", "web", "--type", event_type, "--properties", to_text(props)]
    if when is not None:
        args += ["--timestamp", when.isoformat()]
    result = cli(*args, "-o", "json")
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    reason = refusal_reason(props)
    utc = None if when is None else utc_or_none(when)
    if reason is not None or (when is not None and utc is None):
        assert result.exit_code == 2, (reason, result.stdout, result.stderr)
        assert len(result.stderr.splitlines()) == 2  # the line, and the JSON error object
        assert json.loads(result.stderr.splitlines()[1])["error"]["exitCode"] == 2
        return
    if len(to_text(props).encode()) > 30_000:
        # Beyond the server's 32 KiB body limit: a clean 413 is a refusal too.
        assert result.exit_code in (0, 2), result.stderr
        return
    assert result.exit_code == 0, result.stderr
    query = cli("events", "query", "--source", "web", "--type", event_type, "-o", "json")
    assert query.exit_code == 0, query.stderr
    (event,) = query.json()["data"]
    assert event["properties"] == expected(props)
    if utc is not None:
        assert event["timestamp"] == format_time(utc)
