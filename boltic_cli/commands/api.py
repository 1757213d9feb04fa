"""boltic api: placeholder until written."""

from boltic_cli.commands import new_app

app = new_app()


@app.command()
def api(method: str, path: str) -> None:
    """Make an authenticated API request."""
    raise NotImplementedError
