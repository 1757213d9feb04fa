"""``create_app(settings)``: the Streams API as a FastAPI app. No module-level state:
the store opens in the lifespan, so every app (and every test) has its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from boltic_cli.server.delivery import DeliveryWorker
from boltic_cli.server.ids import IdGenerator
from boltic_cli.server.settings import ServerSettings
from boltic_cli.server.store import PRUNE_CHUNK, Store, StoreError, open_store

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("boltic.server")

# Request-body schemas of routes that parse their own bodies (see routes.json_body).
BODY_MODELS = (
    "StreamSourceInput",
    "StreamSourceUpdate",
    "EventInput",
    "StreamDestinationInput",
    "EventBatchInput",
    "StreamDestinationUpdate",
    "ReplayInput",
)


class Runtime:
    """What the routes share while the app runs: settings, the store, the id generator.
    Maintenance (Idempotency-Key expiry, retention) is a task on the app's loop."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.ids = IdGenerator()
        self._store: Store | None = None
        self._stop = asyncio.Event()
        self._maintenance: asyncio.Task | None = None
        self._delivery: DeliveryWorker | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the server is not running")
        return self._store

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._store = await open_store(self.settings)
        self._maintenance = asyncio.create_task(self._maintain(), name="boltic-maintenance")
        self._delivery = DeliveryWorker(self._store, self.settings)
        if self.settings.delivery:
            await self._delivery.start()

    @property
    def delivery(self) -> DeliveryWorker:
        """The webhook delivery worker (also sends ``POST .../test``)."""
        if self._delivery is None:
            raise RuntimeError("the server is not running")
        return self._delivery

    async def stop(self) -> None:
        self._stop.set()
        if self._delivery is not None:
            await self._delivery.stop()
        if self._maintenance is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        if self._store is not None:
            await self._store.close()

    async def _maintain(self) -> None:
        while True:
            try:
                await self.maintain_once()
            except StoreError as e:
                log.warning("maintenance failed: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.maintenance_interval)
                return

    async def maintain_once(self) -> None:
        """Expire old Idempotency-Keys; with a retention, prune events received before it."""
        store = self.store
        await store.expire_idempotency_keys()
        retention = self.settings.retention
        if retention is None:
            return
        cutoff = store.now_ms() - int(retention.total_seconds() * 1000)
        # Small transactions, so senders never wait long behind a prune.
        while not self._stop.is_set():
            if await store.prune_received_before(cutoff) < PRUNE_CHUNK:
                return


def create_app(settings: ServerSettings) -> FastAPI:
    from fastapi import FastAPI

    from boltic_cli import __version__
    from boltic_cli.server.auth import RequestGate
    from boltic_cli.server.responses import install_error_handlers
    from boltic_cli.server.routes import destinations, events, meta, sources
    from boltic_cli.server.routes.meta import bench_router

    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Boltic Streams API (local)",
        version=__version__,
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        separate_input_output_schemas=False,
        **_without_telemetry(FastAPI),
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    # The busiest routes (sending events) first: routes are matched in order, and from
    # FastAPI 0.13x each route tried before the match costs a few microseconds. The
    # benchmark's no-op goes before them, so it is matched as soon as sendEvent is.
    if settings.bench_noop:
        app.include_router(bench_router)
    for router in (events.router, sources.router, destinations.router, meta.router):
        app.include_router(router, prefix="/v1")
    app.add_middleware(
        RequestGate,
        admin_token=settings.admin_token,
        max_body_bytes=settings.max_body_bytes,
        max_batch_body_bytes=settings.max_batch_body_bytes,
        store=lambda: runtime.store,
        access_log=settings.access_log,
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _without_telemetry(fastapi_class: type) -> dict[str, Any]:
    """FastAPI's native OpenTelemetry off, where the installed FastAPI has it (0.16x):
    otherwise every request asks OpenTelemetry's global providers whether one was
    configured, reading the environment three times. The server exports no telemetry."""
    import inspect

    if "telemetry" not in inspect.signature(fastapi_class.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema of the routes, plus the body models the routes parse themselves
    and the spec's bearer security."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema

    from boltic_cli import models

    schema = get_openapi(
        title=app.title,
        version=app.version,
        description="The Boltic Streams API served by `boltic server`.",
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _, extra = models_json_schema(
        [(getattr(models, name), "validation") for name in BODY_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    for name, body_schema in extra.get("$defs", {}).items():
        schemas.setdefault(name, body_schema)
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    schema["security"] = [{"bearerAuth": []}]
    app.openapi_schema = schema
    return schema
