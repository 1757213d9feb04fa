"""Shell completion through the real protocol: `boltic` in a subprocess, as bash, zsh and
fish call it, against a real `boltic server` subprocess (or none)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import start_server, stop_server

pytestmark = pytest.mark.e2e

BOLTIC = [sys.executable, "-m", "boltic_cli"]
# Completion must not wait for the client's defaults (connect 5 s, read 30 s); this
# leaves room for a loaded machine and still fails if those defaults were used.
QUICK = 3.0


@dataclass
class Completion:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line]

    def zsh_items(self) -> dict[str, str]:
        """value -> description from `_arguments '*: :(("value":"description" ...))'`."""
        assert self.stdout.startswith("_arguments '*: :(("), self.stdout
        body = self.stdout.strip()[len("_arguments '*: :((") : -len("))'")]
        items = {}
        for line in body.splitlines():
            value, _, description = line.partition('":"')
            items[value.strip('"')] = description.strip('"')
        return items

    def fish_items(self) -> dict[str, str]:
        return dict([*line.split("\t", 1), ""][:2] for line in self.lines)


@pytest.fixture
def complete(cli_env):
    """Ask `boltic` for completions of ``line`` the way ``shell``'s script does."""

    def run(line: str, shell: str = "bash", env: dict[str, str] | None = None) -> Completion:
        # A loaded machine misses the 0.6 s default; the hung-server test sets its own.
        environ = {
            **cli_env,
            "BOLTIC_COMPLETION_DEADLINE": "10",
            **(env or {}),
            "_BOLTIC_COMPLETE": f"complete_{shell}",
        }
        if shell == "bash":
            words = line.split(" ")
            environ["COMP_WORDS"] = line
            environ["COMP_CWORD"] = str(len(words) - 1)
        else:
            environ["_TYPER_COMPLETE_ARGS"] = line
            environ["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
        started = time.monotonic()
        proc = subprocess.run(BOLTIC, env=environ, capture_output=True, text=True, timeout=30)
        return Completion(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    return run


@dataclass
class Server:
    process: subprocess.Popen
    url: str

    def stop(self) -> None:
        stop_server(self.process)

    def create_source(self, name: str, type: str = "javascript") -> dict:
        import httpx

        response = httpx.post(
            f"{self.url}/streams/sources",
            json={"name": name, "type": type},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def server(tmp_path: Path, cli_env) -> Iterator[Server]:
    """`boltic server --port 0` in a subprocess."""
    env = {**os.environ, **cli_env, "BOLTIC_SERVER_TOKEN": ADMIN_TOKEN}
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    server = Server(*start_server(tmp_path / "server.db", env))
    yield server
    server.stop()


@pytest.fixture
def api_env(server: Server) -> dict[str, str]:
    return {"BOLTIC_API_URL": server.url, "BOLTIC_TOKEN": ADMIN_TOKEN}


@pytest.fixture
def sources(server: Server) -> dict[str, dict]:
    return {name: server.create_source(name) for name in ("web", "checkout", "my api")}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def cache_file(cli_env: dict[str, str]) -> Path:
    return Path(cli_env["BOLTIC_CACHE_DIR"]) / "completion-sources.json"


# -- source ids and names ---------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "boltic sources get ",
        "boltic sources delete ",
        "boltic events send ",
        "boltic events query --source ",
        "boltic events generate ",
        "boltic debug status ",
        "boltic debug tail ",
        "boltic debug wait ",
    ],
)
def test_source_arguments_complete_ids_and_names(complete, api_env, sources, line):
    result = complete(line, env=api_env)

    assert result.returncode == 0
    assert result.stderr == ""
    ids = {s["id"] for s in sources.values()}
    assert ids <= set(result.lines)
    assert {"web", "checkout"} <= set(result.lines)
    # A name with a space would reach the shell as two words; its id still completes.
    assert "my api" not in result.stdout


def test_zsh_describes_ids_by_name_and_names_by_id(complete, api_env, sources):
    items = complete("boltic sources get ", shell="zsh", env=api_env).zsh_items()

    for name, source in sources.items():
        assert items[source["id"]] == name
    assert items["web"] == sources["web"]["id"]


def test_fish_describes_ids_by_name(complete, api_env, sources):
    result = complete("boltic debug status ", shell="fish", env=api_env)

    assert result.stderr == ""
    items = result.fish_items()
    assert items[sources["checkout"]["id"]] == "checkout"
    assert items["checkout"] == sources["checkout"]["id"]


def test_prefix_narrows_to_matching_ids_and_names(complete, api_env, sources):
    result = complete("boltic sources get ch", env=api_env)

    assert result.lines == ["checkout"]


def test_tail_does_not_offer_sources_already_given(complete, api_env, sources):
    result = complete("boltic debug tail web ", env=api_env)

    assert "web" not in result.lines
    assert sources["checkout"]["id"] in result.lines


def test_descriptions_from_the_api_are_one_plain_line(complete, server, api_env):
    hostile = server.create_source("[red]x[/red]\x1b[31m\nrm -rf $HOME `id`")

    zsh = complete("boltic sources get ", shell="zsh", env=api_env)
    fish = complete("boltic sources get ", shell="fish", env=api_env)

    assert "\x1b" not in zsh.stdout + fish.stdout
    # Markup is shown as written (not rendered away), on one line.
    assert fish.fish_items()[hostile["id"]].startswith("[red]x[/red]")
    assert len(fish.lines) == 1
    # zsh evaluates the answer: $ and ` are escaped.
    assert "\\$HOME" in zsh.stdout and "\\`id\\`" in zsh.stdout


# -- the API down, slow, or refusing ------------------------------------------------


def test_api_down_without_cache_is_quick_empty_and_quiet(complete, server, api_env, cli_env):
    server.stop()

    result = complete("boltic sources get ", env=api_env)

    assert (result.returncode, result.lines, result.stderr) == (0, [], "")
    assert result.seconds < QUICK
    assert not cache_file(cli_env).exists()


def test_api_down_offers_what_was_cached(complete, server, api_env, sources):
    assert sources["web"]["id"] in complete("boltic sources get ", env=api_env).lines
    server.stop()

    result = complete("boltic sources get ", shell="zsh", env=api_env)

    assert result.stderr == ""
    assert result.zsh_items()[sources["web"]["id"]] == "web"


def test_api_down_offers_an_older_cache_too(complete, server, api_env, sources, cli_env):
    complete("boltic sources get ", env=api_env)
    server.stop()
    path = cache_file(cli_env)
    cache = json.loads(path.read_text())
    for entry in cache.values():
        entry["at"] -= 3600
    path.write_text(json.dumps(cache))

    result = complete("boltic sources get ", env=api_env)

    assert sources["web"]["id"] in result.lines
    assert result.stderr == ""


def test_hung_server_is_cut_short(complete, silent_port):
    env = {
        "BOLTIC_API_URL": f"http://127.0.0.1:{silent_port}/v1",
        "BOLTIC_TOKEN": "t",
        "BOLTIC_COMPLETION_DEADLINE": "0.6",  # the default, as users get it
    }

    result = complete("boltic sources get ", env=env)

    assert (result.returncode, result.lines, result.stderr) == (0, [], "")
    assert result.seconds < QUICK


def test_wrong_token_is_quiet(complete, api_env, sources):
    result = complete("boltic sources get ", env={**api_env, "BOLTIC_TOKEN": "wrong"})

    assert (result.returncode, result.lines, result.stderr) == (0, [], "")


def test_unknown_profile_is_quiet(complete, api_env, sources):
    result = complete("boltic --profile nope sources get ", env=api_env)

    assert (result.returncode, result.lines, result.stderr) == (0, [], "")


# -- the cache ----------------------------------------------------------------------


def test_cache_is_private_and_holds_no_token(complete, api_env, sources, cli_env):
    complete("boltic sources get ", env=api_env)

    path = cache_file(cli_env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ADMIN_TOKEN not in path.read_text()


def test_fresh_cache_answers_without_asking_the_api(complete, api_env, sources, cli_env):
    complete("boltic sources get ", env=api_env)
    path = cache_file(cli_env)
    cache = json.loads(path.read_text())
    (entry,) = cache.values()
    entry["sources"] = [{"id": "src_FROMCACHE", "name": "cached"}]
    path.write_text(json.dumps(cache))

    assert complete("boltic sources get ", env=api_env).lines == ["src_FROMCACHE", "cached"]


def test_expired_cache_is_refreshed(complete, server, api_env, sources, cli_env):
    complete("boltic sources get ", env=api_env)
    path = cache_file(cli_env)
    cache = json.loads(path.read_text())
    for entry in cache.values():
        entry["at"] -= 31
    path.write_text(json.dumps(cache))
    new = server.create_source("fresh")

    assert new["id"] in complete("boltic sources get ", env=api_env).lines


def test_corrupt_cache_is_ignored(complete, api_env, sources, cli_env):
    path = cache_file(cli_env)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")

    result = complete("boltic sources get ", env=api_env)

    assert sources["web"]["id"] in result.lines
    assert result.stderr == ""


# -- static values --------------------------------------------------------------------


def test_top_level_commands(complete):
    from boltic_cli.app import COMMANDS

    assert complete("boltic ").lines == list(COMMANDS)


def test_group_subcommands(complete):
    assert complete("boltic sources ").lines == ["list", "create", "get", "update", "delete"]


@pytest.mark.parametrize(
    "line",
    ["boltic -o ", "boltic sources list -o ", "boltic events query --source x --output "],
)
def test_output_formats_before_and_after_the_command(complete, line):
    assert complete(line).lines == ["table", "plain", "json", "ndjson", "yaml", "csv"]


def test_output_format_prefix(complete):
    assert complete("boltic sources list -o nd").lines == ["ndjson"]


def test_source_type_values(complete):
    assert complete("boltic sources create --type ").lines == [
        "javascript",
        "server",
        "mobile",
        "webhook",
    ]


def test_destination_type_values(complete):
    assert complete("boltic destinations create --type ").lines == ["webhook"]


@pytest.mark.parametrize(
    "line", ["boltic events send src_1 --type pa", "boltic debug tail --type pa"]
)
def test_event_type_values(complete, line):
    assert complete(line).lines == ["page_view"]


def test_profiles(complete, cli_env):
    config = Path(cli_env["BOLTIC_CONFIG_DIR"])
    config.mkdir(parents=True)
    (config / "config.toml").write_text(
        '[profiles.staging]\napi_url = "https://s.example/v1"\n'
        '[profiles.prod]\napi_url = "https://p.example/v1"\n'
    )

    assert complete("boltic --profile ").lines == ["local", "prod", "staging"]
    assert complete("boltic --profile st").lines == ["staging"]


def test_static_completion_does_not_touch_the_api(complete, silent_port):
    env = {"BOLTIC_API_URL": f"http://127.0.0.1:{silent_port}/v1"}

    result = complete("boltic sources create --type w", env=env)

    assert result.lines == ["webhook"]
    assert result.seconds < QUICK


# -- scripts and installation -------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_command_prints_the_script(run_cli, shell):
    from boltic_cli.commands.completion import completion_script

    result = run_cli("completion", shell)

    assert result.exit_code == 0
    assert result.stdout == completion_script(shell).rstrip("\n") + "\n"
    assert f"_BOLTIC_COMPLETE=complete_{shell}" in result.stdout


def test_completion_command_rejects_other_shells(run_cli):
    result = run_cli("completion", "tcsh")

    assert result.exit_code == 2
    assert result.stdout == ""


def test_install_completion_writes_the_bash_script(cli_env, tmp_path):
    home = Path(cli_env["HOME"])
    home.mkdir(parents=True, exist_ok=True)
    env = {**cli_env, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}

    proc = subprocess.run(
        [*BOLTIC, "--install-completion", "bash"], env=env, capture_output=True, text=True
    )

    assert proc.returncode == 0, proc.stderr
    script = home / ".bash_completions" / "boltic.sh"
    assert "_BOLTIC_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (home / ".bashrc").read_text()


def test_bash_script_completes_in_a_real_bash(api_env, sources, cli_env, tmp_path):
    """The generated script, sourced by bash, fills COMPREPLY from `boltic`."""
    from boltic_cli.commands.completion import completion_script

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "boltic"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m boltic_cli "$@"\n')
    wrapper.chmod(0o755)
    script = tmp_path / "boltic.bash"
    script.write_text(completion_script("bash"))
    probe = (
        f"source {script}; COMP_WORDS=(boltic sources get ''); COMP_CWORD=3; "
        "_boltic_completion boltic; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    env = {**cli_env, **api_env, "PATH": f"{bin_dir}:/usr/bin:/bin"}

    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", probe], env=env, capture_output=True, text=True
    )

    assert proc.returncode == 0, proc.stderr
    assert sources["web"]["id"] in proc.stdout.splitlines()


def test_a_lookup_that_hangs_is_abandoned():
    """A keyring waiting for an unlock prompt must not freeze the shell."""
    import threading

    from boltic_cli.completers import run_with_deadline

    never = threading.Event()
    with pytest.raises(TimeoutError):
        run_with_deadline(never.wait, 0.05)
    assert run_with_deadline(lambda: 42, 5) == 42
    with pytest.raises(ZeroDivisionError):
        run_with_deadline(lambda: 1 / 0, 5)


def test_hanging_token_lookup_returns_no_sources(monkeypatch):
    import threading

    from boltic_cli import completers

    monkeypatch.setattr(completers, "LOOKUP_DEADLINE", 0.05)
    never = threading.Event()
    monkeypatch.setattr(completers, "_lookup", lambda ctx: never.wait())

    assert completers.complete_source(None, "") == []
