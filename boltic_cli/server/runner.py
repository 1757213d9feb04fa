"""Run the app under uvicorn: blocking (``boltic server``, one process or ``--workers N``
under uvicorn's supervisor) or in a thread (``boltic dev``, end-to-end tests)."""

from __future__ import annotations

import errno
import logging
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boltic_cli.errors import BolticError, UsageError
from boltic_cli.server.settings import ServerSettings

if TYPE_CHECKING:
    from boltic_cli.server.dblock import DatabaseLock

GRACEFUL_SHUTDOWN_SECONDS = 10


# Libraries whose log records may carry a traceback the user did not ask for: asyncpg's
# pool logs "Failed to restore the pool connection floor; retrying" with the connect
# error's whole traceback, again and again while PostgreSQL is down.
LIBRARY_LOGGERS = ("asyncpg",)


def log_config(level: str, *, debug: bool = False) -> dict[str, Any]:
    """Everything uvicorn, the server and its libraries log goes to stderr (stdout
    carries only the URL). The libraries' records (``LIBRARY_LOGGERS``, warnings and
    up) are one line each: an exception is named with its message, its traceback shown
    only with ``debug`` (``boltic --debug server``; design.md: no traceback without it)."""

    def formatter(kind: str) -> dict[str, Any]:
        return {"()": f"uvicorn.logging.{kind}Formatter", "fmt": "%(levelprefix)s %(message)s"}

    def handler(formatter: str) -> dict[str, Any]:
        return {"()": f"{__name__}.StderrHandler", "formatter": formatter}

    logger = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    library = {"handlers": ["library"], "level": "WARNING", "propagate": False}
    one_line = {"()": f"{__name__}.one_line_formatter", "fmt": "%(levelprefix)s %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": formatter("Default"),
            "access": formatter("Access"),
            "library": formatter("Default") if debug else one_line,
        },
        "handlers": {"default": handler("default"), "library": handler("library")},
        "loggers": {
            "uvicorn": logger,
            "uvicorn.access": logger,
            "boltic": logger,
            **dict.fromkeys(LIBRARY_LOGGERS, library),
        },
    }


