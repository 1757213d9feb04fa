"""The Click that Typer runs on: vendored inside typer since 0.29, the click package before."""

try:
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer
    import click  # type: ignore[no-redef]

__all__ = ["click"]
