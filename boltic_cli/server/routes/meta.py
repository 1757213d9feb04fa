"""Health (no auth) and the benchmark's no-op route."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

router = APIRouter()

ACCEPTED_NOOP = b'{"eventId":"evt_00000000000000000000000000","status":"accepted"}'


@router.get("/health", include_in_schema=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


bench_router = APIRouter(prefix="/v1")


@bench_router.post("/_bench/noop", include_in_schema=False)
async def bench_noop() -> Response:
    # Same middleware as sendEvent, nothing else: the ceiling sendEvent is compared with.
    return Response(ACCEPTED_NOOP, 202, media_type="application/json")
