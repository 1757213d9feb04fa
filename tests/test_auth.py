"""boltic auth: login (keyring, no keyring, insecure file, prompt), status, logout, token."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from boltic_cli.credentials import KEYRING_SERVICE
from tests.support import AppTransport

TOKEN = "tok_9f8e7d6c5b4a3210zyxw"


@pytest.fixture
def config_dir(cli_env) -> Path:
    return Path(cli_env["BOLTIC_CONFIG_DIR"])


def read_toml(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def assert_no_token(result, token: str = TOKEN) -> None:
    assert token not in result.stdout
    assert token not in result.stderr


def test_login_with_token_stores_in_keyring(run_cli, memory_keyring, config_dir):
    result = run_cli("auth", "login", "--with-token", input=TOKEN + "\n")
    assert result.exit_code == 0, result.stderr
    assert_no_token(result)
    assert "profile cloud" in result.stderr
    assert memory_keyring.entries == {(KEYRING_SERVICE, "cloud"): TOKEN}
    config_file = config_dir / "config.toml"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert read_toml(config_file) == {
        "current_profile": "cloud",
        "profiles": {"cloud": {"api_url": "https://api.boltic.io/v1"}},
    }
    assert not (config_dir / "credentials.toml").exists()


def test_login_takes_global_api_url_flag_but_never_saves_env(
    run_cli, memory_keyring, config_dir, monkeypatch
):
    flagged = run_cli(
        "--api-url", "http://flag.example/v1", "auth", "login", "--with-token", input=TOKEN
    )
    assert flagged.exit_code == 0, flagged.stderr
    assert read_toml(config_dir / "config.toml")["profiles"]["cloud"]["api_url"] == (
        "http://flag.example/v1"
    )
    # Click reads the root option's envvar from the process environment.
    monkeypatch.setenv("BOLTIC_API_URL", "http://env.example/v1")
    env = {"BOLTIC_API_URL": "http://env.example/v1"}
    other = run_cli("auth", "login", "--profile", "other", "--with-token", input=TOKEN, env=env)
    assert other.exit_code == 0, other.stderr
    saved = read_toml(config_dir / "config.toml")["profiles"]["other"]["api_url"]
    assert saved == "https://api.boltic.io/v1"


def test_login_profile_and_api_url(run_cli, memory_keyring, config_dir):
    result = run_cli(
        "auth",
        "login",
        "--profile",
        "staging",
        "--api-url",
        "https://staging.example.com/v1/",
        "--with-token",
        input=TOKEN,
    )
    assert result.exit_code == 0, result.stderr
    assert read_toml(config_dir / "config.toml") == {
        "current_profile": "staging",
        "profiles": {"staging": {"api_url": "https://staging.example.com/v1"}},
    }
    status = run_cli("auth", "status", "-o", "json")
    # The API cannot be reached from the tests: the token is stored but unchecked (exit 5).
    assert status.exit_code == 5, status.stderr
    assert status.json() == {
        "profile": "staging",
        "api_url": "https://staging.example.com/v1",
        "credentials": "keyring",
        "token_check": "unreachable",
        "logged_in": True,
    }
    assert_no_token(status)
    token = run_cli("auth", "token")
    assert (token.exit_code, token.stdout) == (0, TOKEN + "\n")


def test_status_plain_never_shows_token(run_cli, memory_keyring):
    run_cli("auth", "login", "--with-token", input=TOKEN)
    for args in (
        ("auth", "status"),
        ("auth", "status", "-o", "yaml"),
        ("--debug", "auth", "status"),
    ):
        result = run_cli(*args)
        assert result.exit_code == 5, result.stderr  # api.boltic.io is not reachable here
        assert "keyring" in result.stdout
        assert_no_token(result)


def test_login_without_keyring_is_one_line_exit_4(run_cli, no_keyring, config_dir):
    result = run_cli("auth", "login", "--with-token", input=TOKEN)
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "BOLTIC_TOKEN" in result.stderr
    assert "--insecure-storage" in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_token(result)
    # Nothing half-done: no profile was created.
    assert not (config_dir / "config.toml").exists()


def test_login_without_keyring_json_error(run_cli, no_keyring):
    result = run_cli("auth", "login", "--with-token", "-o", "json", input=TOKEN)
    assert result.exit_code == 4
    error = json.loads(result.stderr.splitlines()[-1])["error"]
    assert error["exitCode"] == 4
    assert "--insecure-storage" in error["message"]


def test_insecure_storage_without_keyring(run_cli, no_keyring, config_dir):
    result = run_cli("auth", "login", "--with-token", "--insecure-storage", input=TOKEN)
    assert result.exit_code == 0, result.stderr
    assert_no_token(result)
    credentials = config_dir / "credentials.toml"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert read_toml(credentials) == {"tokens": {"cloud": TOKEN}}
    token = run_cli("auth", "token")
    assert (token.exit_code, token.stdout) == (0, TOKEN + "\n")
    status = run_cli("auth", "status", "-o", "json")
    assert status.json()["credentials"] == f"file {credentials}"
    assert_no_token(status)


def test_prompt_on_terminal_hides_token(run_cli, memory_keyring):
    result = run_cli("auth", "login", input=TOKEN + "\n", tty=True)
    assert result.exit_code == 0, result.stderr
    assert "Token" in result.stderr
    assert_no_token(result)
    assert memory_keyring.entries == {(KEYRING_SERVICE, "cloud"): TOKEN}


def test_no_terminal_and_no_with_token_is_usage_error(run_cli, memory_keyring):
    result = run_cli("auth", "login", input=TOKEN)
    assert result.exit_code == 2
    assert "--with-token" in result.stderr
    assert memory_keyring.entries == {}


@pytest.mark.parametrize("text", ["", "  \n", "two words", "line1\nline2", "tök", "tab\tbed"])
def test_bad_token_text_is_usage_error(run_cli, memory_keyring, text):
    result = run_cli("auth", "login", "--with-token", input=text)
    assert result.exit_code == 2
    assert memory_keyring.entries == {}


def test_invalid_api_url_is_usage_error(run_cli, memory_keyring):
    result = run_cli("auth", "login", "--api-url", "ftp://x", "--with-token", input=TOKEN)
    assert result.exit_code == 2
    assert "ftp://x" in result.stderr
    assert memory_keyring.entries == {}


def test_logout_forgets_token(run_cli, memory_keyring):
    run_cli("auth", "login", "--with-token", input=TOKEN)
    result = run_cli("auth", "logout")
    assert result.exit_code == 0, result.stderr
    assert memory_keyring.entries == {}
    token = run_cli("auth", "token")
    assert token.exit_code == 4
    assert token.stdout == ""
    assert "auth login --profile cloud" in token.stderr
    again = run_cli("auth", "logout")
    assert again.exit_code == 0
    assert "No token stored" in again.stderr


def test_env_token_wins_over_stored(run_cli, memory_keyring):
    run_cli("auth", "login", "--with-token", input=TOKEN)
    env = {"BOLTIC_TOKEN": "env-token-123"}
    token = run_cli("auth", "token", env=env)
    assert token.stdout == "env-token-123\n"
    status = run_cli("auth", "status", "-o", "json", env=env)
    assert status.json()["credentials"] == "environment"
    assert "env-token-123" not in status.stdout + status.stderr


def test_local_profile_reads_local_token_file(run_cli, cli_env, memory_keyring):
    data_dir = Path(cli_env["BOLTIC_DATA_DIR"])
    data_dir.mkdir(parents=True)
    (data_dir / "admin-token").write_text("local-admin-token\n")
    status = run_cli("auth", "status", "-o", "json")
    assert status.exit_code == 5, status.stderr  # no server on 8765 in the tests
    assert status.json() == {
        "profile": "local",
        "api_url": "http://127.0.0.1:8765/v1",
        "credentials": "local server",
        "token_check": "unreachable",
        "logged_in": True,
    }
    token = run_cli("auth", "token")
    assert token.stdout == "local-admin-token\n"


def test_local_profile_without_server_token(run_cli, no_keyring):
    status = run_cli("auth", "status", "-o", "json")
    assert status.exit_code == 4
    assert status.json()["logged_in"] is False
    assert "boltic server" in status.stderr


def test_unknown_profile_names_known_ones(run_cli, memory_keyring):
    run_cli("auth", "login", "--with-token", input=TOKEN)
    result = run_cli("auth", "status", "--profile", "nope")
    assert result.exit_code == 2
    assert "'nope'" in result.stderr
    assert "local, cloud" in result.stderr
    global_flag = run_cli("--profile", "nope", "auth", "token")
    assert global_flag.exit_code == 2
    assert global_flag.stdout == ""


def test_unwritable_config_dir_is_one_line_exit_2(run_cli, config_dir, no_keyring):
    import os

    config_dir.mkdir(parents=True)
    # The atomic write goes through this temp name; a directory there makes it fail
    # even for root, who ignores permission bits.
    (config_dir / f".credentials.toml.{os.getpid()}.tmp").mkdir()
    result = run_cli("auth", "login", "--with-token", "--insecure-storage", input=TOKEN)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_token(result)


def test_stored_token_authenticates_against_server(
    run_cli, memory_keyring, cli_env, api, server_settings
):
    """The whole path: login stores it, the settings find it, the server accepts it."""
    from boltic_cli.context import Context, Environment

    result = run_cli(
        "auth",
        "login",
        "--api-url",
        "http://testserver/v1",
        "--with-token",
        input=server_settings.admin_token,
    )
    assert result.exit_code == 0, result.stderr
    context = Context(env=Environment(environ=cli_env, transport=AppTransport(api)).resolved())
    assert context.settings.profile == "cloud"
    with context.make_client() as client:
        assert client.list_stream_sources() == []


# --- the token checked against a real server ------------------------------------------


def test_status_says_whether_the_api_accepts_the_token(cli):
    good = cli("auth", "status", "-o", "json")
    assert good.exit_code == 0, good.stderr
    assert (good.json()["token_check"], good.json()["logged_in"]) == ("accepted", True)

    bad = cli("auth", "status", "-o", "json", env={"BOLTIC_TOKEN": "not-the-admin-token"})
    assert bad.exit_code == 4
    assert (bad.json()["token_check"], bad.json()["logged_in"]) == ("rejected", False)
    assert "refused the token" in bad.stderr


def test_status_with_a_write_key_makes_no_call_it_may_not_make(cli, api):
    source = api.post("/streams/sources", json={"name": "w", "type": "javascript"}).json()
    result = cli("-v", "auth", "status", "-o", "json", env={"BOLTIC_TOKEN": source["writeKey"]})
    calls = [line for line in result.stderr.splitlines() if "/streams/" in line]
    assert result.exit_code == 0, result.stderr
    assert result.json()["token_check"] == "write key"
    assert calls == []
    assert source["writeKey"] not in result.stdout


def test_login_refuses_a_token_the_api_refuses(run_cli, api, memory_keyring, config_dir):
    login = ("auth", "login", "--api-url", "http://testserver/v1", "--with-token")
    refused = run_cli(*login, input="wrong-token", transport=AppTransport(api))
    assert refused.exit_code == 4
    assert "refused this token: nothing stored" in refused.stderr
    assert memory_keyring.entries == {}

    from tests.conftest import ADMIN_TOKEN

    accepted = run_cli(*login, input=ADMIN_TOKEN, transport=AppTransport(api))
    assert accepted.exit_code == 0, accepted.stderr
    assert "could not check" not in accepted.stderr
    assert memory_keyring.entries == {(KEYRING_SERVICE, "cloud"): ADMIN_TOKEN}
