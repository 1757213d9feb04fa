"""Where boltic keeps its files: config, data (local server db and admin token), cache."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "boltic"


def _dir(environ: Mapping[str, str], var: str, kind: str) -> Path:
    if environ.get(var):
        return Path(environ[var]).expanduser()
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")(APP_NAME))


def config_dir(environ: Mapping[str, str]) -> Path:
    """``$BOLTIC_CONFIG_DIR`` or the platform config dir (``~/.config/boltic``)."""
    return _dir(environ, "BOLTIC_CONFIG_DIR", "config")


def data_dir(environ: Mapping[str, str]) -> Path:
    """``$BOLTIC_DATA_DIR`` or the platform data dir (``~/.local/share/boltic``)."""
    return _dir(environ, "BOLTIC_DATA_DIR", "data")


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``$BOLTIC_CACHE_DIR`` or the platform cache dir (``~/.cache/boltic``)."""
    return _dir(environ, "BOLTIC_CACHE_DIR", "cache")


def local_token_file(environ: Mapping[str, str]) -> Path:
    """The admin token shared by every ``boltic server`` started without ``--token``."""
    return data_dir(environ) / "admin-token"


def default_db_file(environ: Mapping[str, str]) -> Path:
    return data_dir(environ) / "boltic.db"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically, creating parent dirs (0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
