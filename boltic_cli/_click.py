"""Old name of ``boltic_cli._compat``: kept only until commands/events moves its import over.

The lead removes this file after merging the events split; import from ``_compat``.
"""

from boltic_cli._compat import click

__all__ = ["click"]
