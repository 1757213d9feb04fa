"""Pydantic models of the Streams API schemas, shared by the client and the server.

Wire names are camelCase. Unknown fields in answers are ignored, so a newer
server does not break the client. Optional fields with no value stay absent
when dumped with ``to_wire()`` (the spec has no nullable fields).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

SourceType = Literal["javascript", "server", "mobile", "webhook"]
Status = Literal["active", "inactive"]


def to_utc(value: datetime) -> datetime:
    """Normalise to UTC; a time without an offset is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: ``2026-11-26T11:19:14.123Z``."""
    # Not strftime: "%Y" does not pad years before 1000, which breaks RFC 3339;
    # isoformat pads them, truncates to milliseconds, and is C (every stored event
    # formats one or two times).
    if value.tzinfo is not UTC:
        value = to_utc(value)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


Timestamp = Annotated[
    datetime,
    AfterValidator(to_utc),
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
    name: str = Field(min_length=1, max_length=200)
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
    source_id: str = Field(min_length=1)
    type: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp: Timestamp | None = None
    context: EventContext | None = None
    # Extension (design.md "Batch ingest"): a second event with the same messageId
    # for the same source within 24 h is answered with the first one's id, not stored.
    # U+0000 cannot be an identifier in every store (design.md): refused.
    message_id: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=r"^[^\x00]*$"
    )


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
    name: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100)
    config: dict[str, Any]


class StreamDestination(WireModel):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    config: dict[str, Any] | None = None
    status: Status | None = None
    created_at: Timestamp | None = None


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
