"""Every use of a private Typer, Click or httpx detail, in one place.

Each helper here leans on something its library does not promise; each has a
test in ``tests/test_compat.py`` that fails loudly when the library changes it,
and a working fallback where one exists (slower or plainer, never broken).
``pyproject.toml`` pins the libraries' upper bounds at the minors tested.

Nothing heavy is imported at module level: ``click`` is resolved on first use
(``from boltic_cli._compat import click`` works, through ``__getattr__``), so
``client`` can import this module without pulling in Typer.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = [
    "add_completion_class",
    "click",
    "completion_base_classes",
    "completion_script",
    "has_runtime_converter",
    "httpx_client_transport",
    "httpx_transport_for_url",
    "httpx_transport_ssl_context",
    "pydantic_errors_behind",
    "set_runtime_converter",
    "skip_httpx_cli",
]


# Click

click: Any  # resolved on first use by __getattr__ below


def _load_click() -> Any:
    """The Click that Typer runs on: vendored as ``typer._click`` since 0.29, ``click`` before."""
    try:
        from typer import _click
    except ImportError:  # fallback: an older typer that runs on the click package
        import click as _click  # type: ignore[no-redef]
    return _click


def __getattr__(name: str) -> Any:
    if name == "click":
        value = _load_click()
        globals()["click"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Typer parameters: the converter Typer builds (with pydantic) for each parameter


def has_runtime_converter(param: Any) -> bool:
    """True when ``param`` is not a Typer parameter or already has its converter.

    Typer keeps the converter of a ``TyperOption``/``TyperArgument`` in the private
    attribute ``_runtime_param`` (None until first use). Without the attribute
    (a plain Click parameter, or a Typer that renamed it) this answers True, so
    callers leave the parameter alone: Typer's own (pydantic) conversion runs.
    """
    return getattr(param, "_runtime_param", False) is not None


def set_runtime_converter(param: Any, converter: Any) -> None:
    """Give a Typer parameter the converter ``converter`` (an object with ``coerce``).

    ``converter.coerce(value, param, ctx)`` is then called in place of the
    pydantic TypeAdapter Typer would build. Only call it where
    ``has_runtime_converter`` is False.
    """
    param._runtime_param = converter


# Shell completion


def pydantic_errors_behind(exc: BaseException) -> list[dict[str, Any]] | None:
    """The pydantic errors a Typer ``BadParameter`` was raised from, or None.

    Typer 0.29 coerces option values with pydantic ``TypeAdapter``s and words a bad
    value in pydantic's terms ("Input should be greater than or equal to 1", "Value
    error, 'x' is not one of ..."), chaining the ``ValidationError`` as the cause; the
    app rewords it from these errors. Fallback: None (Typer's own wording stays).
    """
    cause = exc.__cause__
    if cause is None or type(cause).__name__ != "ValidationError":
        return None
    try:
        return list(cause.errors(include_url=False))  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return None


def completion_base_classes() -> tuple[type, type, type]:
    """The (bash, zsh, fish) completion classes Typer registers, to subclass.

    Typer's own (``typer._completion_classes``) complete Typer's way; the fallback
    is Click's public ``shell_completion`` classes (present in the click package, not
    in the copy Typer vendors since 0.29: there RuntimeError says what to update).
    """
    try:
        from typer._completion_classes import BashComplete, FishComplete, ZshComplete
    except ImportError:  # fallback: Click's public classes (the click package has them)
        sc = _load_click().shell_completion
        try:
            return sc.BashComplete, sc.ZshComplete, sc.FishComplete
        except AttributeError:
            raise RuntimeError(
                "this Typer has neither typer._completion_classes nor Click's completion "
                "classes: boltic_cli._compat needs updating for it"
            ) from None
    return BashComplete, ZshComplete, FishComplete


def add_completion_class(cls: type, name: str) -> None:
    """Register ``cls`` as the completion class of shell ``name`` (Click's registry)."""
    _load_click().shell_completion.add_completion_class(cls, name)


def completion_script(prog_name: str, complete_var: str, shell: str) -> str:
    """The completion script of ``shell`` for ``prog_name``, as Typer writes it.

    Typer's writer is private (``typer._completion_shared``); the fallback is the
    ``source()`` of the completion class registered for the shell (or Typer's own).
    """
    try:
        from typer._completion_shared import get_completion_script
    except ImportError:  # fallback: the registered class's own script
        by_name = {cls.name: cls for cls in completion_base_classes()}
        cls = _load_click().shell_completion.get_completion_class(shell) or by_name.get(shell)
        if cls is None:
            raise ValueError(f"no completion for shell {shell!r}") from None
        return cls(None, {}, prog_name, complete_var).source()
    return get_completion_script(prog_name=prog_name, complete_var=complete_var, shell=shell)


# httpx


def skip_httpx_cli() -> None:
    """Keep ``import httpx`` from loading httpx's own command-line tool.

    On import httpx tries ``httpx._main`` (rich, pygments, click) when those are
    installed: about 45 ms on every request command, for a tool we never use. A
    None entry in ``sys.modules`` makes that import fail, and httpx then defines
    a stub. Call it before the first ``import httpx``; harmless if httpx changes.
    """
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def httpx_client_transport(client: httpx.Client) -> httpx.BaseTransport | None:
    """The transport ``client`` was built with (private ``_transport``); None if unknown."""
    return getattr(client, "_transport", None)


def httpx_transport_for_url(client: httpx.Client, url: httpx.URL) -> httpx.BaseTransport | None:
    """The transport ``client`` would send a request for ``url`` through (a proxy's, or its own).

    Uses the private ``Client._transport_for_url``; None when it is gone, and the
    caller then sends through ``client.send`` (slower, same result).
    """
    pick = getattr(client, "_transport_for_url", None)
    return pick(url) if pick is not None else None


def httpx_transport_ssl_context(transport: httpx.HTTPTransport) -> Any:
    """The ``ssl.SSLContext`` an ``httpx.HTTPTransport`` verifies with (httpcore's), or None."""
    pool = getattr(transport, "_pool", None)
    return getattr(pool, "_ssl_context", None)
