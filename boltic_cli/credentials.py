"""Where tokens are kept: the system keyring, or a 0600 file the user asked for.

One keyring entry per profile (service ``boltic-cli``, username = profile name).
The plain file ``config_dir/credentials.toml`` is used only with
``--insecure-storage``, or for a profile already stored there: headless CI has no
keyring, and it must be the user's explicit choice to keep a token on disk.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boltic_cli import paths
from boltic_cli.errors import ConfigError, CredentialsError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

KEYRING_SERVICE = "boltic-cli"
CREDENTIALS_FILE = "credentials.toml"


def no_keyring_message(credentials_file: Path) -> str:
    return (
        "no system keyring is available to store the token: set BOLTIC_TOKEN instead, "
        f"or run again with --insecure-storage to keep it in {credentials_file} (mode 0600)"
    )


def keyring_backend() -> KeyringBackend | None:
    """The usable keyring backend, or None when the system has none (headless CI)."""
    import keyring
    from keyring.backends import chainer, fail

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    return backend


class TokenStore:
    """Tokens per profile, in the keyring or (explicitly) in a private file."""

    def __init__(self, environ: Mapping[str, str], config_dir: Path) -> None:
        self.environ = environ
        self.config_dir = config_dir
        self.file = config_dir / CREDENTIALS_FILE

    def get(self, profile: str) -> str | None:
        in_file = self._read_file().get(profile)
        if in_file:
            return in_file
        return self._keyring_get(profile)

    def set(self, profile: str, token: str, insecure: bool = False) -> None:
        if insecure or profile in self._read_file():
            self._write_file({**self._read_file(), profile: token})
            return
        backend = self._require_keyring()
        from keyring.errors import KeyringError

        try:
            backend.set_password(KEYRING_SERVICE, profile, token)
        except KeyringError as e:
            raise CredentialsError(f"cannot store the token in the system keyring: {e}") from e

    def delete(self, profile: str) -> bool:
        """Forget the profile's token wherever it is kept; True if there was one."""
        removed = False
        stored = self._read_file()
        if profile in stored:
            del stored[profile]
            self._write_file(stored)
            removed = True
        return self._keyring_delete(profile) or removed

    def where(self, profile: str) -> str | None:
        """``"file <path>"``, ``"keyring"``, or None when no token is stored."""
        if self._read_file().get(profile):
            return f"file {self.file}"
        if self._keyring_get(profile):
            return "keyring"
        return None

    def check_writable(self, profile: str, insecure: bool = False) -> None:
        """Raise the one-line CredentialsError now if ``set`` could not store a token."""
        if insecure or profile in self._read_file():
            return
        self._require_keyring()

    def _require_keyring(self) -> KeyringBackend:
        backend = keyring_backend()
        if backend is None:
            raise CredentialsError(no_keyring_message(self.file))
        return backend

    def _keyring_get(self, profile: str) -> str | None:
        backend = keyring_backend()
        if backend is None:
            return None
        from keyring.errors import KeyringError

        try:
            return backend.get_password(KEYRING_SERVICE, profile) or None
        except KeyringError as e:
            raise CredentialsError(f"cannot read the system keyring: {e}") from e

    def _keyring_delete(self, profile: str) -> bool:
        backend = keyring_backend()
        if backend is None:
            return False
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            if backend.get_password(KEYRING_SERVICE, profile) is None:
                return False
            backend.delete_password(KEYRING_SERVICE, profile)
        except PasswordDeleteError:
            return False
        except KeyringError as e:
            raise CredentialsError(f"cannot remove the token from the system keyring: {e}") from e
        return True

    def _read_file(self) -> dict[str, str]:
        try:
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise CredentialsError(f"cannot read {self.file}: {e.strerror}") from e
        try:
            data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise CredentialsError(f"{self.file} is not valid TOML: {e}") from e
        tokens = data.get("tokens", {})
        if not isinstance(tokens, dict):
            raise CredentialsError(f"{self.file}: 'tokens' must be a table")
        return {name: value for name, value in tokens.items() if isinstance(value, str)}

    def _write_file(self, tokens: dict[str, str]) -> None:
        import tomli_w

        text = tomli_w.dumps({"tokens": tokens})
        try:
            paths.write_private(self.file, text)
        except OSError as e:
            raise ConfigError(f"cannot write {self.file}: {e.strerror or e}") from e
