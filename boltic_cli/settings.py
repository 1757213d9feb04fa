"""Profiles, the config file and the environment overrides.

``config_dir/config.toml``::

    current_profile = "cloud"

    [profiles.cloud]
    api_url = "https://api.boltic.io/v1"
    output = "json"

The built-in profile ``local`` (the local server, its admin token read from the
data dir) exists without any config and is current when nothing else is chosen.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from boltic_cli import paths
from boltic_cli.credentials import TokenStore
from boltic_cli.errors import ConfigError

CONFIG_FILE = "config.toml"
LOCAL_PROFILE = "local"
LOCAL_API_URL = "http://127.0.0.1:8765/v1"
CLOUD_PROFILE = "cloud"
CLOUD_API_URL = "https://api.boltic.io/v1"

PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SETTING_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def config_file_path(environ: Mapping[str, str]) -> Path:
    return paths.config_dir(environ) / CONFIG_FILE


def default_api_url(profile: str) -> str:
    return LOCAL_API_URL if profile == LOCAL_PROFILE else CLOUD_API_URL


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.match(name):
        raise ConfigError(
            f"invalid profile name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)"
        )
    return name


def check_api_url(url: str) -> str:
    """An http(s) URL without the trailing slash (paths are joined onto it).

    A URL with no path at all is refused with the fix: the API lives under ``/v1``
    (design.md: ``api_url`` includes ``/v1``), and without it every command would end
    in "no route". Any other path is taken as given (a proxy may mount it elsewhere).
    """
    match = re.match(r"^(https?://[^\s/?#]+)(.*)$", url)
    if not match:
        raise ConfigError(f"invalid API URL {url!r}: expected http(s)://host[:port]/v1")
    if match.group(2).strip("/") == "":
        base = match.group(1)
        raise ConfigError(
            f"API URL {url!r} has no path: the API lives under /v1",
            hint=f"use {base}/v1",
        )
    return url.rstrip("/")


# `request_timeout` (seconds), like --request-timeout: below this nothing but a
# loopback server could answer; above it a hung server holds a command for too long.
REQUEST_TIMEOUT_RANGE = (0.1, 600.0)


def check_request_timeout(value: Any, *, name: str = "request_timeout") -> float:
    """``value`` (text or number) as seconds within ``REQUEST_TIMEOUT_RANGE``, or
    ConfigError saying what is allowed."""
    low, high = REQUEST_TIMEOUT_RANGE
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = None
    if isinstance(value, bool) or seconds is None or seconds != seconds:
        raise ConfigError(
            f"{name} must be a number of seconds ({low:g} to {high:g}), not {value!r}"
        )
    if not low <= seconds <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g} seconds, not {value!r}")
    return seconds


# Config-key rules (`boltic config set`; the command only wires them)

# Keys boltic itself reads from a profile. Any other key matching SETTING_KEY may be
# stored too (e.g. a webhook secret for `debug forward`).
KNOWN_KEYS = ("api_url", "output", "request_timeout")

# Keys `config set` refuses, with where the value belongs instead: tokens live in the
# keyring, the profile choice is `config use`'s.
RESERVED_KEYS = {
    "token": "store tokens with 'boltic auth login'",
    "profile": "switch profiles with 'boltic config use PROFILE'",
    "current_profile": "switch profiles with 'boltic config use PROFILE'",
}

# The environment variable that wins over a key stored in the profile.
KEY_OVERRIDES = {"api_url": "BOLTIC_API_URL", "output": "BOLTIC_OUTPUT"}


def known_key_meant(key: str) -> str | None:
    """The known key that ``key`` spells differently (``api-url``, ``apiUrl``), if any."""
    folded = key.replace("-", "").replace("_", "").lower()
    for known in KNOWN_KEYS:
        if key != known and folded == known.replace("_", ""):
            return known
    return None


def check_setting(key: str, value: str, *, output_formats: Sequence[str]) -> str | float:
    """``value`` as it is stored under ``key``, or ConfigError saying why it may not be.

    Refused: reserved keys (with a hint where the value belongs), keys that do not match
    ``SETTING_KEY``, and a known key spelt differently (saved, it would silently never be
    used: the hint names the key meant). ``api_url`` must be http(s) (trailing slash
    dropped; with no path the fix is ``/v1``); ``output`` one of ``output_formats`` (the
    presentation layer's list, passed in: this library module does not import it),
    stored lower-case; ``request_timeout`` a number of seconds in
    ``REQUEST_TIMEOUT_RANGE``, stored as a number. Other keys are free.
    """
    if key in RESERVED_KEYS:
        raise ConfigError(f"{key} cannot be set here", hint=RESERVED_KEYS[key])
    if not SETTING_KEY.match(key):
        raise ConfigError(
            f"invalid key {key!r}: use letters, digits, '_' or '-', starting with a letter"
        )
    meant = known_key_meant(key)
    if meant is not None:
        raise ConfigError(f"unknown key {key!r}", hint=f"did you mean {meant}?")
    if key == "api_url":
        return check_api_url(value)
    if key == "output":
        if value.lower() not in output_formats:
            raise ConfigError(f"output must be one of {', '.join(output_formats)}")
        return value.lower()
    if key == "request_timeout":
        return check_request_timeout(value)
    return value


def overriding_variable(key: str, environ: Mapping[str, str]) -> str | None:
    """The set environment variable that overrides ``key`` in every profile, if any."""
    variable = KEY_OVERRIDES.get(key)
    return variable if variable and environ.get(variable) else None


@dataclass
class ConfigFile:
    """The TOML document at ``path``; change it in memory, then ``save()``."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ConfigFile:
        return cls(path, read_config(path))

    @property
    def current_profile(self) -> str | None:
        return self.data.get("current_profile")

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.data.get("profiles", {})

    def known_profiles(self) -> list[str]:
        return [LOCAL_PROFILE, *sorted(name for name in self.profiles if name != LOCAL_PROFILE)]

    def profile_values(self, name: str) -> dict[str, Any]:
        """The profile's settings, built-in defaults first."""
        return {"api_url": default_api_url(name), **self.profiles.get(name, {})}

    def set_value(self, profile: str, key: str, value: Any) -> None:
        self.data.setdefault("profiles", {}).setdefault(profile, {})[key] = value

    def unset_value(self, profile: str, key: str) -> bool:
        values = self.profiles.get(profile, {})
        return values.pop(key, None) is not None

    def use(self, profile: str) -> None:
        self.data["current_profile"] = profile

    def save(self) -> None:
        import tomli_w

        try:
            paths.write_private(self.path, tomli_w.dumps(self.data))
        except OSError as e:
            raise ConfigError(f"cannot write {self.path}: {e.strerror or e}") from e


def read_config(path: Path) -> dict[str, Any]:
    """The parsed config file (empty when there is none), its shape checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    check_config_shape(path, data)
    return data


def check_config_shape(path: Path, data: dict[str, Any]) -> None:
    current = data.get("current_profile")
    if current is not None and not isinstance(current, str):
        raise ConfigError(f"{path}: current_profile must be a string")
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: [profiles] must be a table")
    for name, values in profiles.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [profiles.{name}] must be a table")
        if "api_url" in values and not isinstance(values["api_url"], str):
            raise ConfigError(f"{path}: [profiles.{name}] api_url must be a string")


@dataclass
class Settings:
    """The settings of one run: profile, API URL, config values and the token."""

    environ: Mapping[str, str]
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    profile: str
    api_url: str
    config: ConfigFile
    # Where profile and api_url came from: "flag", "environment", "config" or "default".
    origins: dict[str, str] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.config.path

    @classmethod
    def load(
        cls, environ: Mapping[str, str], *, profile: str | None = None, api_url: str | None = None
    ) -> Settings:
        config_dir = paths.config_dir(environ)
        config = ConfigFile.load(config_dir / CONFIG_FILE)
        name, profile_origin = _choose(
            profile, environ.get("BOLTIC_PROFILE"), config.current_profile, LOCAL_PROFILE
        )
        known = config.known_profiles()
        if name not in known:
            raise ConfigError(
                f"unknown profile {name!r} (known: {', '.join(known)})",
                hint=f"create it with 'boltic auth login --profile {name}'",
            )
        values = config.profile_values(name)
        url, url_origin = _choose(
            api_url,
            environ.get("BOLTIC_API_URL"),
            config.profiles.get(name, {}).get("api_url"),
            values["api_url"],
        )
        return cls(
            environ=environ,
            config_dir=config_dir,
            data_dir=paths.data_dir(environ),
            cache_dir=paths.cache_dir(environ),
            profile=name,
            api_url=url.rstrip("/"),
            config=config,
            origins={"profile": profile_origin, "api_url": url_origin},
        )

    @property
    def values(self) -> dict[str, Any]:
        """The effective settings of the profile in use (env and flags applied)."""
        stored = self.config.profile_values(self.profile)
        return {"profile": self.profile, **stored, "api_url": self.api_url}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def request_timeout(self) -> float | None:
        """The profile's ``request_timeout`` in seconds (None: the client's defaults).
        A hand-edited value out of range is a ConfigError naming the config file."""
        value = self.config.profile_values(self.profile).get("request_timeout")
        if value is None:
            return None
        try:
            return check_request_timeout(value)
        except ConfigError as e:
            e.message = f"{e.message} (in {self.config_file})"
            e.args = (e.message,)
            raise

    def profile_names(self) -> list[str]:
        return self.config.known_profiles()

    @cached_property
    def token_store(self) -> TokenStore:
        return TokenStore(self.environ, self.config_dir)

    @property
    def local_token_file(self) -> Path:
        return paths.local_token_file(self.environ)

    def token(self) -> str | None:
        """BOLTIC_TOKEN > the profile's stored token > (``local``) the local admin token."""
        env_token = self.environ.get("BOLTIC_TOKEN", "").strip()
        if env_token:
            return env_token
        stored = self._stored_token()
        if stored:
            return stored
        if self.profile == LOCAL_PROFILE:
            return self._local_server_token()
        return None

    def token_source(self) -> str:
        """Where ``token()`` finds it: environment, keyring, file <path>, local server, none."""
        if self.environ.get("BOLTIC_TOKEN", "").strip():
            return "environment"
        if self._has_stored_token():
            where = self.token_store.where(self.profile)
            if where:
                return where
        if self.profile == LOCAL_PROFILE and self._local_server_token():
            return "local server"
        return "none"

    def _has_stored_token(self) -> bool:
        # Only `auth login` puts a token in the store, and it always writes the profile
        # into the config; so the default `local` profile never pays for a keyring lookup.
        return self.profile in self.config.profiles

    def _stored_token(self) -> str | None:
        return self.token_store.get(self.profile) if self._has_stored_token() else None

    def _local_server_token(self) -> str | None:
        try:
            return self.local_token_file.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None


