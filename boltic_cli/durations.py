"""The one parser of durations and times, for every CLI option and server setting,
and of the ``Retry-After`` header (the client's retries, webhook deliveries, ``debug
forward``).

design.md ("CLI conventions"): times accept RFC 3339, a date, or a duration back from
now (``90s``, ``15m``, ``2h``, ``7d``); a date means the start of that UTC day, or the
end of it for ``--until``/``--to``. Durations combine units (``1h30m``); a bare number
is seconds. Every bad input is a one-line ``UsageError`` (exit 2).

Base layer: imports nothing of the package but ``errors``, so the server uses it too.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from boltic_cli.errors import UsageError

UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_BARE_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(\.\d+)?(Z|[+-]\d{2}:\d{2})?", re.IGNORECASE
)
TIME_FORMS = "RFC 3339 (2026-11-26T11:19:14Z), a date (2026-11-26) or a duration (90s, 15m, 2h, 7d)"


def parse_duration(text: str, *, option: str = "duration", positive: bool = False) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``1w``, ``500ms``, combinations like ``1h30m``;
    a bare number is seconds.

    Raises ``UsageError`` naming ``option`` for anything else, for a value beyond
    ``timedelta``'s range, and (with ``positive``) for zero.
    """
    cleaned = text.strip().lower()
    if _BARE_SECONDS.fullmatch(cleaned):
        seconds = float(cleaned)
    elif _DURATION.fullmatch(cleaned):
        seconds = _duration_seconds(cleaned)
    else:
        raise UsageError(
            f"invalid {option} {text!r}: use a number with a unit, e.g. 90s, 15m, 2h, 7d, 1h30m"
        )
    if positive and seconds <= 0:
        raise UsageError(f"invalid {option} {text!r}: must be more than zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise UsageError(f"invalid {option} {text!r}: out of range") from None


def duration_seconds(text: str | None, *, option: str = "duration") -> float | None:
    """``parse_duration`` in seconds, passing ``None`` (an option not given) through."""
    return None if text is None else parse_duration(text, option=option).total_seconds()


def _duration_seconds(text: str) -> float:
    return sum(float(amount) * UNIT_SECONDS[unit] for amount, unit in _DURATION_PART.findall(text))


def parse_time(
    text: str, *, now: datetime, end_of_day: bool = False, option: str = "time"
) -> datetime:
    """An aware UTC datetime from RFC 3339 (any offset; none means UTC), a date, or a
    duration back from ``now``.

    A date is the start of that UTC day, or with ``end_of_day`` the start of the next
    one: ``--to`` is exclusive, so that is the end of the day given. Raises
    ``UsageError`` naming ``option`` for anything else or a time out of range.
    """
    cleaned = text.strip()
    try:
        if _DATE.fullmatch(cleaned):
            return _parse_date(cleaned, end_of_day)
        if match := _RFC3339.fullmatch(cleaned):
            return _parse_rfc3339(match)
        if _DURATION.fullmatch(cleaned.lower()):
            return now.astimezone(UTC) - timedelta(seconds=_duration_seconds(cleaned.lower()))
    except OverflowError:
        raise UsageError(f"invalid {option} {text!r}: out of range") from None
    except ValueError as e:
        raise UsageError(f"invalid {option} {text!r}: {e}") from None
    raise UsageError(f"invalid {option} {text!r}: use {TIME_FORMS}")


def _parse_date(text: str, end_of_day: bool) -> datetime:
    day = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return day + timedelta(days=1) if end_of_day else day


def _parse_rfc3339(match: re.Match[str]) -> datetime:
    base, fraction, offset = match.groups()
    # Python keeps microseconds; nanosecond digits some tools print are dropped.
    micro = (fraction or "")[:7]
    zone = "+00:00" if offset in (None, "z", "Z") else offset
    value = datetime.fromisoformat(f"{base.replace(' ', 'T').upper()}{micro}{zone}")
    return value.astimezone(UTC)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for: delta-seconds or an HTTP date (RFC 9110
    10.2.3); a date in the past is 0.

    ``None`` when the header is absent or unreadable (``soon``, ``-5``, ``1.5``, digits
    that are not ASCII): the caller then waits as it would without one. ``now`` is Unix
    seconds (default: the current time). Never raises. The one reader of the header:
    ``client`` (the CLI's retries), ``webhooks`` (re-exported there for the server's
    delivery worker) and ``forward``.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    import email.utils  # only for the rare HTTP-date form; ~5 ms to import

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
