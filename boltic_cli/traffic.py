"""Realistic sample traffic: page views, signups, purchases from a stable pool of users.

Used by ``events generate`` (demos and load) and ``boltic dev --demo``, both through
``TrafficRunner`` (a background thread that can be stopped and reports a
``TrafficSummary``). Events go through the bulk sender (``sender.py``). An engine:
it never prints.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from boltic_cli.errors import (
    AuthenticationFailed,
    BadRequest,
    BolticError,
    NotFound,
    PermissionDenied,
)
from boltic_cli.sender import FATAL_ERRORS, SendFigures

# Weights of the built-in event types: most traffic is browsing.
TYPE_WEIGHTS = {
    "page_view": 60,
    "add_to_cart": 12,
    "signup": 8,
    "purchase": 8,
    "login": 7,
    "search": 5,
}

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
]

PAGES = [
    ("/", "Acme Outfitters - Gear for every trail"),
    ("/products/trail-runner-2", "Trail Runner 2 | Acme Outfitters"),
    ("/products/summit-jacket", "Summit Jacket | Acme Outfitters"),
    ("/products/basecamp-tent", "Basecamp 4P Tent | Acme Outfitters"),
    ("/collections/sale", "Sale | Acme Outfitters"),
    ("/blog/packing-list", "The only packing list you need | Acme Journal"),
    ("/cart", "Your cart | Acme Outfitters"),
    ("/checkout", "Checkout | Acme Outfitters"),
    ("/pricing", "Pricing | Acme Outfitters"),
]
SITE = "https://shop.acme-outfitters.example"
REFERRERS = [
    "",
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://t.co/",
    "https://www.facebook.com/",
    "https://news.ycombinator.com/",
]
PRODUCTS = [
    ("sku_trail_runner_2", "Trail Runner 2", 129.0),
    ("sku_summit_jacket", "Summit Jacket", 249.0),
    ("sku_basecamp_tent", "Basecamp 4P Tent", 399.0),
    ("sku_merino_socks", "Merino Socks (3 pack)", 29.5),
    ("sku_headlamp", "Lumen 400 Headlamp", 44.99),
]
CURRENCIES = [("USD", 1.0), ("EUR", 0.92), ("GBP", 0.79), ("INR", 83.3), ("JPY", 155.0)]
LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "hi-IN", "ja-JP", "es-ES"]
PLANS = ["free", "starter", "pro"]
SEARCHES = ["rain jacket", "tent 2 person", "trail shoes size 10", "headlamp", "gift card"]
KNOWN_USER_SHARE = 0.7  # the rest browse anonymously


@dataclass(frozen=True)
class SampleUser:
    """A visitor: the same ids, browser and locale on every event they send."""

    anonymous_id: str
    user_id: str | None
    user_agent: str
    locale: str
    email: str | None


def make_users(rng: random.Random, count: int = 40) -> list[SampleUser]:
    """A pool of visitors; ids come from ``rng`` so a seed reproduces them."""
    users = []
    for n in range(count):
        anonymous_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        known = rng.random() < KNOWN_USER_SHARE
        user_id = f"user_{rng.getrandbits(40):010x}" if known else None
        users.append(
            SampleUser(
                anonymous_id=anonymous_id,
                user_id=user_id,
                user_agent=rng.choice(USER_AGENTS),
                locale=rng.choice(LOCALES),
                email=f"shopper{n}@example.com" if known else None,
            )
        )
    return users


def _page_context(rng: random.Random, path: str | None = None) -> dict[str, str]:
    if path is None:
        path, title = rng.choice(PAGES)
    else:
        title = dict(PAGES).get(path, "Acme Outfitters")
    referrer = rng.choice(REFERRERS)
    page = {"url": SITE + path, "title": title}
    if referrer:
        page["referrer"] = referrer
    return page


def _properties(rng: random.Random, event_type: str, page: dict[str, str]) -> dict[str, Any]:
    if event_type == "page_view":
        return {"path": page["url"].removeprefix(SITE), "title": page["title"]}
    if event_type == "purchase":
        currency, per_usd = rng.choice(CURRENCIES)
        items = rng.sample(PRODUCTS, k=rng.randint(1, 3))
        amount = sum(price for _, _, price in items) * per_usd
        return {
            "orderId": f"ord_{rng.getrandbits(48):012x}",
            "amount": round(amount, 0 if currency == "JPY" else 2),
            "currency": currency,
            "items": [{"sku": sku, "name": name} for sku, name, _ in items],
        }
    if event_type == "add_to_cart":
        sku, name, price = rng.choice(PRODUCTS)
        return {"sku": sku, "name": name, "price": price, "quantity": rng.randint(1, 3)}
    if event_type == "signup":
        return {"plan": rng.choice(PLANS), "method": rng.choice(["email", "google", "github"])}
    if event_type == "login":
        return {"method": rng.choice(["password", "google", "magic_link"])}
    if event_type == "search":
        return {"query": rng.choice(SEARCHES), "results": rng.randint(0, 48)}
    return {"sample": True}


def _page_for(event_type: str) -> str | None:
    return {"purchase": "/checkout", "add_to_cart": "/cart", "signup": "/pricing"}.get(event_type)


def make_event(
    rng: random.Random,
    source_id: str,
    users: list[SampleUser],
    now: datetime,
    *,
    event_type: str | None = None,
) -> dict[str, Any]:
    """One EventInput wire dict from a random visitor of ``users`` at ``now``."""
    from boltic_cli.models import format_time

    user = rng.choice(users)
    if event_type is None:
        event_type = rng.choices(list(TYPE_WEIGHTS), weights=list(TYPE_WEIGHTS.values()))[0]
    page = _page_context(rng, _page_for(event_type))
    properties = _properties(rng, event_type, page)
    event: dict[str, Any] = {
        "sourceId": source_id,
        "type": event_type,
        "properties": properties,
        "anonymousId": user.anonymous_id,
        "timestamp": format_time(now),
        "context": {"userAgent": user.user_agent, "locale": user.locale, "page": page},
    }
    if user.user_id is not None:
        event["userId"] = user.user_id
    return event


# Errors of a whole request that mean every further send fails the same way: the
# bulk sender's own (``sender.FATAL_ERRORS``: a refused token, an unreachable server,
# as for ``events send --file``), plus a missing source or a rejected body, which
# for generated events would be the same for all of them.
FATAL_SEND_ERRORS: tuple[type[BolticError], ...] = (
    *FATAL_ERRORS,
    AuthenticationFailed,
    PermissionDenied,
    NotFound,
    BadRequest,
)


@dataclass
class TrafficSummary(SendFigures):
    """What a run of sample traffic did; ``seconds`` is clock time since it started.

    The sender's figures (``sender.SendFigures``): ``to_dict()`` is what ``-o json``
    prints, the same shape and rate rule as ``events send``'s summary.
    ``first_failure`` is the first failed event's error (``SendFailure.error``:
    ``{"code", "message", "details"}``), None while none failed: the reason a
    command shows, where ``events send --file`` shows each failed line.
    """

    first_failure: dict[str, Any] | None = None


# The longest an event waits for others to fill a batch when traffic is paced.
LINGER_SECONDS = 0.05
# Per-event answers that mean every further event fails the same way.
FATAL_ITEM_STATUSES = frozenset({400, 401, 403, 404})
# After ``duration`` (plus this, so that a run ending by itself sends its last partial
# batch) the sender is stopped: events waiting behind a slow or failing server are
# dropped unsent, and only the requests already in flight are waited for.
DEADLINE_GRACE_SECONDS = 0.1
# How often the deadline and the stop event are looked at while the sender is busy.
WATCH_SECONDS = 0.05


def run_traffic(
    client: Any,
    source_id: str,
    *,
    rate: float | None,
    count: int | None,
    duration: float | None,
    types: list[str] | None,
    on_sent: Callable[[dict], None] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    seed: int | None = None,
    summary: TrafficSummary | None = None,
    concurrency: int | None = None,
) -> TrafficSummary:
    """Send sample events until ``count``, ``duration`` (seconds) or ``stop``; return the summary.

    ``client`` is a ``BolticClient``; the events go through the bulk sender
    (``sender.BulkSender``: batches when the server offers them, else single POSTs,
    ``concurrency`` worker threads), so the rate can reach thousands per second.
    ``rate`` is events per second (``None``: as fast as the server takes them);
    paced events wait at most ``LINGER_SECONDS`` for a batch to fill.
    ``on_sent`` gets each accepted event's wire dict with ``eventId`` added (from a
    worker thread). Transient failures (5xx, 429 after the client's retries with
    backoff) are counted and sending goes on; an unreachable server, a refused token,
    a missing source or a rejected body raises (``FATAL_SEND_ERRORS``, or an event
    rejected with one of ``FATAL_ITEM_STATUSES``) once the requests in flight end.
    ``duration`` and ``stop`` also end a run that is stuck behind a slow or failing
    server: events not yet sent are dropped (``DEADLINE_GRACE_SECONDS``).
    ``summary``, when given, is kept current as events go (so another thread can
    read it); when anything (Ctrl-C included) ends the run early, the summary so
    far is also attached to the exception as ``traffic_summary``.
    """
    from boltic_cli.errors import error_for_status
    from boltic_cli.sender import FLUSH, BulkSender, InputItem, SendFailure, SendSummary

    rng = random.Random(seed)
    users = make_users(rng)
    started = clock()
    summary = summary if summary is not None else TrafficSummary()
    refused: list[BolticError] = []

    def events() -> Iterator[Any]:
        attempt = 0
        flushed = clock()
        while not _done(attempt, count, started, duration, clock, stop) and not refused:
            if rate:
                when = started + attempt / rate
                now = clock()
                if when > now and (when - now >= LINGER_SECONDS or now - flushed >= LINGER_SECONDS):
                    yield FLUSH  # do not hold the events so far while waiting
                    flushed = now
                _wait_until(when, clock, sleep, stop)
                if _done(attempt, count, started, duration, clock, stop):
                    break
            event_type = rng.choice(types) if types else None
            attempt += 1
            event = make_event(rng, source_id, users, datetime.now(UTC), event_type=event_type)
            yield InputItem(attempt, body=event)

    def sent(progress: SendSummary) -> None:
        summary.sent = progress.sent
        summary.seconds = max(clock() - started, 0.0)

    def failed(failure: SendFailure) -> None:
        summary.failed += 1
        if summary.first_failure is None:
            summary.first_failure = failure.error
        code = failure.error.get("code")
        if code in FATAL_ITEM_STATUSES and not refused:
            error = failure.error
            refused.append(error_for_status(code, error["message"], error.get("details")))
            sender.stop()

    accepted = None
    if on_sent is not None:
        report = on_sent

        def accepted(item: InputItem, event_id: str) -> None:
            report({**(item.body or {}), "eventId": event_id})

    sender = BulkSender(
        client,
        concurrency=concurrency,
        on_sent=sent,
        on_failure=failed,
        on_accepted=accepted,
        fatal=FATAL_SEND_ERRORS,
    )
    finished = threading.Event()

    def watch() -> None:
        # The feeding thread can wait on a full queue while a failing server holds
        # every worker: stop the sender itself at the deadline or when asked.
        while not finished.wait(WATCH_SECONDS):
            late = duration is not None and clock() - started >= duration + DEADLINE_GRACE_SECONDS
            if late or (stop is not None and stop.is_set()):
                sender.stop()
                return

    watcher = threading.Thread(target=watch, name="boltic-traffic-deadline", daemon=True)
    watcher.start()
    try:
        try:
            sender.run(events())
        finally:
            finished.set()
        if refused:
            raise refused[0]
    except BaseException as e:
        summary.sent = sender.summary().sent
        summary.seconds = max(clock() - started, 0.0)
        e.traffic_summary = summary  # type: ignore[attr-defined]
        raise
    summary.sent = sender.summary().sent
    summary.seconds = max(clock() - started, 0.0)
    return summary


@dataclass
class TrafficRunner:
    """Sample traffic from a background thread: the one way commands run ``run_traffic``.

    ``with TrafficRunner(client, source_id, ...) as runner:`` starts it; leaving the
    block stops it (at once: a paced wait wakes on the stop) and joins the thread.
    ``wait()`` blocks until it ends by itself while leaving the calling thread free
    to receive Ctrl-C and SIGTERM; ``stop()`` ends it early and marks the summary
    ``interrupted``. ``client`` must not be used by another thread meanwhile.
    ``error`` is what ended the run, if it failed (``wait()`` raises it).
    """

    client: Any
    source_id: str
    rate: float | None = None
    count: int | None = None
    duration: float | None = None
    types: list[str] | None = None
    on_sent: Callable[[dict], None] | None = None
    summary: TrafficSummary = field(default_factory=TrafficSummary)
    error: BaseException | None = None
    poll_seconds: float = 0.2
    stop_timeout: float | None = None  # longest wait for the thread when the block ends
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    # Set by the thread itself when it ends: after a Ctrl-C interrupted a join(),
    # Thread.is_alive() can wrongly say False (CPython), so it is not trusted here.
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> TrafficRunner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(self.stop_timeout)

    def start(self) -> None:
        """Start sending from a daemon thread."""
        self._thread = threading.Thread(target=self._work, name="boltic-traffic", daemon=True)
        self._thread.start()

    def wait(self) -> TrafficSummary:
        """Block until the run ends by itself (count, duration); raise what failed it."""
        assert self._thread is not None, "start() first"
        while not self._finished.wait(self.poll_seconds):
            pass
        if self.error is not None:
            raise self.error
        return self.summary

    def stop(self, timeout: float | None = None) -> TrafficSummary:
        """End the run (if still going: the summary is marked ``interrupted``) and wait for
        the thread, at most ``timeout`` seconds (a send stuck in a slow request is left
        to its daemon thread then)."""
        if self._thread is not None and not self._finished.is_set():
            self._stop.set()
            self._finished.wait(timeout)
            self.summary.interrupted = True
        return self.summary

    def _work(self) -> None:
        try:
            run_traffic(
                self.client,
                self.source_id,
                rate=self.rate,
                count=self.count,
                duration=self.duration,
                types=self.types,
                on_sent=self.on_sent,
                stop=self._stop,
                summary=self.summary,
            )
        except BaseException as e:
            self.error = e
        finally:
            self._finished.set()


def _done(
    attempt: int,
    count: int | None,
    started: float,
    duration: float | None,
    clock: Callable[[], float],
    stop: threading.Event | None,
) -> bool:
    if count is not None and attempt >= count:
        return True
    if duration is not None and clock() - started >= duration:
        return True
    return stop is not None and stop.is_set()


def _wait_until(
    when: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    stop: threading.Event | None,
) -> None:
    delay = when - clock()
    if delay <= 0:
        return
    if stop is not None and sleep is time.sleep:
        stop.wait(delay)  # wakes at once when asked to stop
    else:
        sleep(delay)
