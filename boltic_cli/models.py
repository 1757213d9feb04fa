"""Pydantic models of the Streams API schemas, shared by the client and the server.

Wire names are camelCase. Unknown fields in answers are ignored, so a newer
server does not break the client. Optional fields with no value stay absent
when dumped with ``to_wire()`` (the spec has no nullable fields).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)
from pydantic.alias_generators import to_camel

SourceType = Literal["javascript", "server", "mobile", "webhook"]
Status = Literal["active", "inactive"]


def to_utc(value: datetime) -> datetime:
    """Normalise to UTC; a time without an offset is taken as UTC.

    Raises ``ValueError`` (a validation error in a model: 422 at the server) when the
    UTC form leaves years 1..9999, e.g. ``9999-12-31T23:59:59-01:00`` (design.md,
    "Values the CLI and server must survive").
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"time {value.isoformat()} is out of range: in UTC it falls outside years 1..9999"
        ) from None


def no_nul(value: str) -> str:
    """``value`` unless it holds U+0000, which cannot be an identifier in every store
    (PostgreSQL text refuses it): ``ValueError`` (422 at the server). Used for ``type``,
    ids and names; inside ``properties`` and ``context`` U+0000 is kept."""
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: ``2026-11-26T11:19:14.123Z``."""
    # Not strftime: "%Y" does not pad years before 1000, which breaks RFC 3339;
    # isoformat pads them, truncates to milliseconds, and is C (every stored event
    # formats one or two times).
    if value.tzinfo is not UTC:
        value = to_utc(value)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


def _as_field_error(check: Any, kind: str) -> Any:
    # A PydanticCustomError is reported with exactly its message (a ValueError would be
    # prefixed "Value error, "): the server's 422 ``details`` reads "type: must not ...".
    from pydantic_core import PydanticCustomError

    def validate(value: Any) -> Any:
        try:
            return check(value)
        except ValueError as e:
            raise PydanticCustomError(kind, str(e).replace("{", "(")) from None

    return validate


# Text that names or identifies something: no U+0000 (``no_nul``).
Name = Annotated[str, AfterValidator(_as_field_error(no_nul, "nul_character"))]


def rfc3339_text(value: Any) -> Any:
    """A time on the wire is RFC 3339 text (the spec's ``format: date-time``): pydantic
    would also take a number (``to=6``) as Unix seconds, which the spec does not allow.
    ``datetime`` objects (built in Python) pass."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value[:4].isdigit() or value.strip().isdigit():
        raise ValueError("must be an RFC 3339 time such as 2026-01-31T12:00:00Z")
    return value


# A time input (a query parameter): RFC 3339 text, normalised to UTC, a validation
# error outside years 1..9999 (``to_utc``).
UtcTime = Annotated[
    datetime,
    BeforeValidator(_as_field_error(rfc3339_text, "datetime_type")),
    AfterValidator(_as_field_error(to_utc, "time_out_of_range")),
]

Timestamp = Annotated[
    datetime,
    BeforeValidator(_as_field_error(rfc3339_text, "datetime_type")),
    AfterValidator(_as_field_error(to_utc, "time_out_of_range")),
    PlainSerializer(format_time, return_type=str, when_used="json"),
]


class WireModel(BaseModel):
    # defer_build: a model's validator is built when first used, not at import, so a
    # command pays only for the models it touches (tens of ms at start-up).
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", defer_build=True
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON object as it goes over the wire."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StreamSourceInput(WireModel):
    name: Name = Field(min_length=1, max_length=200)
    type: SourceType


class StreamSourceUpdate(WireModel):
    """The body of ``PATCH /streams/sources/{id}`` (our extension, design.md "Sources"):
    a new ``name`` and/or ``status``; fields left out keep their value."""

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^\x00]*$")
    status: Status | None = None


class StreamSource(WireModel):
    id: str | None = None
    name: str | None = None
    type: SourceType | None = None
    write_key: str | None = Field(
        default=None, description="API key for sending events to this source"
    )
    status: Status | None = None
    events_today: int | None = None
    created_at: Timestamp | None = None


class EventPage(WireModel):
    model_config = ConfigDict(extra="allow")

    url: str | None = None
    title: str | None = None
    referrer: str | None = None


class EventContext(WireModel):
    # Senders put anything they like in context; keep what they sent.
    model_config = ConfigDict(extra="allow")

    ip: str | None = None
    user_agent: str | None = None
    locale: str | None = None
    page: EventPage | None = None


class EventInput(WireModel):
    source_id: Name = Field(min_length=1)
    type: Name = Field(min_length=1, max_length=200)
    properties: dict[str, Any] | None = None
    user_id: Name | None = None
    anonymous_id: Name | None = None
    timestamp: Timestamp | None = None
    context: EventContext | None = None
    # Extension (design.md "Batch ingest"): a second event with the same messageId
    # for the same source within 24 h is answered with the first one's id, not stored.
    # U+0000 cannot be an identifier in every store (design.md): refused (``Name``).
    message_id: Name | None = Field(default=None, min_length=1, max_length=100)


class Event(WireModel):
    id: str | None = None
    source_id: str | None = None
    type: str | None = Field(
        default=None, description="Event type name (e.g., page_view, purchase, signup)"
    )
    properties: dict[str, Any] | None = Field(default=None, description="Custom event properties")
    context: EventContext | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp: Timestamp | None = None
    received_at: Timestamp | None = None
    message_id: str | None = None  # extension: as sent in EventInput


