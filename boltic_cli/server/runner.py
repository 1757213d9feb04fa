"""Run the app under uvicorn: blocking (``boltic server``) or in a thread (``boltic dev``,
end-to-end tests)."""

from __future__ import annotations

import errno
import socket
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boltic_cli.errors import BolticError, UsageError
from boltic_cli.server.settings import ServerSettings

if TYPE_CHECKING:
    from boltic_cli.server.dblock import DatabaseLock

GRACEFUL_SHUTDOWN_SECONDS = 10


def log_config(level: str) -> dict[str, Any]:
    """Everything uvicorn and the server log goes to stderr (stdout carries only the URL)."""

    def formatter(kind: str) -> dict[str, Any]:
        return {"()": f"uvicorn.logging.{kind}Formatter", "fmt": "%(levelprefix)s %(message)s"}

    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "stream": "ext://sys.stderr",
    }
    logger = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter("Default"), "access": formatter("Access")},
        "handlers": {"default": handler},
        "loggers": {"uvicorn": logger, "uvicorn.access": logger, "boltic": logger},
    }


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket, or a one-line error saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise UsageError(f"cannot resolve host {host!r}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        # A port that cannot be had is a choice the user makes again (exit 2),
        # whatever holds it (issue 12).
        if e.errno == errno.EADDRINUSE:
            raise UsageError(
                f"cannot listen on {host}:{port}: the port is in use",
                hint="choose another with --port, or --port 0 for a free one",
            ) from None
        raise UsageError(
            f"cannot listen on {host}:{port}: {e.strerror}",
            hint="choose another with --port, or --port 0 for a free one",
        ) from None
    sock.set_inheritable(True)
    return sock


def prepare_database(settings: ServerSettings) -> None:
    """Open and migrate the database before serving, so a bad path or a newer schema is
    one clear error instead of a failed startup with a traceback."""
    from boltic_cli.server.store import StoreError, StoreNotAvailable, prepare_store

    path = settings.db_path
    try:
        prepare_store(settings)
    except StoreNotAvailable as e:
        raise UsageError(str(e)) from None
    except (OSError, sqlite3.Error, StoreError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UsageError(f"cannot open the database {path}: {reason}") from None


def lock_database(settings: ServerSettings, url: str) -> DatabaseLock | None:
    """Take the SQLite file's lock for this process serving at ``url`` (``None`` for a
    store that is not a file). Raises ``DatabaseInUse`` (exit 2) naming the holder."""
    from boltic_cli.server.dblock import DatabaseLock

    if str(settings.db_path).startswith(("postgres:", "postgresql:")):
        return None
    return DatabaseLock(settings.db_path.expanduser()).acquire(url)


def _server(settings: ServerSettings, on_ready: Callable[[], None], level: str) -> Any:
    import uvicorn

    from boltic_cli.server.app import create_app

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                on_ready()

    config = uvicorn.Config(
        create_app(settings),
        log_config=log_config(level),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        use_colors=False,
        server_header=False,
    )
    return Server(config)


def serve(
    settings: ServerSettings,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Callable[[str], None] | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve until SIGINT/SIGTERM (then finish in-flight requests and return);
    ``on_ready(url)`` is called once the server accepts requests."""
    sock = bind(host, port)
    url = url_for(host, sock.getsockname()[1])
    try:
        lock = lock_database(settings, url)
        prepare_database(settings)
    except BaseException:
        sock.close()
        raise
    import gc
    import sys

    sys.setswitchinterval(0.0005)
    server = _server(settings, lambda: on_ready and on_ready(url), log_level)
    # Events wait for their commit long enough to outlive the young GC generations,
    # so under load a full collection runs about once a second. With the startup
    # objects (the app, its models, the libraries) frozen out of it, it took ~5 ms
    # instead of ~20 ms: sendEvent's p99 under wrk fell from ~20 ms to ~4 ms.
    gc.collect()
    gc.freeze()
    try:
        server.run(sockets=[sock])
    except SystemExit:
        raise BolticError("the server failed to start (see the log above)") from None
    finally:
        sock.close()
        if lock is not None:
            lock.release()


@dataclass
class ServerHandle:
    url: str
    _server: Any
    _thread: threading.Thread
    _sock: socket.socket
    _lock: DatabaseLock | None = None

    def stop(self, timeout: float = GRACEFUL_SHUTDOWN_SECONDS + 5) -> None:
        """Finish in-flight requests, close the store, and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    settings: ServerSettings, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> ServerHandle:
    """Start serving in a background thread; returns once it accepts requests.

    Raises ``DatabaseInUse`` when another process serves the same SQLite file."""
    sock = bind(host, port)
    try:
        lock = lock_database(settings, url_for(host, sock.getsockname()[1]))
        prepare_database(settings)
    except BaseException:
        sock.close()
        raise
    ready = threading.Event()
    server = _server(settings, ready.set, log_level)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=run, name="boltic-server", daemon=True)
    thread.start()
    while not ready.wait(0.05):
        if not thread.is_alive():
            sock.close()
            if lock is not None:
                lock.release()
            raise BolticError("the server failed to start") from (failure[0] if failure else None)
    return ServerHandle(url_for(host, sock.getsockname()[1]), server, thread, sock, lock)
