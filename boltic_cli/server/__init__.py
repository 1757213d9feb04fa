"""The local Streams server: the spec's API on SQLite (installed with the ``server`` extra)."""

from __future__ import annotations

import importlib.util


def require_server_extra() -> None:
    """Fail in one line, before any side effect, when the ``server`` extra is missing."""
    from boltic_cli.errors import UsageError

    for module in ("fastapi", "uvicorn", "aiohttp"):
        if importlib.util.find_spec(module) is None:
            raise UsageError(
                f"the local server needs {module}, which is not installed",
                hint="pip install 'boltic-cli[server]'",
            )
