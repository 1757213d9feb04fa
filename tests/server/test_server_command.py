"""`boltic server` and `boltic dev` as a newcomer runs them: what --db accepts, and the
exit status after SIGINT when the server was started in the background by a script.

Real subprocesses (tests/support.py ServerProcess), real SQLite files, a real
PostgreSQL (tests/pg.py) where one is needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import ServerProcess

PASSWORD = "s3cret-pw"
MISTYPED = [
    f"mysql://boltic:{PASSWORD}@127.0.0.1:55439/boltic",
    f"postgresq://boltic:{PASSWORD}@127.0.0.1:55439/boltic",
    "sqlite:///tmp/x.db",
]


def run_boltic(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    home = tmp_path / "home"
    environ = {
        **{k: v for k, v in os.environ.items() if k != "BOLTIC_DATABASE_URL"},
        "HOME": str(home),
        "BOLTIC_CONFIG_DIR": str(home / "config"),
        "BOLTIC_DATA_DIR": str(home / "data"),
        "BOLTIC_CACHE_DIR": str(home / "cache"),
        "NO_COLOR": "1",
        **(env or {}),
    }
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "boltic_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        cwd=work,
        stdin=subprocess.DEVNULL,
    )
    return result, work, home


@pytest.mark.parametrize("url", MISTYPED)
@pytest.mark.parametrize(
    "command",
    [
        ("server", "--port", "0"),
        ("server", "--port", "0", "--workers", "2"),
        ("dev", "--port", "0"),
    ],
    ids=["server", "workers", "dev"],
)
def test_a_database_url_of_another_scheme_is_refused_not_taken_as_a_path(tmp_path, url, command):
    result, work, home = run_boltic(tmp_path, *command, "--db", url)

    scheme = url.split("://")[0]
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert f"unsupported database URL scheme '{scheme}://'" in line
    assert "postgresql://, postgres://, or a SQLite file path" in line
    assert PASSWORD not in result.stderr
    assert "workers" not in line  # the URL is not taken as a SQLite path
    # Nothing created: no SQLite file named like the URL, no token file.
    assert list(work.iterdir()) == []
    assert not (home / "data" / "admin-token").exists()


def test_the_environment_variable_is_checked_the_same_way(tmp_path):
    url = f"mysql://boltic:{PASSWORD}@127.0.0.1:55439/boltic"
    result, work, _ = run_boltic(
        tmp_path, "server", "--port", "0", env={"BOLTIC_DATABASE_URL": url}
    )
    assert result.returncode == 2, result.stderr
    assert "unsupported database URL scheme 'mysql://'" in result.stderr
    assert PASSWORD not in result.stderr
    assert list(work.iterdir()) == []


def ignore_sigint() -> None:
    """What a non-interactive shell does for a job it starts with `&`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sigint_ends_a_background_server_with_130(tmp_path):
    # bash -c 'boltic server ... & kill -INT $!': SIGINT is ignored at start, uvicorn
    # still stops on it; the exit status must still say so.
    with ServerProcess(
        tmp_path / "x.db", token=ADMIN_TOKEN, home=tmp_path, preexec_fn=ignore_sigint
    ) as server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        code = server.stop(signal.SIGINT)
    assert code == 130, server.stderr_text()
    assert server.stderr_text().splitlines()[-1] == "Interrupted"
    assert "Traceback" not in server.stderr_text()


def test_sigint_ends_a_background_server_with_workers_with_130(tmp_path, pg_database):
    server = ServerProcess(
        pg_database,
        token=ADMIN_TOKEN,
        home=tmp_path,
        preexec_fn=ignore_sigint,
        args=("--workers", "2"),
    )
    try:
        server.start()
        assert httpx.get(f"{server.url}/health").status_code == 200
        code = server.stop(signal.SIGINT)
    finally:
        server.kill()
    assert code == 130, server.stderr_text()
    assert server.stderr_text().splitlines()[-1] == "Interrupted"
    assert "Traceback" not in server.stderr_text()


def test_dev_serves_a_postgresql_database(run_cli, pg_server, pg_database):
    result = run_cli("dev", "--port", "0", "--db", pg_database, "--duration", "1s", "-o", "ndjson")

    assert result.exit_code == 0, result.stderr
    assert "Streams API at http://127.0.0.1:" in result.stderr
    source_id = result.stderr.split("dev (", 1)[1].split(")", 1)[0]
    assert source_id.startswith("src_")
    stored = pg_server.psql("SELECT id, name FROM sources", db=pg_database.rsplit("/", 1)[1])
    assert stored.split() == [source_id, "dev"]
