"""The startup budget: what `boltic` imports for help, version, completion and -o json.

Each case runs `python -X importtime -m boltic_cli ...` in a subprocess and reads the
modules it imported from stderr, so an import added at module level anywhere on the
path shows up here by name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import start_server, stop_server

pytestmark = pytest.mark.e2e

HEAVY = ("httpx", "pydantic", "keyring", "fastapi", "uvicorn", "starlette", "rich", "yaml")


def imported_modules(args: list[str], env: dict[str, str]) -> tuple[set[str], str]:
    """Every module the command imported, and its stdout."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "boltic_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "boltic_cli" in names, proc.stderr[-2000:]
    return names, proc.stdout


def heavy_in(names: set[str], packages: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in packages)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["sources", "--help"]])
def test_help_and_version_import_nothing_heavy(cli_env, args):
    names, stdout = imported_modules(args, cli_env)

    assert stdout.strip()
    assert heavy_in(names) == []
    assert "boltic_cli.client" not in names


def test_help_loads_no_command_group(cli_env):
    names, _ = imported_modules(["--help"], cli_env)

    assert [n for n in names if n.startswith("boltic_cli.commands.")] == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("boltic ", "sources"),
        ("boltic sources ", "delete"),
        ("boltic sources create --type ", "webhook"),
        ("boltic sources list -o ", "ndjson"),
        ("boltic --profile ", "local"),
        ("boltic debug tail --type ", "page_view"),
    ],
)
def test_static_completion_imports_nothing_heavy(cli_env, line, expected):
    env = {**cli_env, "_BOLTIC_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": line}

    names, stdout = imported_modules([], env)

    assert expected in stdout
    assert heavy_in(names) == []


@pytest.fixture
def server_url(tmp_path: Path, cli_env) -> Iterator[str]:
    env = {**os.environ, **cli_env, "BOLTIC_SERVER_TOKEN": ADMIN_TOKEN}
    process, url = start_server(tmp_path / "s.db", env)
    try:
        yield url
    finally:
        stop_server(process)


def test_json_listing_needs_no_rich_yaml_or_keyring(cli_env, server_url):
    env = {**cli_env, "BOLTIC_API_URL": server_url, "BOLTIC_TOKEN": ADMIN_TOKEN}

    names, stdout = imported_modules(["sources", "list", "-o", "json"], env)

    assert stdout.strip() == "[]"
    assert heavy_in(names, ("rich", "yaml", "keyring", "fastapi", "uvicorn", "starlette")) == []
    # Typer would build pydantic validators for plain str/bool options.
    assert "typer._adapters" not in names


def test_local_profile_reads_no_keyring(cli_env, server_url, tmp_path):
    data = Path(cli_env["BOLTIC_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    (data / "admin-token").write_text(ADMIN_TOKEN)
    env = {**cli_env, "BOLTIC_API_URL": server_url}

    names, stdout = imported_modules(["sources", "list", "-o", "json"], env)

    assert stdout.strip() == "[]"
    assert heavy_in(names, ("keyring",)) == []


def test_source_completion_with_the_api_down_imports_no_server(cli_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **cli_env,
        "BOLTIC_API_URL": f"http://127.0.0.1:{port}/v1",
        "BOLTIC_TOKEN": "t",
        "_BOLTIC_COMPLETE": "complete_fish",
        "_TYPER_COMPLETE_FISH_ACTION": "get-args",
        "_TYPER_COMPLETE_ARGS": "boltic sources get ",
    }

    names, stdout = imported_modules([], env)

    assert stdout.strip() == ""
    assert heavy_in(names, ("rich", "yaml", "keyring", "fastapi", "uvicorn")) == []
