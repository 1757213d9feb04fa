"""The webhook delivery worker: claims due deliveries from the store, POSTs them, records
each attempt. Started and stopped with the app (``create_app``'s lifespan), so
``boltic server`` and ``boltic dev`` deliver alike.

What it sends, how an answer is classified and when it tries again are the rules of
``boltic_cli.webhooks`` (design.md, "Destinations that deliver"); the worker only
claims, sends and records (Svix's model). Per destination it keeps a local queue of
claimed deliveries (leased in the store, so a process that dies holding them leaves
them to be claimed again when the lease ends) and at most ``MAX_IN_FLIGHT`` requests
at once; order is best effort. Attempts are recorded in groups: one store write for
whatever finished while the previous write committed.

Each attempt goes where the destination says when it starts, not when it was claimed:
before sending, a sender reads the destination's status and config from the store
(``delivery_targets``; the senders that start meanwhile share one read, which begins
after each of them asked). Paused, deleted or no longer a webhook (by this process or
another): nothing more is sent and the lane's claims are given back, to wait for it;
a new URL, signing secret or headers: the attempt uses them.

The HTTP client is aiohttp: measured against httpx's AsyncClient it sent 5x the
webhooks per second at 1/8 of the CPU each, and httpx could not keep up with ingest
beside it (tests/bench/bench_delivery_client.json). It runs in a thread and event loop
of its own (see ``DeliveryWorker`` for the measurement against the serving loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from boltic_cli import __version__, webhooks
from boltic_cli.server.store import StoreError
from boltic_cli.server.store.outbox import AttemptRecord, Claim
from boltic_cli.server.store.sqlite.writer import name_os_thread

if TYPE_CHECKING:
    import aiohttp

    from boltic_cli.server.settings import ServerSettings
    from boltic_cli.server.store import Store

log = logging.getLogger("boltic.server.delivery")

MAX_IN_FLIGHT = 4
# Deliveries claimed per destination at a time; a destination claims again when fewer
# than this wait locally, so its 4 requests never wait for a claim to commit (with 4
# in flight, a destination's rate is 4 / round trip), and a paused or deleted
# destination holds back at most twice this.
CLAIM_BATCH = 100
USER_AGENT = f"boltic-server/{__version__}"
# Seconds between claims prompted by new events when the last one found nothing.
NUDGE_GAP = 0.01
# Most seconds between tries while the store fails (the first is the poll interval).
STORE_RETRY_MAX = 5.0


@dataclass(frozen=True)
class AttemptResult:
    """One attempt as it happened: ``status`` None when there was no answer."""

    at_ms: int
    duration_ms: int
    outcome: webhooks.Outcome
    status: int | None = None
    error: str | None = None
    body: str | None = None
    retry_after: float | None = None

    def to_wire(self) -> dict[str, Any]:
        from boltic_cli.models import format_time
        from boltic_cli.server.routes import from_ms

        wire: dict[str, Any] = {
            "at": format_time(from_ms(self.at_ms)),
            "outcome": str(self.outcome),
            "durationMs": self.duration_ms,
        }
        for name, value in (
            ("responseStatus", self.status),
            ("error", self.error),
            ("responseBody", self.body),
        ):
            if value is not None:
                wire[name] = value
        return wire


async def attempt(
    session: aiohttp.ClientSession,
    config: Any,
    message_id: str,
    body: bytes,
    *,
    timeout: float,
    clock: Callable[[], float] = time.time,
) -> AttemptResult:
    """POST ``body`` to ``config["url"]`` signed with ``config["signingSecret"]``, with
    ``config["headers"]``; no redirects followed. Never raises for what the network or
    the receiver did: that is the result's ``outcome`` and ``error``."""
    import aiohttp

    now = clock()
    started = time.perf_counter()
    status: int | None = None
    error = text = None
    retry_after = None
    try:
        headers = webhooks.delivery_headers(
            config.get("signingSecret") or "",
            message_id,
            body,
            timestamp=int(now),
            user_agent=USER_AGENT,
            extra=config.get("headers") or None,
        )
        async with session.post(
            config["url"],
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            text = webhooks.response_excerpt(await _head(response, webhooks.RESPONSE_KEEP_BYTES))
            if status in (429, 503):
                retry_after = webhooks.parse_retry_after(response.headers.get("Retry-After"), now)
    except TimeoutError:
        error = f"no answer within {timeout:g}s"
    except aiohttp.ClientConnectorError as e:
        error = f"cannot connect: {e.os_error.strerror or e.os_error}"
    except Exception as e:
        # Anything else (a reset mid-answer, a URL aiohttp refuses, a config that
        # cannot sign) is this attempt's error, never the worker's end.
        error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    duration = int((time.perf_counter() - started) * 1000)
    outcome = webhooks.classify(status if error is None else None)
    if status is not None and error is not None:
        # The answer started but did not finish (timeout or reset while reading).
        status = None
    return AttemptResult(int(now * 1000), duration, outcome, status, error, text, retry_after)


async def _head(response: aiohttp.ClientResponse, size: int) -> bytes:
    """Up to ``size + 1`` bytes of the answer's body (one more, so a cut is seen)."""
    data = b""
    while len(data) <= size:
        chunk = await response.content.read(size + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return data


# Seconds start() waits for the worker's loop to run.
START_TIMEOUT = 30.0


def new_session() -> aiohttp.ClientSession:
    """The worker's HTTP client: keep-alive pool, no proxies from the environment, our
    own User-Agent (set per request)."""
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        # No Accept-Encoding: an answer is kept as text (its first 2 KiB), never
        # decompressed.
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        auto_decompress=False,
        trust_env=False,
    )


@dataclass
class _Lane:
    """A destination's claimed deliveries and the requests in flight for it."""

    queue: deque[Claim] = field(default_factory=deque)
    in_flight: dict[str, Claim] = field(default_factory=dict)
    senders: int = 0
    # The destination is paused, deleted or disabled: send nothing more, give the queue
    # back (the last sender does). Cleared when it is claimed for again.
    gone: bool = False


@dataclass
class _TargetRead:
    """One ``delivery_targets`` read that senders wait for: the destinations asked for
    before it starts, and its answer (config by id)."""

    ids: set[str]
    done: asyncio.Future[dict[str, dict[str, Any]]]


class DeliveryWorker:
    """Runs in a thread of its own with its own event loop (``await start()`` ...
    ``await stop()`` from the app's lifespan). ``rng`` (uniform [0, 1)) draws the retry
    jitter; ``clock`` (seconds since the epoch) stamps attempts and due times.

    Its own thread, with a plain asyncio (selector) loop whose socket calls release the
    GIL, chosen by measurement against the same worker as a task on the serving loop
    (``settings.delivery_in_loop``, kept for that comparison; bench_delivery.py on 2
    cores shared with other work, load 5-8). Ingest's rate beside one destination was
    the same within the noise (runs in the order loop, thread, thread, loop: 0.645 vs
    0.674 of none; single runs 0.42-0.68 either way), but on the loop, while 64
    connections kept sending, the worker got too few of the loop's turns: delivery lag
    p99 9.2 s and 3.0 s, against 1.2 s in its own thread.
    """

    def __init__(
        self,
        store: Store,
        settings: ServerSettings,
        *,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        # Read at each use: a test may shorten a period while the server runs.
        self.settings = settings
        self.rng = rng
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task | None = None
        self._lanes: dict[str, _Lane] = {}
        self._senders: set[asyncio.Task] = set()
        self._results: list[AttemptRecord] = []
        # The next read of destinations (not started yet) and whether one is running.
        self._next_read: _TargetRead | None = None
        self._reading = False
        # Deliveries claimed and not yet recorded (queued, in flight, or finished and
        # waiting for the next record): when each was last claimed (time.monotonic()).
        self._held: dict[str, float] = {}
        self._wake: asyncio.Event | None = None
        self._stopping = False
        # Waiting for work: a nudge() wakes it. A nudge since the last claim: claim again.
        self._idle = False
        self._nudged = False
        # Failed tries in a row of the claim/record loop (0: the store answers).
        self._store_failures = 0
        # Counters for tests and benchmarks.
        self.attempts = 0
        self.claimed = 0
        self.target_reads = 0  # delivery_targets reads (one serves every sender waiting)

    async def start(self) -> None:
        """Start the worker's thread; returns once its loop runs. (With
        ``settings.delivery_in_loop``, a benchmark's comparison: a task on this loop.)"""
        self._stopping = False
        ready = threading.Event()
        if self.settings.delivery_in_loop:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(self._main(ready), name="boltic-delivery")
            return

        # Imported here, on the starting thread: an import that fails or deadlocks in
        # the worker's thread would end it before ``ready`` is set.
        import aiohttp  # noqa: F401

        failed: list[BaseException] = []

        def run() -> None:
            try:
                name_os_thread("boltic-delivery")
                loop = asyncio.SelectorEventLoop()
                asyncio.set_event_loop(loop)
                self._loop = loop
            except BaseException as e:
                failed.append(e)
                ready.set()
                raise
            try:
                loop.run_until_complete(self._main(ready))
            except BaseException as e:
                failed.append(e)
                raise
            finally:
                # A start that failed must not leave start() waiting for ever.
                ready.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="boltic-delivery", daemon=True)
        self._thread.start()
        if not await asyncio.to_thread(ready.wait, START_TIMEOUT):
            raise RuntimeError(f"the delivery worker did not start within {START_TIMEOUT:g} s")
        if failed:
            raise RuntimeError("the delivery worker failed to start") from failed[0]

    async def stop(self, grace: float = 2.0) -> None:
        """Stop claiming; let requests in flight finish for ``grace`` seconds (then cancel
        them: their leases expire and they are tried again), record what finished, give
        back what was never sent; then end the thread."""
        self._stopping = True
        if self._task is not None:
            self._wake_up()
            await self._task
            self._task = None
            return
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._wake_up)
        await asyncio.to_thread(self._thread.join, grace + 10)
        self._thread = None

    def _store_retry_delay(self) -> float:
        """Seconds before the next try after ``_store_failures`` failures in a row: the
        poll interval, doubled each time, at most STORE_RETRY_MAX."""
        base = self.settings.delivery_poll_interval
        return min(base * 2 ** min(self._store_failures - 1, 16), max(base, STORE_RETRY_MAX))

    def nudge(self) -> None:
        """Events were stored: wake the worker now if it is idle, instead of at its next
        poll (and if it is busy, make it look again before it waits). Costs two
        attribute accesses when it is busy; callable from any thread."""
        self._nudged = True
        loop = self._loop
        if self._idle and loop is not None:
            self._idle = False
            with contextlib.suppress(RuntimeError):  # the loop has ended
                loop.call_soon_threadsafe(self._wake_up)

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def send_test(self, config: Any, message_id: str, body: bytes) -> AttemptResult:
        """One attempt now, on the caller's loop, outside the queue (``POST .../test``);
        records nothing."""
        async with new_session() as session:
            return await attempt(
                session,
                config,
                message_id,
                body,
                timeout=self.settings.delivery_timeout,
                clock=self.clock,
            )

    async def _main(self, ready: threading.Event) -> None:
        self._wake = asyncio.Event()
        self._session = new_session()
        ready.set()
        try:
            await self._run()
        finally:
            await self._wind_down(grace=2.0)

    async def _wind_down(self, grace: float) -> None:
        if self._senders:
            _, pending = await asyncio.wait(self._senders, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # Never sent, or cancelled mid-attempt: due again now, not when the lease ends.
        unsent = [
            (c.destination_id, c.delivery_id)
            for lane in self._lanes.values()
            for c in (*lane.queue, *lane.in_flight.values())
        ]
        with contextlib.suppress(StoreError):
            await self._flush()
            if unsent:
                await self.store.release_deliveries(unsent, int(self.clock() * 1000))
        self._lanes.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    # the loop

    async def _run(self) -> None:
        while not self._stopping:
            self._nudged = False
            # Both writes are queued at once: they share the writer's next group commit.
            flushed, claimed = await asyncio.gather(
                self._flush(), self._claim(), return_exceptions=True
            )
            failure = next((x for x in (flushed, claimed) if isinstance(x, BaseException)), None)
            if failure is not None:
                if not isinstance(failure, StoreError):
                    raise failure
                # One line per outage, not one per poll (a database down for a minute
                # was ~120 lines per process); the pause doubles up to STORE_RETRY_MAX.
                if self._store_failures == 0:
                    log.warning("delivery: the store failed: %s (retrying)", failure)
                self._store_failures += 1
                await asyncio.sleep(self._store_retry_delay())
                continue
            if self._store_failures:
                log.warning(
                    "delivery: the store answers again (after %d failed tries)",
                    self._store_failures,
                )
                self._store_failures = 0
            if claimed or self._results:
                continue
            if self._nudged:
                # New events, but that claim found nothing: they may have no destination.
                # Claim again soon, not at every event (many events share one claim).
                await asyncio.sleep(NUDGE_GAP)
                continue
            assert self._wake is not None
            self._wake.clear()
            self._idle = True
            # A nudge or a stop that came since the checks above would find the worker
            # not idle yet and wake nobody: look again after saying it is idle.
            if not (self._nudged or self._stopping):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.delivery_poll_interval)
            self._idle = False

    async def _claim(self) -> int:
        busy = {d for d, lane in self._lanes.items() if len(lane.queue) >= CLAIM_BATCH}
        now = int(self.clock() * 1000)
        lease_ms = int(self.settings.delivery_lease * 1000)
        claims = await self.store.claim_deliveries(now, lease_ms, CLAIM_BATCH, busy)
        fresh = 0
        claimed_at = time.monotonic()
        for claim in claims:
            # Held already (its lease ran out while it waited here, or its attempt is not
            # recorded yet): the claim only renewed the lease.
            known = claim.delivery_id in self._held
            self._held[claim.delivery_id] = claimed_at
            if known:
                continue
            fresh += 1
            lane = self._lanes.setdefault(claim.destination_id, _Lane())
            lane.gone = False
            lane.queue.append(claim)
        for destination_id, lane in self._lanes.items():
            while lane.queue and lane.senders < MAX_IN_FLIGHT:
                lane.senders += 1
                task = asyncio.create_task(self._send_lane(destination_id, lane))
                self._senders.add(task)
                task.add_done_callback(self._senders.discard)
        self.claimed += fresh
        return fresh

    async def _flush(self) -> None:
        """Record the attempts that finished (one write). If it fails they are not
        recorded: their leases run out and the deliveries are tried again."""
        if not self._results:
            return
        records, self._results = self._results, []
        try:
            await self.store.record_attempts(
                records, int(self.settings.delivery_auto_disable * 1000)
            )
        finally:
            for record in records:
                self._held.pop(record.delivery_id, None)

    async def _target(self, destination_id: str) -> dict[str, Any] | None:
        """The destination's config as committed when this is called or later (never
        earlier): None if it is deleted, inactive or not a webhook now. Senders that ask
        while a read runs share the next one. Raises StoreError."""
        read = self._next_read
        if read is None:
            read = self._next_read = _TargetRead(set(), asyncio.get_running_loop().create_future())
            if not self._reading:
                self._reading = True
                task = asyncio.create_task(self._read_targets())
                self._senders.add(task)
                task.add_done_callback(self._senders.discard)
        read.ids.add(destination_id)
        # Shielded: a sender cancelled while waiting must not cancel the others' read.
        targets = await asyncio.shield(read.done)
        return targets.get(destination_id)

    async def _read_targets(self) -> None:
        """Run the waiting reads one after another until none waits."""
        try:
            while (read := self._next_read) is not None:
                self._next_read = None
                self.target_reads += 1
                try:
                    targets = await self.store.delivery_targets(read.ids)
                except Exception as e:
                    read.done.set_exception(e)
                    # Retrieved here too, so an answer nobody waits for any more is
                    # not reported as never retrieved.
                    read.done.exception()
                    continue
                except BaseException:
                    read.done.cancel()
                    raise
                read.done.set_result(targets)
        finally:
            self._reading = False
            if self._next_read is not None:
                # Cancelled (the worker stops) with senders waiting: they stop too.
                self._next_read.done.cancel()
                self._next_read = None

    async def _send_lane(self, destination_id: str, lane: _Lane) -> None:
        try:
            lease = self.settings.delivery_lease
            while lane.queue and not lane.gone and not self._stopping:
                # The destination as committed now, for the attempt about to start.
                try:
                    config = await self._target(destination_id)
                except Exception as e:  # StoreError, or a driver's error
                    # The claims stay queued: the next claim starts senders again, and
                    # a lease that runs out meanwhile leaves its claim to be made again.
                    log.warning("delivery: cannot read destination %s: %s", destination_id, e)
                    break
                if config is None:
                    # Paused, deleted or disabled since the claim: what is queued waits
                    # for it in the store (given back in ``finally``).
                    lane.gone = True
                    break
                if not lane.queue or lane.gone or self._stopping:
                    continue
                claim = lane.queue.popleft()
                if time.monotonic() - self._held.get(claim.delivery_id, 0.0) > 0.9 * lease:
                    # Its lease is (nearly) over: another may hold it now. Not sent; it
                    # is claimed again in turn.
                    self._held.pop(claim.delivery_id, None)
                    continue
                lane.in_flight[claim.delivery_id] = claim
                record = await self._deliver(claim, config)
                del lane.in_flight[claim.delivery_id]
                self._results.append(record)
                self._wake_up()
                if record.disable_reason is not None:
                    lane.gone = True
        finally:
            lane.senders -= 1
            if lane.gone and lane.senders == 0 and lane.queue:
                unsent = [(c.destination_id, c.delivery_id) for c in lane.queue]
                lane.queue.clear()
                for _, delivery_id in unsent:
                    self._held.pop(delivery_id, None)
                with contextlib.suppress(StoreError):
                    await self.store.release_deliveries(unsent, int(self.clock() * 1000))

    async def _deliver(self, claim: Claim, config: dict[str, Any]) -> AttemptRecord:
        """One attempt of ``claim`` with the destination's ``config`` as read for it."""
        if not webhooks.is_signing_secret(config.get("signingSecret")):
            # Its secret was edited away since the claim gave it one: sign as claimed.
            config = {**config, "signingSecret": claim.config.get("signingSecret")}
        result = await attempt(
            self.session,
            config,
            claim.delivery_id,
            claim.body.encode(),
            timeout=self.settings.delivery_timeout,
            clock=self.clock,
        )
        self.attempts += 1
        next_ms = reason = None
        if result.outcome is webhooks.Outcome.GONE:
            reason = "the receiver answered 410 Gone"
        elif result.outcome is not webhooks.Outcome.SUCCESS:
            delay = webhooks.retry_delay(
                claim.round_attempts + 1,
                schedule=self.settings.delivery_schedule,
                random=self.rng,
                retry_after=result.retry_after,
            )
            if delay is not None:
                next_ms = result.at_ms + result.duration_ms + int(delay * 1000)
        return AttemptRecord(
            delivery_id=claim.delivery_id,
            destination_id=claim.destination_id,
            at_ms=result.at_ms,
            duration_ms=result.duration_ms,
            outcome=str(result.outcome),
            response_status=result.status,
            error=result.error,
            response_body=result.body,
            next_attempt_ms=next_ms,
            disable_reason=reason,
        )
