"""boltic completion SHELL: print a completion script."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from boltic_cli.commands import new_app

app = new_app()

COMPLETE_VAR = "_BOLTIC_COMPLETE"


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


ZSH_REGISTER = "compdef _boltic_completion boltic"
# Typer's zsh script only registers the function: autoloaded from $fpath as `_boltic`
# (what the README suggests) the first TAB would then complete nothing.
ZSH_REGISTER_OR_RUN = """\
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _boltic_completion "$@"
else
  compdef _boltic_completion boltic
fi"""


def completion_script(shell: str) -> str:
    """The script that makes SHELL complete `boltic` (what completions/ holds)."""
    from boltic_cli._compat import completion_script as typer_script

    script = typer_script("boltic", COMPLETE_VAR, shell)
    if shell == "zsh" and script.endswith(ZSH_REGISTER):
        script = script[: -len(ZSH_REGISTER)] + ZSH_REGISTER_OR_RUN
    return script


@app.command()
def completion(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")],
) -> None:
    """Print the completion script for SHELL.

    Save it where your shell looks for completions (then open a new shell):

    \b
      boltic completion bash > ~/.local/share/bash-completion/completions/boltic
      boltic completion zsh > "${fpath[1]}/_boltic"
      boltic completion fish > ~/.config/fish/completions/boltic.fish
    """
    from boltic_cli.context import current

    ctx = current()
    ctx.only_formats("plain", "table", command="boltic completion")
    ctx.output.raw(completion_script(shell.value).rstrip("\n") + "\n")
