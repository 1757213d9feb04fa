"""One server process per SQLite file: a lock file beside the database.

design.md ("Several server processes"): two processes on one SQLite file are refused;
the second says which process holds it (pid and URL, kept in the lock file) and exits
2, and `boltic dev` attaches to that server instead. Two processes on one file would
each cache sources and write keys (a deleted source's key would still work on the
other), so the file has one owner.

The lock is ``flock`` on ``<db>.lock``: the kernel drops it when the holder exits, even
on SIGKILL, so a stale file never blocks a restart. Where ``fcntl`` does not exist
(Windows, best effort) no lock is taken.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from boltic_cli.errors import UsageError


@dataclass(frozen=True)
class Holder:
    """Who holds a database: its process id and API URL (as the lock file says)."""

    pid: int | None
    url: str | None


class DatabaseInUse(UsageError):
    """Another process serves this SQLite file (exit 2); ``holder`` says which."""

    def __init__(self, db_path: Path, holder: Holder) -> None:
        who = f"pid {holder.pid}" if holder.pid else "another process"
        where = f" at {holder.url}" if holder.url else ""
        super().__init__(
            f"the database {db_path} is in use by boltic server {who}{where}",
            hint="use that server, or give this one its own --db",
        )
        self.holder = holder


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


def read_holder(db_path: Path) -> Holder | None:
    """The holder written in the lock file, when the file is there and locked by a live
    process; ``None`` when nobody holds the database."""
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _try_lock(fd, shared=True):
            return None  # nobody holds it exclusively
        return _parse(os.read(fd, 4096))
    finally:
        os.close(fd)


class DatabaseLock:
    """The exclusive lock on a database file, held until ``release()`` or exit.

    ``acquire(url)`` raises ``DatabaseInUse`` when another live process holds it, and
    ``UsageError`` when the lock file cannot be made (the database's folder is unusable).
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._fd: int | None = None

    def acquire(self, url: str) -> DatabaseLock:
        path = lock_path(self.db_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise UsageError(
                f"cannot open the database {self.db_path}: {e.strerror or e}"
            ) from None
        if not _try_lock(fd, shared=False):
            holder = _parse(os.read(fd, 4096)) or Holder(None, None)
            os.close(fd)
            raise DatabaseInUse(self.db_path, holder)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "url": url}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int, *, shared: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    if shared:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def _parse(data: bytes) -> Holder | None:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    pid = value.get("pid")
    url = value.get("url")
    return Holder(pid if isinstance(pid, int) else None, url if isinstance(url, str) else None)
