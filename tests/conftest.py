"""Shared fixtures: the real server app in-process, and the CLI run against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import AppTransport, CliResult, invoke_cli


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal delivers it, whatever launched the suite. A shell starting a
    command in the background without job control (`.ci/run &` in a script) leaves
    SIGINT ignored, and an ignored signal stays ignored in every process started from
    here: the CLI subprocesses the signal tests send SIGINT to would never see it.
    Python's own handler instead is reset to the default in each child."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


__all__ = ["ADMIN_TOKEN", "CliResult"]

# pg_server / pg_database: a throwaway PostgreSQL (tests/pg.py).
pytest_plugins = ("tests.pg",)

ADMIN_TOKEN = "test-admin-token-0123456789"


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
def source(api) -> dict:
    """A javascript source named ``web``, created through the API (its JSON, write key
    included). tests/server has its own (``make_source``)."""
    response = api.post("/streams/sources", json={"name": "web", "type": "javascript"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def client(api):
    """A BolticClient talking to the in-process server as admin."""
    from boltic_cli.client import BolticClient

    with BolticClient("http://testserver/v1", ADMIN_TOKEN, transport=AppTransport(api)) as c:
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
        # Commands that page on a terminal do not, unless a test asks (tty=True is a
        # pretend terminal: a real pager would write past the captured stdout).
        "BOLTIC_PAGER": "",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
    }


@pytest.fixture
def run_cli(cli_env):
    """Run ``boltic ARGS`` in-process; ``transport`` routes HTTP to an app if given."""

    def run(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> CliResult:
        return invoke_cli(*args, environ={**cli_env, **(env or {})}, **kwargs)

    return run


@pytest.fixture
def api_transport(api) -> AppTransport:
    """The in-process server as an httpx transport (for a BolticClient or the CLI)."""
    return AppTransport(api)


@pytest.fixture
def cli(run_cli, api):
    """Run ``boltic ARGS`` against the in-process server as admin."""

    def run(*args: str, **kwargs: Any) -> CliResult:
        env = {
            "BOLTIC_API_URL": "http://testserver/v1",
            "BOLTIC_TOKEN": ADMIN_TOKEN,
            **kwargs.pop("env", {}),
        }
        return run_cli(*args, env=env, transport=AppTransport(api), **kwargs)

    return run


@pytest.fixture
def spawn_boltic() -> Iterator[Any]:
    """``start(*args, env=..., **popen_kwargs)``: the installed ``boltic ARGS`` as a
    subprocess (text pipes, stdin closed unless given); every one is reaped (killed if
    still running, pipes closed) when the test ends."""
    import subprocess

    from tests.support import BOLTIC, reap

    started: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str], **kwargs: Any) -> subprocess.Popen:
        options = {
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
            "stdin": subprocess.DEVNULL,
            "text": True,
        }
        process = subprocess.Popen([BOLTIC, *args], env=env, **{**options, **kwargs})
        started.append(process)
        return process

    yield start
    for process in started:
        reap(process)


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


# Tests that are slow although not e2e (seconds each: fuzzing, big inputs), by node-id
# prefix. A test file may also mark its own with @pytest.mark.slow.
SLOW_MODULES = (
    "tests/conformance/",
    "tests/test_events_send.py::test_file_of_2000_with_3_broken_lines",
    "tests/cli_faults/test_input_faults.py::test_file_turning_non_utf8_late",
)


def pytest_collection_modifyitems(config, items):
    """Every e2e test (a subprocess: a server, the installed boltic) and every test of
    SLOW_MODULES is also ``slow``, so ``pytest -m "not slow"`` is the quick inner loop.
    CI runs everything (README's test command selects no marker)."""
    slow = pytest.mark.slow
    for item in items:
        path = item.nodeid.replace("\\", "/")
        if item.get_closest_marker("e2e") is not None or path.startswith(SLOW_MODULES):
            item.add_marker(slow)
