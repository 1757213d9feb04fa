"""Helpers of the fault tests; ``ServerProcess`` (the one server launcher) lives in
tests/support.py and is re-exported here for the fault tests' imports."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support import START_TIMEOUT, ServerProcess

__all__ = ["START_TIMEOUT", "ServerProcess", "UniqueTimestamps", "all_event_ids", "auth"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class UniqueTimestamps:
    """Distinct event timestamps, one millisecond apart, safe to share between threads.

    Distinct timestamps let a reader page through ``GET /streams/events`` (newest
    first, ``to`` exclusive) with no ties at page edges.
    """

    def __init__(self, start: datetime = datetime(2020, 1, 1, tzinfo=UTC)) -> None:
        self._start = start
        self._counter = itertools.count()

    def next(self) -> str:
        when = self._start + timedelta(milliseconds=next(self._counter))
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def all_event_ids(client: Any, source_id: str) -> Iterator[str]:
    """Every stored event id of a source, paging on ``to`` (works with UniqueTimestamps)."""
    params: dict[str, Any] = {"sourceId": source_id, "limit": 1000}
    while True:
        response = client.get("/streams/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        yield from (event["id"] for event in page)
        if len(page) < params["limit"]:
            return
        params["to"] = min(event["timestamp"] for event in page)
