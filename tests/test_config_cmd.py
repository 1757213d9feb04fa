"""boltic config: list, get, set, use, profiles; env and flag overrides; secrets masked."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

LOCAL_URL = "http://127.0.0.1:8765/v1"
CLOUD_URL = "https://api.boltic.io/v1"


@pytest.fixture
def config_file(cli_env) -> Path:
    return Path(cli_env["BOLTIC_CONFIG_DIR"]) / "config.toml"


@pytest.fixture
def two_profiles(config_file) -> Path:
    config_file.parent.mkdir(parents=True)
    config_file.write_text(
        'current_profile = "cloud"\n'
        "[profiles.cloud]\n"
        f'api_url = "{CLOUD_URL}"\n'
        "[profiles.staging]\n"
        'api_url = "https://staging.example.com/v1"\n'
    )
    return config_file


def test_list_with_nothing_configured(run_cli, config_file):
    result = run_cli("config", "list", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"profile": "local", "api_url": LOCAL_URL}
    assert not config_file.exists()


def test_set_writes_current_profile_0600(run_cli, config_file):
    result = run_cli("config", "set", "output", "JSON")
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert tomllib.loads(config_file.read_text()) == {"profiles": {"local": {"output": "json"}}}
    # The saved format now applies: `config get` itself answers in JSON.
    got = run_cli("config", "get", "output")
    assert (got.exit_code, got.json()) == (0, "json")
    listed = run_cli("config", "list", "-o", "json")
    assert listed.json() == {"profile": "local", "api_url": LOCAL_URL, "output": "json"}


def test_unset_returns_to_default(run_cli, config_file):
    run_cli("config", "set", "api_url", "http://127.0.0.1:9000/v1")
    run_cli("config", "set", "output", "json")
    result = run_cli("config", "unset", "api_url")
    assert result.exit_code == 0, result.stderr
    assert tomllib.loads(config_file.read_text()) == {"profiles": {"local": {"output": "json"}}}
    assert run_cli("config", "get", "api_url", "-o", "plain").stdout == LOCAL_URL + "\n"
    again = run_cli("config", "unset", "api_url")
    assert again.exit_code == 0
    assert "was not set" in again.stderr


def test_set_on_profile_chosen_by_flag(run_cli, two_profiles):
    result = run_cli("--profile", "staging", "config", "set", "color", "never")
    assert result.exit_code == 0, result.stderr
    data = tomllib.loads(two_profiles.read_text())
    assert data["profiles"]["staging"] == {
        "api_url": "https://staging.example.com/v1",
        "color": "never",
    }
    assert data["current_profile"] == "cloud"


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("api_url", "not a url", "invalid API URL"),
        ("output", "xml", "output must be one of"),
        ("token", "abc", "auth login"),
        ("current_profile", "cloud", "config use"),
        ("bad key", "x", "invalid key"),
        ("request_timeout", "abc", "request_timeout must be a number of seconds"),
        ("request_timeout", "0.001", "between 0.1 and 600 seconds"),
        ("request_timeout", "nan", "request_timeout must be a number"),
        ("request_timeout", "900", "between 0.1 and 600 seconds"),
        ("api_url", "http://127.0.0.1:8765", "use http://127.0.0.1:8765/v1"),
        ("api_url", "https://api.boltic.io/", "use https://api.boltic.io/v1"),
    ],
)
def test_set_rejects_bad_input(run_cli, config_file, key, value, says):
    result = run_cli("config", "set", key, value)
    assert result.exit_code == 2
    assert says in result.stderr
    assert not config_file.exists()


def test_set_api_url_then_get(run_cli):
    assert run_cli("config", "set", "api_url", "http://127.0.0.1:9000/v1/").exit_code == 0
    got = run_cli("config", "get", "api_url")
    assert got.stdout == "http://127.0.0.1:9000/v1\n"


def test_get_unset_key_exits_1(run_cli):
    result = run_cli("config", "get", "nothing_here")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "nothing_here is not set in profile local" in result.stderr


def test_get_json_is_a_json_value(run_cli):
    result = run_cli("config", "get", "profile", "-o", "json")
    assert result.json() == "local"


def test_secret_values_masked_in_table_and_plain(run_cli):
    assert run_cli("config", "set", "webhook_secret", "s3cr3t-value").exit_code == 0
    for args in (("config", "list"), ("config", "list", "-o", "table")):
        result = run_cli(*args)
        assert result.exit_code == 0, result.stderr
        assert "webhook_secret" in result.stdout
        assert "s3cr3t-value" not in result.stdout
    got = run_cli("config", "get", "webhook_secret")
    assert "s3cr3t-value" not in got.stdout
    assert run_cli("config", "get", "webhook_secret", "--reveal").stdout == "s3cr3t-value\n"
    assert run_cli("config", "list", "-o", "json").json()["webhook_secret"] == "s3cr3t-value"


def test_env_overrides_show_in_list(run_cli, two_profiles):
    env = {"BOLTIC_PROFILE": "staging", "BOLTIC_API_URL": "http://override.example/v1"}
    result = run_cli("config", "list", "-o", "json", env=env)
    assert result.json() == {"profile": "staging", "api_url": "http://override.example/v1"}
    flagged = run_cli("--api-url", "http://flag.example/v1", "config", "get", "api_url", env=env)
    assert flagged.stdout == "http://flag.example/v1\n"


def test_use_switches_profile(run_cli, two_profiles):
    result = run_cli("config", "use", "staging")
    assert result.exit_code == 0, result.stderr
    assert "staging" in result.stderr
    assert tomllib.loads(two_profiles.read_text())["current_profile"] == "staging"
    assert run_cli("config", "get", "profile").stdout == "staging\n"
    assert run_cli("config", "use", "local").exit_code == 0
    assert run_cli("config", "get", "api_url").stdout == LOCAL_URL + "\n"


def test_use_unknown_profile_names_known(run_cli, two_profiles):
    before = two_profiles.read_text()
    result = run_cli("config", "use", "prod")
    assert result.exit_code == 2
    assert "local, cloud, staging" in result.stderr
    assert "Traceback" not in result.stderr
    assert two_profiles.read_text() == before


def test_profiles_lists_builtin_and_configured(run_cli, two_profiles):
    result = run_cli("config", "profiles", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == [
        {"name": "local", "api_url": LOCAL_URL, "current": False},
        {"name": "cloud", "api_url": CLOUD_URL, "current": True},
        {"name": "staging", "api_url": "https://staging.example.com/v1", "current": False},
    ]
    plain = run_cli("config", "profiles")
    assert plain.stdout.splitlines() == [
        f"\tlocal\t{LOCAL_URL}",
        f"*\tcloud\t{CLOUD_URL}",
        "\tstaging\thttps://staging.example.com/v1",
    ]


def test_token_never_in_config_output(run_cli):
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        token = "tok_secret_never_shown_42"
        login = run_cli("auth", "login", "--insecure-storage", "--with-token", input=token)
        assert login.exit_code == 0, login.stderr
        for fmt in ("plain", "table", "json", "yaml", "csv"):
            for group in (("config", "list"), ("config", "profiles")):
                result = run_cli(*group, "-o", fmt)
                assert result.exit_code == 0, result.stderr
                assert token not in result.stdout + result.stderr
    finally:
        keyring.set_keyring(previous)


def test_invalid_config_file_is_one_line_exit_2(run_cli, config_file):
    config_file.parent.mkdir(parents=True)
    config_file.write_text("current_profile = [\n")
    result = run_cli("config", "list")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["api-url", "apiUrl", "API_URL", "Output"])
def test_set_refuses_a_misspelt_known_key(run_cli, config_file, key):
    result = run_cli("config", "set", key, "http://127.0.0.1:9000/v1")
    assert result.exit_code == 2
    assert "did you mean" in result.stderr and result.stderr.count("\n") == 1
    assert not config_file.exists()


def test_request_timeout_is_stored_as_a_number_and_used(run_cli, config_file):
    import socket

    assert run_cli("config", "set", "request_timeout", "0.3").exit_code == 0
    assert tomllib.loads(config_file.read_text())["profiles"]["local"]["request_timeout"] == 0.3
    # A server that accepts and never answers: the command ends after the stored timeout.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        result = run_cli("sources", "list", env={"BOLTIC_API_URL": url, "BOLTIC_TOKEN": "t"})
    assert result.exit_code == 5
    assert "timed out after 0.3 s" in result.stderr


def test_a_hand_edited_bad_request_timeout_names_the_file(run_cli, config_file):
    config_file.parent.mkdir(parents=True)
    config_file.write_text('[profiles.local]\nrequest_timeout = "soon"\n')
    result = run_cli("sources", "list", env={"BOLTIC_TOKEN": "t"})
    assert result.exit_code == 2
    assert "request_timeout must be a number" in result.stderr and "config.toml" in result.stderr


def test_no_route_on_a_spec_path_hints_at_v1(cli):
    result = cli("sources", "list", env={"BOLTIC_API_URL": "http://testserver"})
    assert result.exit_code == 3
    assert "may lack /v1: try http://testserver/v1" in result.stderr


def test_an_unknown_id_gets_no_v1_hint(cli):
    result = cli("sources", "get", "src_00000000000000000000000000")
    assert result.exit_code == 3
    assert "/v1" not in result.stderr
