"""Settings (profiles, config file, env overrides) and the token store."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from boltic_cli.credentials import KEYRING_SERVICE, TokenStore, keyring_backend
from boltic_cli.errors import ConfigError, CredentialsError
from boltic_cli.settings import CLOUD_API_URL, LOCAL_API_URL, ConfigFile, Settings


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return {
        "BOLTIC_CONFIG_DIR": str(tmp_path / "config"),
        "BOLTIC_DATA_DIR": str(tmp_path / "data"),
        "BOLTIC_CACHE_DIR": str(tmp_path / "cache"),
    }


def write_config(environ: dict[str, str], text: str) -> Path:
    path = Path(environ["BOLTIC_CONFIG_DIR"]) / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_local_token(environ: dict[str, str], token: str) -> None:
    data = Path(environ["BOLTIC_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    (data / "admin-token").write_text(token + "\n")


STAGING = """
current_profile = "staging"

[profiles.staging]
api_url = "https://staging.example.com/v1"
output = "json"

[profiles.cloud]
api_url = "https://api.boltic.io/v1"
"""


def test_nothing_configured_means_local(environ):
    settings = Settings.load(environ)
    assert settings.profile == "local"
    assert settings.api_url == LOCAL_API_URL
    assert settings.config_file == Path(environ["BOLTIC_CONFIG_DIR"]) / "config.toml"
    assert settings.origins == {"profile": "default", "api_url": "default"}
    assert settings.profile_names() == ["local"]


def test_local_profile_reads_local_token_file(environ, memory_keyring):
    write_local_token(environ, "local-admin-token")
    settings = Settings.load(environ)
    assert settings.token() == "local-admin-token"
    assert settings.token_source() == "local server"
    # Nothing configured for `local`: the keyring is not even asked.
    assert memory_keyring.reads == 0


def test_local_profile_without_token_file_has_none(environ, no_keyring):
    settings = Settings.load(environ)
    assert settings.token() is None
    assert settings.token_source() == "none"


def test_env_token_wins_over_stored_and_local(environ, memory_keyring):
    write_local_token(environ, "local-admin-token")
    write_config(environ, '[profiles.local]\noutput = "json"\n')
    memory_keyring.entries[(KEYRING_SERVICE, "local")] = "stored-token"
    assert Settings.load(environ).token() == "stored-token"
    assert Settings.load(environ).token_source() == "keyring"
    settings = Settings.load({**environ, "BOLTIC_TOKEN": "env-token"})
    assert settings.token() == "env-token"
    assert settings.token_source() == "environment"


def test_config_current_profile_and_values(environ):
    write_config(environ, STAGING)
    settings = Settings.load(environ)
    assert settings.profile == "staging"
    assert settings.api_url == "https://staging.example.com/v1"
    assert settings.get("output") == "json"
    assert settings.origins == {"profile": "config", "api_url": "config"}
    assert settings.profile_names() == ["local", "cloud", "staging"]


def test_profile_precedence_flag_env_config(environ):
    write_config(environ, STAGING)
    from_env = Settings.load({**environ, "BOLTIC_PROFILE": "cloud"})
    assert (from_env.profile, from_env.api_url) == ("cloud", CLOUD_API_URL)
    assert from_env.origins["profile"] == "environment"
    from_flag = Settings.load({**environ, "BOLTIC_PROFILE": "cloud"}, profile="local")
    assert (from_flag.profile, from_flag.api_url) == ("local", LOCAL_API_URL)
    assert from_flag.origins["profile"] == "flag"


def test_api_url_precedence_flag_env_config(environ):
    write_config(environ, STAGING)
    env = {**environ, "BOLTIC_API_URL": "http://env.example/v1/"}
    assert Settings.load(env).api_url == "http://env.example/v1"
    assert Settings.load(env).origins["api_url"] == "environment"
    flagged = Settings.load(env, api_url="http://flag.example/v1")
    assert flagged.api_url == "http://flag.example/v1"
    assert flagged.values["api_url"] == "http://flag.example/v1"


def test_unknown_profile_names_the_known_ones(environ):
    write_config(environ, STAGING)
    with pytest.raises(ConfigError) as raised:
        Settings.load(environ, profile="prod")
    assert "'prod'" in raised.value.message
    assert "local, cloud, staging" in raised.value.message


def test_invalid_toml_is_config_error(environ):
    path = write_config(environ, "current_profile = \n")
    with pytest.raises(ConfigError) as raised:
        Settings.load(environ)
    assert str(path) in raised.value.message


def test_wrong_shape_is_config_error(environ):
    write_config(environ, 'profiles = "nope"\n')
    with pytest.raises(ConfigError, match="must be a table"):
        Settings.load(environ)


def test_config_file_saved_0600_and_round_trips(environ):
    settings = Settings.load(environ)
    settings.config.set_value("staging", "api_url", "https://staging.example.com/v1")
    settings.config.use("staging")
    settings.config.save()
    mode = stat.S_IMODE(settings.config_file.stat().st_mode)
    assert mode == 0o600
    assert tomllib.loads(settings.config_file.read_text()) == {
        "current_profile": "staging",
        "profiles": {"staging": {"api_url": "https://staging.example.com/v1"}},
    }
    assert Settings.load(environ).profile == "staging"


def test_unwritable_config_dir_is_config_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = ConfigFile(blocker / "config.toml")
    config.use("local")
    with pytest.raises(ConfigError, match="cannot write"):
        config.save()


def test_token_store_keyring_round_trip(environ, memory_keyring, tmp_path):
    store = TokenStore(environ, tmp_path / "config")
    store.set("cloud", "tok-1")
    assert memory_keyring.entries == {(KEYRING_SERVICE, "cloud"): "tok-1"}
    assert store.get("cloud") == "tok-1"
    assert store.where("cloud") == "keyring"
    assert not (tmp_path / "config" / "credentials.toml").exists()
    assert store.delete("cloud") is True
    assert store.get("cloud") is None
    assert store.where("cloud") is None
    assert store.delete("cloud") is False


def test_token_store_insecure_file_is_0600(environ, memory_keyring, tmp_path):
    store = TokenStore(environ, tmp_path / "config")
    store.set("ci", "tok-file", insecure=True)
    path = tmp_path / "config" / "credentials.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tomllib.loads(path.read_text()) == {"tokens": {"ci": "tok-file"}}
    assert memory_keyring.entries == {}
    # Stored in the file before: a later plain `set` keeps it there.
    store.set("ci", "tok-file-2")
    assert store.get("ci") == "tok-file-2"
    assert store.where("ci") == f"file {path}"
    assert memory_keyring.entries == {}
    assert store.delete("ci") is True
    assert tomllib.loads(path.read_text()) == {"tokens": {}}


def test_token_store_without_keyring(environ, no_keyring, tmp_path):
    assert keyring_backend() is None
    store = TokenStore(environ, tmp_path / "config")
    assert store.get("cloud") is None
    with pytest.raises(CredentialsError) as raised:
        store.set("cloud", "tok")
    message = raised.value.message
    assert "BOLTIC_TOKEN" in message
    assert "--insecure-storage" in message
    assert "\n" not in message
    assert "tok" not in message.replace("token", "")
    store.set("cloud", "tok", insecure=True)
    assert store.get("cloud") == "tok"


def test_chainer_without_backends_counts_as_no_keyring():
    import keyring
    from keyring.backends import chainer

    class EmptyChainer(chainer.ChainerBackend):
        backends = []  # type: ignore[assignment]  # noqa: RUF012

    previous = keyring.get_keyring()
    keyring.set_keyring(EmptyChainer())
    try:
        assert keyring_backend() is None
    finally:
        keyring.set_keyring(previous)


def test_stored_token_for_configured_profile(environ, memory_keyring):
    write_config(environ, STAGING)
    memory_keyring.entries[(KEYRING_SERVICE, "staging")] = "staging-token"
    settings = Settings.load(environ)
    assert settings.token() == "staging-token"
    assert Settings.load(environ, profile="cloud").token() is None
    assert Settings.load(environ, profile="cloud").token_source() == "none"


# -- config-key rules (the library half of `boltic config set`) -------------------------

FORMATS = ("table", "plain", "json")


@pytest.mark.parametrize("key", ["token", "profile", "current_profile"])
def test_check_setting_refuses_reserved_keys_with_a_hint(key):
    from boltic_cli.settings import check_setting

    with pytest.raises(ConfigError) as info:
        check_setting(key, "x", output_formats=FORMATS)
    assert info.value.hint and "boltic" in info.value.hint


@pytest.mark.parametrize(
    "key,meant", [("api-url", "api_url"), ("apiUrl", "api_url"), ("OUTPUT", "output")]
)
def test_check_setting_names_the_known_key_a_misspelling_meant(key, meant):
    from boltic_cli.settings import check_setting, known_key_meant

    assert known_key_meant(key) == meant
    with pytest.raises(ConfigError) as info:
        check_setting(key, "x", output_formats=FORMATS)
    assert info.value.hint == f"did you mean {meant}?"


def test_check_setting_values():
    from boltic_cli.settings import check_setting

    assert check_setting("api_url", "http://h:1/v1/", output_formats=FORMATS) == "http://h:1/v1"
    assert check_setting("output", "JSON", output_formats=FORMATS) == "json"
    assert check_setting("forward_secret", "whsec_x", output_formats=FORMATS) == "whsec_x"
    for key, value in [("output", "xml"), ("api_url", "ftp://h"), ("1bad", "x"), ("a b", "x")]:
        with pytest.raises(ConfigError):
            check_setting(key, value, output_formats=FORMATS)


def test_overriding_variable_only_when_set():
    from boltic_cli.settings import overriding_variable

    assert overriding_variable("api_url", {"BOLTIC_API_URL": "http://x/v1"}) == "BOLTIC_API_URL"
    assert overriding_variable("api_url", {"BOLTIC_API_URL": ""}) is None
    assert overriding_variable("other", {"BOLTIC_API_URL": "x"}) is None
