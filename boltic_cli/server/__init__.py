"""The local Streams server: the spec's API on SQLite (installed with the ``server`` extra)."""
