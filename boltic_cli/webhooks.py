"""Webhook deliveries as the server sends them and `debug forward` imitates them.

One owner for four rules of design.md ("Destinations that deliver"):

- **signing**: Standard Webhooks (https://www.standardwebhooks.com): headers
  ``webhook-id``, ``webhook-timestamp`` (Unix seconds of this attempt) and
  ``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed
  with the base64-decoded part of a ``whsec_...`` secret. The HMAC is computed by
  the ``standardwebhooks`` package, so sender and any receiver agree by construction;
  the body is signed exactly as sent (never re-serialised);
- **outcome**: :func:`classify` sorts an attempt into ``success``, ``transient``,
  ``rejected`` or ``gone``;
- **retry schedule**: :func:`retry_delay` gives the pause before the next attempt,
  with +/-20% jitter and a ``Retry-After`` honoured when longer;
- **secrets**: :func:`new_signing_secret`.

Pure functions: randomness and time come in as arguments, nothing does I/O.
Imports only the standard library and ``durations`` at module level
(``standardwebhooks`` is imported where a signature is made). ``parse_retry_after``
(the header the retry schedule honours) is ``durations``', re-exported here.
"""

from __future__ import annotations

import base64
import functools
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# The header's one reader is durations'; the server's delivery worker calls it here.
from boltic_cli.durations import parse_retry_after as parse_retry_after

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# An attempt that has not answered within this many seconds is a timeout: transient.
ATTEMPT_TIMEOUT = 15.0
# Pauses after the first, immediate try: 5s, 5m, 30m, 2h, 5h, 10h, 10h (Svix's schedule).
DEFAULT_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2
# What an attempt keeps of the receiver's answer.
RESPONSE_KEEP_BYTES = 2048
CONTENT_TYPE = "application/json"
# Headers a destination's config may not set: the signature's, and those that
# describe the request itself (the HTTP client sets them).
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
    }
)


class Outcome(StrEnum):
    """How one attempt ended (design.md: "Outcome, classified once in webhooks.py")."""

    SUCCESS = "success"  # 2xx within the timeout
    TRANSIENT = "transient"  # connection error, timeout, 408, 429, 5xx: try again
    REJECTED = "rejected"  # any other status, 3xx included (redirects are not followed)
    GONE = "gone"  # 410: the receiver asks us to stop


def classify(status: int | None) -> Outcome:
    """The outcome of an attempt that got HTTP ``status``, or ``None`` when there was
    no answer (connection refused or reset, DNS failure, TLS error, timeout)."""
    if status is None:
        return Outcome.TRANSIENT
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status == 410:
        return Outcome.GONE
    if status in (408, 429) or 500 <= status < 600:
        return Outcome.TRANSIENT
    return Outcome.REJECTED


def new_signing_secret(token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A new signing secret: ``whsec_`` + standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


def is_signing_secret(value: object) -> bool:
    """Whether ``value`` is a usable Standard Webhooks secret (``whsec_`` + base64 of
    at least one byte). A creator may give their own; the server refuses others (422)."""
    if not isinstance(value, str) or not value.startswith(SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        return False
    return len(key) > 0


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 signature>`` of ``body`` as sent, for ``webhook-signature``.

    ``timestamp`` is Unix seconds (the ``webhook-timestamp`` header). Raises
    ``ValueError`` for a secret that is not ``whsec_`` + base64 (see
    :func:`is_signing_secret`); ``body`` must be UTF-8 (JSON always is).
    """
    when = datetime.fromtimestamp(timestamp, UTC)
    return _signer(secret).sign(message_id, when, body.decode("utf-8"))


@functools.lru_cache(maxsize=256)
def _signer(secret: str) -> Any:
    """The ``standardwebhooks`` signer of a secret (kept: a destination signs thousands)."""
    from standardwebhooks.webhooks import Webhook

    if not is_signing_secret(secret):
        raise ValueError("a signing secret is whsec_ followed by base64")
    return Webhook(secret)


def delivery_headers(
    secret: str,
    message_id: str,
    body: bytes,
    *,
    timestamp: int,
    user_agent: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every header of one delivery attempt: ``Content-Type``, ``User-Agent``, the
    destination's own ``extra`` headers, then the Standard Webhooks three (which, like
    the Content-Type, an ``extra`` header cannot replace: see RESERVED_HEADERS).

    ``message_id`` stays the same on every retry of one delivery; ``timestamp`` (Unix
    seconds) is this attempt's. ``user_agent`` is ``boltic-server/<version>`` from the
    server, the CLI's own from `debug forward`.
    """
    headers = {"Content-Type": CONTENT_TYPE, "User-Agent": user_agent}
    for name, value in (extra or {}).items():
        if name.lower() in RESERVED_HEADERS:
            continue
        if name.lower() == "user-agent":
            headers.pop("User-Agent", None)
        headers[name] = value
    headers["webhook-id"] = message_id
    headers["webhook-timestamp"] = str(timestamp)
    headers["webhook-signature"] = sign(secret, message_id, timestamp, body)
    return headers


def retry_delay(
    attempts: int,
    *,
    schedule: Sequence[float] = DEFAULT_SCHEDULE,
    random: Callable[[], float],
    retry_after: float | None = None,
) -> float | None:
    """Seconds to wait before the next attempt after ``attempts`` attempts (1 = the
    first, immediate try has been made), or ``None`` when the schedule is used up
    (the delivery has failed).

    The scheduled pause is scaled by a factor in [0.8, 1.2) drawn from ``random()``
    (uniform in [0, 1), e.g. ``random.random``); a ``retry_after`` (from a 429 or 503)
    longer than that wins. ``schedule`` is the pauses after each attempt in turn.
    """
    if attempts < 1:
        raise ValueError("attempts counts the attempts made, from 1")
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1] * (1 - JITTER + 2 * JITTER * random())
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay


def response_excerpt(body: bytes) -> str:
    """What an attempt keeps of an answer: its first 2 KiB as text (undecodable bytes
    replaced; a character cut at the edge dropped)."""
    text = body[:RESPONSE_KEEP_BYTES].decode("utf-8", errors="replace")
    return text.rstrip("\ufffd") if len(body) > RESPONSE_KEEP_BYTES else text
