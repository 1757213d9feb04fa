"""Shared fixtures: the real server app in-process, and the CLI run against it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# pg_server / pg_database: a throwaway PostgreSQL (tests/pg.py).
pytest_plugins = ("tests.pg",)

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def ndjson(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@pytest.fixture
def server_settings(tmp_path: Path):
    from boltic_cli.server.settings import ServerSettings

    return ServerSettings(db_path=tmp_path / "server.db", admin_token=ADMIN_TOKEN)


@pytest.fixture
def server_app(server_settings):
    from boltic_cli.server.app import create_app

    return create_app(server_settings)


@pytest.fixture
def api(server_app) -> Iterator[Any]:
    """A Starlette TestClient on the server app, authenticated as admin, base URL .../v1."""
    from fastapi.testclient import TestClient

    with TestClient(
        server_app,
        base_url="http://testserver/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as client:
        yield client


@pytest.fixture
def client(api):
    """A BolticClient talking to the in-process server as admin."""
    from boltic_cli.client import BolticClient

    with BolticClient("http://testserver/v1", ADMIN_TOKEN, transport=api._transport) as c:
        yield c


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Env vars that isolate the CLI: its own config, data and cache dirs, no colour."""
    return {
        "BOLTIC_CONFIG_DIR": str(tmp_path / "config"),
        "BOLTIC_DATA_DIR": str(tmp_path / "data"),
        "BOLTIC_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "120",
        "NO_COLOR": "1",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
    }


@pytest.fixture
def run_cli(cli_env):
    """Run ``boltic ARGS`` in-process; ``transport`` routes HTTP to an app if given."""
    from typer.testing import CliRunner

    from boltic_cli.app import app
    from boltic_cli.context import Environment

    def run(
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        transport: Any = None,
        tty: bool = False,
        sleep: Any = None,
        clock: Any = None,
    ) -> CliResult:
        environ = {**cli_env, **(env or {})}
        environment = Environment(
            environ=environ,
            stdin_isatty=tty,
            stdout_isatty=tty,
            stderr_isatty=tty,
            transport=transport,
        )
        if sleep is not None:
            environment.sleep = sleep
        if clock is not None:
            environment.clock = clock
        result = CliRunner().invoke(app, list(args), input=input, obj=environment)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def cli(run_cli, api):
    """Run ``boltic ARGS`` against the in-process server as admin."""

    def run(*args: str, **kwargs: Any) -> CliResult:
        env = {
            "BOLTIC_API_URL": "http://testserver/v1",
            "BOLTIC_TOKEN": ADMIN_TOKEN,
            **kwargs.pop("env", {}),
        }
        return run_cli(*args, env=env, transport=api._transport, **kwargs)

    return run


@pytest.fixture
def memory_keyring():
    """The system keyring replaced by an in-memory one (``.entries``, ``.reads``)."""
    import keyring

    from tests.support import MemoryKeyring

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def no_keyring():
    """No keyring backend at all, as on a headless CI machine."""
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)
