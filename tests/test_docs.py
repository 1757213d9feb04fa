"""Generated files stay in step with the app: completions/ and the README command reference."""

from __future__ import annotations

import re

import pytest

from scripts import generate


@pytest.fixture(scope="module")
def reference() -> str:
    readme = generate.README.read_text(encoding="utf-8")
    assert generate.START in readme and generate.END in readme
    return readme.split(generate.START, 1)[1].split(generate.END, 1)[0]


def sections(reference: str) -> dict[str, str]:
    """command path -> its part of the reference."""
    parts = re.split(r"^### `([^`]+)`$", reference, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def commands() -> list[tuple[str, object]]:
    """(path, click command) for every visible command, found by walking the click tree."""
    from boltic_cli._compat import click

    root, ctx = generate.root_context()
    found = []

    def visit(command, ctx) -> None:
        found.append((ctx.command_path, command))
        for name in getattr(command, "list_commands", lambda ctx: [])(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                visit(sub, click.Context(sub, info_name=name, parent=ctx))

    visit(root, ctx)
    return found


def test_generated_files_are_current():
    stale = [str(path.relative_to(generate.REPO)) for path in generate.stale_files()]

    assert stale == [], f"run `python scripts/generate.py` to update {stale}"


def test_stale_files_notices_drift(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{generate.START}\nold text\n{generate.END}\n")
    monkeypatch.setattr(generate, "README", readme)
    monkeypatch.setattr(generate, "REPO", tmp_path)

    assert readme in generate.stale_files()
    written = generate.write_files()

    assert readme in written and len(written) == 4
    assert generate.stale_files() == []


def test_every_command_has_a_section(reference):
    documented = sections(reference)
    paths = [path for path, _ in commands()]

    assert paths == list(documented)
    for expected in ("boltic sources get", "boltic events query", "boltic debug wait"):
        assert expected in documented


def test_every_option_and_argument_is_documented(reference):
    documented = sections(reference)
    missing = []
    for path, command in commands():
        text = documented.get(path, "")
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            if param.param_type_name == "option":
                names = param.opts
            else:
                names = [getattr(param, "display_name_raw", None) or param.name]
            if not any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text) for n in names):
                missing.append(f"{path}: {'/'.join(names)}")
        if "-h, --help" not in text:
            missing.append(f"{path}: -h, --help")

    assert missing == []


def test_every_command_has_help_text(reference):
    for path, command in commands():
        assert (command.help or command.short_help or "").strip(), f"{path} has no help"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_scripts_are_what_the_command_prints(run_cli, shell):
    path = generate.REPO / "completions" / generate.COMPLETION_FILES[shell]

    assert run_cli("completion", shell).stdout == path.read_text(encoding="utf-8")


def test_readme_installs_name_real_extras_and_say_how_a_clone_runs_boltic():
    import tomllib

    readme = generate.README.read_text(encoding="utf-8")
    pyproject = tomllib.loads((generate.REPO / "pyproject.toml").read_text(encoding="utf-8"))
    extras = set(pyproject["project"]["optional-dependencies"])
    installs = re.findall(r"pip install [^\n`]*?'(?:\.|boltic-cli)\[([a-z,]+)\]'", readme)
    assert installs
    for named in installs:
        assert set(named.split(",")) <= extras, named
    # The sections after the quick start use a bare `boltic`: from a clone, that is the
    # venv the quick start made, active; its PostgreSQL extra is installed into it.
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert ". .venv/bin/activate" in quick_start
    assert ".venv/bin/pip install -e '.[server,postgres]'" in quick_start
