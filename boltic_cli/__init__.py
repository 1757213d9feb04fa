"""boltic: the command-line tool for the Boltic Streams API."""

__version__ = "0.1.0"
