"""Where tokens are kept: the system keyring, or a 0600 file the user asked for.

One keyring entry per profile (service ``boltic-cli``, username = profile name).
The plain file ``config_dir/credentials.toml`` is used only with
``--insecure-storage``, or for a profile already stored there: headless CI has no
keyring, and it must be the user's explicit choice to keep a token on disk.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from boltic_cli import paths
from boltic_cli.errors import ConfigError, CredentialsError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

KEYRING_SERVICE = "boltic-cli"
CREDENTIALS_FILE = "credentials.toml"
# How long one keyring operation (finding the backend included) may take. A locked
# or wedged D-Bus secret service can block forever; every command would stall.
KEYRING_TIMEOUT = 5.0
KEYRING_HINT = "set BOLTIC_TOKEN to use a token without the keyring"

T = TypeVar("T")


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


def _backend_name(backend: Any) -> str:
    name = getattr(backend, "name", None) or type(backend).__name__
    return str(name)


def keyring_call(action: str, call: Callable[[KeyringBackend | None], T]) -> T:
    """``call(keyring_backend())`` in a daemon thread, waiting at most ``KEYRING_TIMEOUT``.

    ``action`` completes "cannot ... the system keyring" (``read``, ``store the token
    in``...). Raises ``CredentialsError`` (exit 4, one line naming the backend and
    suggesting ``BOLTIC_TOKEN``) when the keyring does not answer in time, or fails in
    any way (``KeyringError``, a D-Bus error, anything else the backend raises);
    ``PasswordDeleteError`` passes through for the caller. A thread left waiting on a
    hung keyring does not keep the process alive.
    """
    state: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            backend = keyring_backend()
            state["backend"] = backend
            state["value"] = call(backend)
        except BaseException as e:  # handed to the waiting thread
            state["error"] = e
        finally:
            done.set()

    threading.Thread(target=work, name="boltic-keyring", daemon=True).start()
    if not done.wait(KEYRING_TIMEOUT):
        where = (
            f"the system keyring ({_backend_name(state['backend'])})"
            if state.get("backend") is not None
            else "the system keyring"
        )
        raise CredentialsError(
            f"cannot {action} {where}: no answer within {KEYRING_TIMEOUT:g}s", hint=KEYRING_HINT
        )
    error = state.get("error")
    if error is None:
        return state["value"]
    from keyring.errors import PasswordDeleteError

    if isinstance(error, PasswordDeleteError | _NoKeyring) or not isinstance(error, Exception):
        raise error
    name = _backend_name(state["backend"]) if state.get("backend") is not None else None
    where = f"the system keyring ({name})" if name else "the system keyring"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise CredentialsError(f"cannot {action} {where}: {reason}", hint=KEYRING_HINT) from error


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

        def store(backend: KeyringBackend | None) -> None:
            if backend is None:
                raise _NoKeyring()
            backend.set_password(KEYRING_SERVICE, profile, token)

        try:
            keyring_call("store the token in", store)
        except _NoKeyring:
            raise CredentialsError(no_keyring_message(self.file)) from None

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

    def _require_keyring(self) -> None:
        if keyring_call("open", lambda backend: backend) is None:
            raise CredentialsError(no_keyring_message(self.file))

    def _keyring_get(self, profile: str) -> str | None:
        def read(backend: KeyringBackend | None) -> str | None:
            if backend is None:
                return None
            return backend.get_password(KEYRING_SERVICE, profile) or None

        return keyring_call("read", read)

    def _keyring_delete(self, profile: str) -> bool:
        from keyring.errors import PasswordDeleteError

        def delete(backend: KeyringBackend | None) -> bool:
            if backend is None or backend.get_password(KEYRING_SERVICE, profile) is None:
                return False
            backend.delete_password(KEYRING_SERVICE, profile)
            return True

        try:
            return keyring_call("remove the token from", delete)
        except PasswordDeleteError:
            return False

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


class _NoKeyring(Exception):
    """No keyring backend exists (raised inside ``keyring_call``, turned into the hint)."""