class StreamDestinationInput(WireModel):
    name: Name = Field(min_length=1, max_length=200)
    type: Name = Field(min_length=1, max_length=100)
    config: dict[str, Any]


class StreamDestination(WireModel):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    config: dict[str, Any] | None = None
    status: Status | None = None
    created_at: Timestamp | None = None
    # Extension: why the server set the destination inactive (a 410, days of failures).
    disabled_reason: str | None = None


class Error(WireModel):
    code: int | None = None
    message: str | None = None
    details: str | None = None


# Response envelopes


class SourceList(WireModel):
    data: list[StreamSource] = Field(default_factory=list)


class DestinationList(WireModel):
    data: list[StreamDestination] = Field(default_factory=list)


class TimeRange(WireModel):
    from_: Timestamp | None = Field(default=None, alias="from")
    to: Timestamp | None = None


class EventSummary(WireModel):
    total_events: int | None = None
    unique_event_types: int | None = None
    time_range: TimeRange | None = None


class EventQueryResult(WireModel):
    data: list[Event] = Field(default_factory=list)
    summary: EventSummary | None = None


class DebugResult(WireModel):
    data: list[Event] = Field(default_factory=list)
    connected: bool | None = None
    last_event_at: Timestamp | None = None


class EventAccepted(WireModel):
    event_id: str | None = None
    status: Literal["accepted"] | None = None


# Extension: batch ingest (design.md "Batch ingest", POST /streams/events/batch)

MAX_BATCH_ITEMS = 500


class EventBatchInput(WireModel):
    batch: list[EventInput] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class BatchItemResult(WireModel):
    index: int
    status: Literal["accepted", "rejected"]
    event_id: str | None = None  # when accepted
    error: Error | None = None  # when rejected


class EventBatchResult(WireModel):
    accepted: int
    rejected: int
    data: list[BatchItemResult] = Field(default_factory=list)


# How a validation failure reads to a person (the CLI's messages and the server's 422
# ``details`` alike): the field's wire name and what is allowed, never a model name
# or pydantic's wording ("String should have at least 1 character").

_LOC_NOISE = frozenset({"body", "query", "path", "header"})


def problem_field(error: dict[str, Any], default: str = "body") -> str:
    """The dotted wire path of the field a pydantic error is about (``config.url``)."""
    loc = [str(p) for p in error.get("loc", ()) if p not in _LOC_NOISE]
    return ".".join(loc) or default


def problem_phrase(error: dict[str, Any]) -> str:
    """What is wrong with the field, in words that say what is allowed: ``is required``,
    ``must not be empty``, ``must be one of javascript, server (not 'bogus')``..."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    given = error.get("input")
    shown = (
        f" (not {given!r})"
        if isinstance(given, str | int | float) and len(repr(given)) <= 60
        else ""
    )
    if kind == "missing":
        return "is required"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must be at least {least} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return f"must have at least {least} item{'s' if least != 1 else ''}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected}{shown}"
    if kind == "string_pattern_mismatch":
        if "\\x00" in str(ctx.get("pattern", "")):
            return "must not contain the character U+0000"
        return f"has characters that are not allowed{shown}"
    if kind.startswith(("datetime", "date_", "timezone")):
        return f"must be a time such as 2026-01-31T12:00:00Z{shown}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a JSON object"
    if kind == "list_type":
        return "must be a list"
    if kind == "string_type":
        return "must be text"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number{shown}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"must be a number{shown}"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    bounds = {
        "greater_than_equal": ("must be at least", "ge"),
        "less_than_equal": ("must be at most", "le"),
        "greater_than": ("must be more than", "gt"),
        "less_than": ("must be less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{words} {ctx.get(key)}"
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message[:1].lower() + message[1:]


# Extensions: webhook delivery (design.md, "Destinations that deliver")

DeliveryStatus = Literal["pending", "succeeded", "failed"]
Outcome = Literal["success", "transient", "rejected", "gone"]


class StreamDestinationUpdate(WireModel):
    """PATCH /streams/destinations/{id}: any of these; ``config`` replaces the whole
    config (a webhook's signing secret is kept unless a new one is given)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    config: dict[str, Any] | None = None
    status: Status | None = None


class DeliveryAttempt(WireModel):
    """One attempt: when, how it ended, the receiver's status and first 2 KiB of its
    answer, or the error when there was no answer."""

    n: int | None = None
    at: Timestamp | None = None
    outcome: Outcome | None = None
    response_status: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    response_body: str | None = None


class Delivery(WireModel):
    """One event for one destination; the last attempt's fields are repeated here."""

    id: str | None = None
    destination_id: str | None = None
    event_id: str | None = None
    status: DeliveryStatus | None = None
    attempts: int | None = None
    created_at: Timestamp | None = None
    last_attempt_at: Timestamp | None = None
    next_attempt_at: Timestamp | None = None
    response_status: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    response_body: str | None = None
    history: list[DeliveryAttempt] | None = Field(
        default=None, description="Every attempt, oldest first (single-delivery route only)"
    )


class DeliveryList(WireModel):
    data: list[Delivery] = Field(default_factory=list)


class DeliveryTestResult(DeliveryAttempt):
    """The answer to POST .../test: the attempt, its ``webhook-id`` and the synthetic
    event's id (nothing is stored)."""

    webhook_id: str | None = None
    event_id: str | None = None


class ReplayInput(WireModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["failed", "succeeded"] = "failed"
    since: Timestamp | None = None


class ReplayResult(WireModel):
    queued: int | None = None
