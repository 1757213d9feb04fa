"""boltic events: send, query, count and generate events (one module per job).

The modules define the commands; this package makes the group and registers them
(in the order of the group's help), so imports go one way: package -> modules.
"""

from __future__ import annotations

from boltic_cli.commands import new_app
from boltic_cli.commands.events import generate, query, send, stats

app = new_app(help="Send, query, count and generate events.")
app.command("send")(send.send)
app.command("query")(query.query)
app.command("stats")(stats.stats)
app.command("generate")(generate.generate)

__all__ = ["app", "generate", "query", "send", "stats"]