def _choose(*candidates: str | None) -> tuple[str, str]:
    """The first non-empty of flag, environment, config, default, and which it was."""
    origins = ("flag", "environment", "config", "default")
    for value, origin in zip(candidates, origins, strict=True):
        if value:
            return value, origin
    raise AssertionError("the default is never empty")


def ensure_local_admin_token(environ: Mapping[str, str]) -> tuple[str, str]:
    """The local admin token and where it is kept (never the token itself in that text).

    The one writer of the token file (``paths.local_token_file``, 0600): read if it
    exists, else generated (``secrets.token_urlsafe(32)``) and written, so every
    `boltic server` the user starts without ``--token`` and `boltic dev` share one
    token (design.md, "CLI conventions"). Raises ``UsageError`` naming the file when
    it cannot be read or written.
    """
    import secrets

    from boltic_cli.errors import UsageError

    path = paths.local_token_file(environ)
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        stored = ""
    except OSError as e:
        raise UsageError(f"cannot read the admin token file {path}: {e.strerror}") from None
    if stored:
        return stored, f"file {path}"
    generated = secrets.token_urlsafe(32)
    try:
        paths.write_private(path, generated + "\n")
    except OSError as e:
        raise UsageError(f"cannot write the admin token file {path}: {e.strerror}") from None
    return generated, f"file {path} (new)"