class StderrHandler(logging.StreamHandler):
    """A StreamHandler writing to the process's own stderr (``sys.__stderr__``), looked
    up at each record. In ``boltic server`` that is ``sys.stderr``. The log config is
    applied by every start (``boltic dev``, a server thread in a test, the ``--workers``
    supervisor), and ``ext://sys.stderr`` bound whatever stream stood in for stderr at
    that moment (a test's capture, a CliRunner's buffer): closed later, every record
    after it printed "--- Logging error ---"; left open, the server's log landed in the
    output of CLI commands run in the same process."""

    def __init__(self) -> None:
        super().__init__(sys.__stderr__ or sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.__stderr__ or sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the process's stderr


def one_line_formatter(fmt: str) -> logging.Formatter:
    """uvicorn's default formatter, but a record's exception becomes ``(Type: message)``
    at the end of its one line instead of a traceback (``log_config``)."""
    from uvicorn.logging import DefaultFormatter

    class OneLine(DefaultFormatter):
        def format(self, record: logging.LogRecord) -> str:
            error = record.exc_info[1] if record.exc_info else None
            if error is not None:
                text = " ".join(f"{type(error).__name__}: {error}".split())
                record = logging.makeLogRecord(
                    {
                        **record.__dict__,
                        "msg": f"{record.getMessage()} ({text})",
                        "args": None,
                        "exc_info": None,
                        "exc_text": None,
                    }
                )
            return super().format(record)

    return OneLine(fmt, use_colors=False)


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

    path = settings.database()
    try:
        prepare_store(settings)
    except StoreNotAvailable as e:
        raise UsageError(str(e)) from None
    except (OSError, sqlite3.Error, StoreError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UsageError(f"cannot open the database {path}: {reason}") from None


def uses_postgres(settings: ServerSettings) -> bool:
    """Whether ``settings`` store in PostgreSQL (any number of processes may share it)
    rather than in a SQLite file (one process)."""
    return settings.database_url is not None or str(settings.db_path).startswith(
        ("postgres:", "postgresql:")
    )


def check_workers(workers: int, postgres: bool) -> None:
    """Refuse ``--workers N`` (N > 1) on a SQLite database, before anything is bound or
    opened: UsageError (exit 2). design.md "Several server processes": the SQLite file
    stays the embedded default for one process."""
    if workers < 1:
        raise UsageError(f"invalid --workers {workers}: give at least 1")
    if workers > 1 and not postgres:
        raise UsageError(
            f"cannot run {workers} workers on a SQLite database: its file has one writer, "
            "held by one server process",
            hint="use --db postgresql://... for several processes",
        )


def lock_database(settings: ServerSettings, url: str) -> DatabaseLock | None:
    """Take the SQLite file's lock for this process serving at ``url`` (``None`` for a
    store that is not a file). Raises ``DatabaseInUse`` (exit 2) naming the holder."""
    from boltic_cli.server.dblock import DatabaseLock

    if uses_postgres(settings):
        return None  # PostgreSQL: any number of processes share the database
    return DatabaseLock(settings.db_path.expanduser()).acquire(url)


def tune_interpreter() -> None:
    """Once the app is built, in each serving process: a short GIL switch interval and
    the startup objects frozen out of the garbage collector.

    Events wait for their commit long enough to outlive the young GC generations, so
    under load a full collection runs about once a second. With the startup objects
    (the app, its models, the libraries) frozen out of it, it took ~5 ms instead of
    ~20 ms: sendEvent's p99 under wrk fell from ~20 ms to ~4 ms."""
    import gc
    import sys

    sys.setswitchinterval(0.0005)
    gc.collect()
    gc.freeze()


def worker_app(settings: ServerSettings, supervisor: int | None = None) -> Any:
    """The app factory each ``--workers`` process calls (uvicorn pickles
    ``functools.partial(worker_app, settings, supervisor_pid)`` into every child it
    spawns): the app from ``create_app(settings)``, with the interpreter tuned as
    ``serve`` tunes it, in a process that ends with its supervisor."""
    from boltic_cli.server.app import create_app

    end_with_parent(supervisor)
    app = create_app(settings)
    tune_interpreter()
    return app


def end_with_parent(parent: int | None) -> None:
    """Linux: ask the kernel for SIGTERM when ``parent`` dies, even by SIGKILL, so a
    worker never outlives its supervisor and keeps serving the port alone (it then
    stops as on any SIGTERM, finishing its requests). Elsewhere: nothing."""
    import os
    import sys

    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def _config(app: Any, level: str, debug: bool = False, **extra: Any) -> Any:
    """The uvicorn Config of every way we serve (one process, a worker, a thread)."""
    import uvicorn

    return uvicorn.Config(
        app,
        log_config=log_config(level, debug=debug),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        use_colors=False,
        server_header=False,
        **extra,
    )


def _server(settings: ServerSettings, on_ready: Callable[[], None], level: str) -> Any:
    import uvicorn

    from boltic_cli.server.app import create_app

    class Server(uvicorn.Server):
        stopped_by: int | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                on_ready()

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.stopped_by is None:
                self.stopped_by = sig
            super().handle_exit(sig, frame)

    return Server(_config(create_app(settings), level, settings.debug))


def serve(
    settings: ServerSettings,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Callable[[str], None] | None = None,
    *,
    log_level: str = "info",
    workers: int = 1,
) -> None:
    """Serve until SIGINT/SIGTERM (then finish in-flight requests and return);
    ``on_ready(url)`` is called once the server accepts requests.

    ``workers`` > 1 (PostgreSQL only, else UsageError before anything is bound): the
    socket is bound and the database migrated here, then that many processes serve it
    under uvicorn's supervisor (``_supervise``), ``on_ready`` called once all answer.
    Either way, once everything has stopped, ``end_as_stopped_by`` ends the command as
    the stopping signal would have (130 after SIGINT, 143 after SIGTERM), also when
    SIGINT was ignored at start (a background job of a script).
    Raises BolticError (exit 1) when the server (or a worker) fails to start."""
    check_workers(workers, uses_postgres(settings))
    sock = bind(host, port)
    url = url_for(host, sock.getsockname()[1])
    try:
        lock = lock_database(settings, url)
        prepare_database(settings)
    except BaseException:
        sock.close()
        raise
    announce = lambda: on_ready and on_ready(url)  # noqa: E731
    try:
        if workers > 1:
            _supervise(settings, sock, workers, announce, log_level)
            return
        server = _server(settings, announce, log_level)
        tune_interpreter()
        try:
            server.run(sockets=[sock])
        except SystemExit:
            raise BolticError("the server failed to start (see the log above)") from None
        if server.stopped_by is not None:
            end_as_stopped_by(server.stopped_by)
    finally:
        sock.close()
        if lock is not None:
            lock.release()


# What ``_supervise`` relies on in uvicorn.supervisors.multiprocess (0.51+; checked by
# tests/server/test_workers.py::test_the_uvicorn_supervisor_details_we_rely_on): the
# methods Multiprocess.init_processes / keep_subprocess_alive / handle_int /
# handle_term, its ``processes`` list and ``should_exit`` event, Process.pid /
# exitcode / is_ready(timeout), the signals Multiprocess.__init__ takes over, and the
# text of its "Child process [PID] died" line (dropped: ours names the exit code).
_UVICORN_DIED = re.compile(r"Child process \[\d+\] died$")
_SUPERVISOR_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGTTIN", "SIGTTOU")
_SUPERVISOR_SIGNALS += ("SIGUSR1", "SIGUSR2", "SIGWINCH")
log = logging.getLogger("boltic.server")


def how_it_ended(exitcode: int | None) -> str:
    """A process's end in words: ``exit code 1`` or ``killed by SIGKILL``."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _supervise(
    settings: ServerSettings,
    sock: socket.socket,
    workers: int,
    on_ready: Callable[[], None],
    level: str,
) -> None:
    """Run ``workers`` processes on ``sock`` under uvicorn's own supervisor
    (``uvicorn.supervisors.Multiprocess``: spawns them, health-checks them over a pipe,
    replaces one that dies, stops them all on SIGINT/SIGTERM, each finishing its
    in-flight requests). Ours on top: ``on_ready`` once every worker answers; one
    stderr line per worker that died (pid, exit code or signal, its replacement's pid);
    the signal handlers restored and the stopping signal raised again after the last
    worker ended; BolticError when a worker failed to start (uvicorn then stops)."""
    import functools
    import os

    from uvicorn.supervisors import Multiprocess

    app = functools.partial(worker_app, settings, os.getpid())
    config = _config(app, level, settings.debug, factory=True)
    config.workers = workers
    saved = {
        sig: signal.getsignal(sig)
        for name in _SUPERVISOR_SIGNALS
        if (sig := getattr(signal, name, None)) is not None
    }

    class Supervisor(Multiprocess):
        stopped_by: int | None = None
        announced = False

        def init_processes(self) -> None:
            super().init_processes()
            while not self.should_exit.is_set() and not self.announce_when_ready():
                self.handle_signals()
                if any(process.exitcode is not None for process in self.processes):
                    return  # keep_subprocess_alive reports it (and stops on a failed start)
                time.sleep(0.05)

        def announce_when_ready(self) -> bool:
            if not self.announced and all(p.is_ready(timeout=5) for p in self.processes):
                self.announced = True
                on_ready()
            return self.announced

        def keep_subprocess_alive(self) -> None:
            before = list(self.processes)
            dead = {p.pid for p in before if p.exitcode is not None}
            super().keep_subprocess_alive()
            for old, new in zip(before, self.processes, strict=False):
                if new is old:
                    continue
                why = how_it_ended(old.exitcode)
                if old.pid not in dead and old.exitcode == -signal.SIGKILL:
                    # Alive a moment ago: uvicorn killed it for not answering its ping.
                    why = (
                        f"did not answer the health check in "
                        f"{config.timeout_worker_healthcheck}s: killed"
                    )
                log.warning(f"worker {old.pid} died ({why}); started worker {new.pid}")
            if not self.should_exit.is_set():
                self.announce_when_ready()

        def handle_int(self) -> None:
            self.stopped_by = signal.SIGINT
            super().handle_int()

        def handle_term(self) -> None:
            self.stopped_by = signal.SIGTERM
            super().handle_term()

    def not_uvicorns_died_line(record: logging.LogRecord) -> bool:
        return not _UVICORN_DIED.match(record.getMessage())

    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(not_uvicorns_died_line)
    try:
        supervisor = Supervisor(config, sockets=[sock])
        supervisor.run()
    finally:
        uvicorn_log.removeFilter(not_uvicorns_died_line)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if supervisor.stopped_by is None:
        raise BolticError("a worker failed to start (see the log above)")
    end_as_stopped_by(supervisor.stopped_by)


def end_as_stopped_by(signum: int) -> None:
    """After a graceful stop on ``signum``: end the way that signal ends the command,
    through app.main's one mapping (KeyboardInterrupt: ``Interrupted``, 130; SIGTERM:
    app's handler raises ``Terminated``, 143).

    Not by re-raising the signal alone: a non-interactive shell starts background jobs
    with SIGINT ignored (SIG_IGN), uvicorn stops on it all the same, and a re-raised
    SIGINT then does nothing, so the server used to exit 0. Any other signal, or a
    SIGTERM whose handler returns or is ignored, ends with ``SystemExit(128 + signum)``."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if signal.getsignal(signum) != signal.SIG_IGN:
        signal.raise_signal(signum)  # app's SIGTERM handler raises Terminated
    raise SystemExit(128 + signum)


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
