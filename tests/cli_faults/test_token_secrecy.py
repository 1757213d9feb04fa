"""The admin token never reaches output (stdout or stderr), even with --verbose and
--debug, on success and on every error path; config and credential files are 0600."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import FakeTime

from ._support import (
    FaultServer,
    Sleeps,
    after,
    closed_port,
    cut_short,
    error_reply,
    http_reply,
    json_reply,
)

LOUD = [["--verbose"], ["--debug"], ["--verbose", "--debug"]]


def assert_token_absent(result, token: str) -> None:
    for text in (result.stdout, result.stderr):
        assert token not in text
        assert quote(token, safe="") not in text
        assert token[4:-4] not in text  # not even most of it


@pytest.fixture
def source(api) -> dict:
    response = api.post("/streams/sources", json={"name": "web", "type": "javascript"})
    assert response.status_code == 201
    api.post("/streams/events", json={"sourceId": response.json()["id"], "type": "signup"})
    return response.json()


SUCCESS_COMMANDS = [
    ["sources", "list"],
    ["sources", "get", "{id}"],
    ["sources", "create", "--name", "another", "--type", "javascript"],
    ["events", "send", "{id}", "--type", "page_view", "-p", "path=/"],
    ["events", "query", "--source", "{id}", "--all"],
    ["debug", "status", "{id}"],
    ["debug", "tail", "{id}", "--duration", "2s"],
    ["destinations", "list"],
    ["api", "GET", "/streams/sources"],
    ["auth", "status"],
    ["config", "list"],
]


@pytest.mark.parametrize("loud", LOUD, ids=" ".join)
@pytest.mark.parametrize("args", SUCCESS_COMMANDS, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_token_absent_from_successful_runs(cli, source, loud, args, fmt):
    fake = FakeTime()
    args = [a.format(id=source["id"]) for a in args]
    result = cli(*loud, *args, "-o", fmt, clock=fake.clock, sleep=fake.sleep)
    assert result.exit_code == 0, result.stderr
    if "--verbose" in loud and args[0] not in ("auth", "config"):
        assert " 200 " in result.stderr or " 201 " in result.stderr or " 202 " in result.stderr
    assert_token_absent(result, ADMIN_TOKEN)


@pytest.mark.parametrize("loud", LOUD, ids=" ".join)
@pytest.mark.parametrize(
    "args",
    [["sources", "list"], ["debug", "tail", "{id}"], ["events", "send", "{id}", "--type", "t"]],
    ids=lambda a: " ".join(a[:2]),
)
def test_refused_token_absent_from_401(cli, source, loud, args):
    wrong = "wrong-token-that-is-secret-too-0123456789"
    args = [a.format(id=source["id"]) for a in args]
    result = cli(*loud, *args, env={"BOLTIC_TOKEN": wrong})
    assert result.exit_code == 4, result.stderr
    assert_token_absent(result, wrong)


@pytest.mark.parametrize("loud", LOUD, ids=" ".join)
def test_token_absent_from_404(cli, loud):
    result = cli(*loud, "sources", "get", "src_01J9ZZZZZZZZZZZZZZZZZZZZZZ")
    assert result.exit_code == 3
    assert_token_absent(result, ADMIN_TOKEN)


TOKEN = "fault-secret-token-a1b2c3d4e5f6a7b8c9d0"
FAULTS = {
    "5xx": [error_reply(500, "boom")],
    "503-then-ok": [error_reply(503, "busy"), json_reply(200, {"data": []})],
    "garbage": [http_reply(200, "<html>" + TOKEN[:3], content_type="text/html")],
    "cut-short": [cut_short(json_reply(200, {"data": []}), 40)],
    "slow": [after(10, json_reply(200, {"data": []}))],
    "401": [error_reply(401, "unknown token")],
}


@pytest.mark.parametrize("loud", LOUD, ids=" ".join)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_token_absent_from_fault_paths_and_tracebacks(run_cli, loud, fault):
    with FaultServer(FAULTS[fault]) as server:
        env = {"BOLTIC_API_URL": server.url, "BOLTIC_TOKEN": TOKEN}
        args = [*loud, "--request-timeout", "0.5", "sources", "list"]
        result = run_cli(*args, env=env, sleep=Sleeps())
    assert server.seen[0].headers["authorization"] == f"Bearer {TOKEN}"  # it was in play
    if "--debug" in loud and fault not in ("503-then-ok",):
        assert "Traceback" in result.stderr  # the debug path really ran
    assert_token_absent(result, TOKEN)


@pytest.mark.parametrize("loud", LOUD, ids=" ".join)
def test_token_absent_from_network_error_traceback(run_cli, loud):
    env = {"BOLTIC_API_URL": f"http://127.0.0.1:{closed_port()}/v1", "BOLTIC_TOKEN": TOKEN}
    result = run_cli(*loud, "sources", "list", env=env, sleep=Sleeps())
    assert result.exit_code == 5
    if "--debug" in loud:
        assert "Traceback" in result.stderr
    assert_token_absent(result, TOKEN)


def test_token_in_the_api_url_is_not_echoed(run_cli):
    """A token pasted into the URL as user info is dropped from every message."""
    env = {
        "BOLTIC_API_URL": f"http://user:{TOKEN}@127.0.0.1:{closed_port()}/v1",
        "BOLTIC_TOKEN": TOKEN,
    }
    result = run_cli("--verbose", "--debug", "sources", "list", env=env, sleep=Sleeps())
    assert result.exit_code == 5
    assert_token_absent(result, TOKEN)


def test_auth_token_is_the_one_command_that_prints_it(cli):
    result = cli("--verbose", "--debug", "auth", "token")
    assert result.exit_code == 0
    assert result.stdout == ADMIN_TOKEN + "\n"
    assert ADMIN_TOKEN not in result.stderr


# Stored tokens and file modes


@pytest.fixture
def config_dir(cli_env) -> Path:
    return Path(cli_env["BOLTIC_CONFIG_DIR"])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keyring_login_writes_a_private_config_and_no_token_file(
    run_cli, memory_keyring, config_dir
):
    result = run_cli("--verbose", "--debug", "auth", "login", "--with-token", input=TOKEN)
    assert result.exit_code == 0, result.stderr
    assert_token_absent(result, TOKEN)
    assert mode(config_dir / "config.toml") == 0o600
    assert mode(config_dir) == 0o700
    assert not (config_dir / "credentials.toml").exists()
    assert TOKEN not in (config_dir / "config.toml").read_text()
    assert memory_keyring.entries == {("boltic-cli", "cloud"): TOKEN}
    for args in (["auth", "status"], ["config", "list"], ["config", "profiles"]):
        shown = run_cli("--verbose", "--debug", *args, "-o", "json")
        # auth status checks the token: api.boltic.io cannot be reached from the tests.
        assert shown.exit_code == (5 if args[0] == "auth" else 0), shown.stderr
        assert_token_absent(shown, TOKEN)


def test_insecure_storage_files_are_0600_and_stay_so(run_cli, memory_keyring, config_dir):
    login = ["auth", "login", "--with-token", "--insecure-storage"]
    assert run_cli(*login, input=TOKEN).exit_code == 0
    assert mode(config_dir / "credentials.toml") == 0o600
    assert mode(config_dir / "config.toml") == 0o600
    assert TOKEN in (config_dir / "credentials.toml").read_text()
    # A second profile rewrites both files: still private.
    assert run_cli(*login, "--profile", "staging", input=TOKEN + "x").exit_code == 0
    assert mode(config_dir / "credentials.toml") == 0o600
    assert run_cli("auth", "logout", "--profile", "staging").exit_code == 0
    assert mode(config_dir / "credentials.toml") == 0o600
    status = run_cli("--debug", "--verbose", "auth", "status", "--profile", "cloud")
    assert status.exit_code == 5  # checked against api.boltic.io, unreachable here
    assert_token_absent(status, TOKEN)


def test_config_set_makes_a_loose_config_file_private(run_cli, config_dir):
    config_dir.mkdir(parents=True)
    config = config_dir / "config.toml"
    config.write_text('[profiles.cloud]\napi_url = "https://api.boltic.io/v1"\n')
    config.chmod(0o644)
    assert run_cli("config", "set", "output", "json").exit_code == 0
    assert mode(config) == 0o600
