"""design.md's "Who may import whom", checked over every module of boltic_cli.

Every ``import`` is read from the source (AST), inside functions too; imports
under ``if TYPE_CHECKING:`` are type-only and exempt. A test fails on an import
the table forbids and on any import cycle; a self-test writes a deliberately bad
package to a temporary directory and sees the checker catch it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "boltic_cli"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# -- the table (design.md, "Layout and who may import what") --------------------------
#
# Layers by module name relative to the package ("" is boltic_cli/__init__, which only
# holds __version__). Modules design.md's table does not name sit where its layout list
# puts them: generator (to become traffic) and sender with the engines, client_transport
# inside the client library, params beside durations.

BASE = {"", "errors", "models", "durations", "params", "paths"}
# stats (events stats' counting over the client) is a library; top (debug top's
# aggregator over the tail) an engine.
LIBRARY = {"client", "client_transport", "webhooks", "settings", "credentials", "lookup", "stats"}
ENGINES = {"tail", "sender", "forward", "traffic", "generator", "top"}
PRESENTATION = {"output", "context", "completers"}
COMMANDS = {"app", "__main__"}  # and commands.*
# Anything may import _compat; it imports nothing of ours. _click is its old name, kept
# as an alias until commands/events (lane-t) imports _compat: remove it then.
COMPAT = {"_compat"}

# Third-party top-level packages a layer never imports (design.md).
BANNED_LIBS = {
    "library": {"typer", "click", "rich", "fastapi", "starlette", "uvicorn"},
    "engines": {"typer", "click", "rich", "fastapi", "starlette", "uvicorn"},
    "server": {"typer", "click"},
}
BANNED_FOR_MODULE = {"output": {"httpx"}}

# Known breaks of the table in today's tree, each owned by another piece of work in
# progress (issue 10). Checked as expected failures: when one is fixed the test says
# so, and the lead removes the entry after merging. Keep this the ONE list of them.
KNOWN_BREAKS: set[tuple[str, str]] = set()
# Known cycles (sorted module lists), same rules as KNOWN_BREAKS.
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def layer_of(module: str) -> str:
    """The layer of ``module`` (dotted, relative to the package)."""
    if module in COMPAT:
        return "compat"
    if module in BASE:
        return "base"
    if module in LIBRARY:
        return "library"
    if module in ENGINES:
        return "engines"
    if module in PRESENTATION:
        return "presentation"
    if module in COMMANDS or module == "commands" or module.startswith("commands."):
        return "commands"
    if module == "server" or module.startswith("server."):
        return "server"
    return "unknown"


ALLOWED_LAYERS = {
    "base": {"base"},
    "library": {"base", "library"},
    "engines": {"base", "library", "engines"},
    "presentation": {"base", "library", "engines", "presentation"},
    "commands": {"base", "library", "engines", "presentation", "commands", "server"},
    "server": {"base", "server"},
    "compat": set(),
}


@dataclass(frozen=True)
class Import:
    """One import of ``target`` (a boltic_cli module, relative, or a third-party top
    name when ``external``) by ``source``, at ``line``; ``in_function``: inside a def."""

    source: str
    target: str
    line: int
    in_function: bool
    external: bool


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The absolute dotted name an ``from ... import`` reads from."""
    if node.level == 0:
        return node.module
    here = [PACKAGE, *module.split(".")] if module else [PACKAGE]
    if not is_package:
        here = here[:-1]
    base = here[: len(here) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every import in the file at ``path`` (type-only ones left out)."""
    module = module_name(path, root)
    known = {module_name(p, root) for p in root.rglob("*.py")}
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def add(absolute: str, line: int, in_function: bool) -> None:
        if absolute == PACKAGE or absolute.startswith(PACKAGE + "."):
            target = absolute[len(PACKAGE) + 1 :]
            found.append(Import(module, target, line, in_function, external=False))
        else:
            found.append(Import(module, absolute.split(".")[0], line, in_function, True))

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, in_function)
            return
        if isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, path.name == "__init__.py")
            if base is None:
                return
            for alias in node.names:
                # `from boltic_cli import errors` imports the module boltic_cli.errors.
                sub = f"{base}.{alias.name}"
                rel = sub[len(PACKAGE) + 1 :] if sub.startswith(PACKAGE + ".") else None
                add(sub if rel in known else base, node.lineno, in_function)
            return
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return found


def all_imports(root: Path) -> list[Import]:
    return [i for path in sorted(root.rglob("*.py")) for i in imports_of(path, root)]


def _command_group(module: str) -> str:
    """``commands.events.send`` -> ``commands.events``; the group a command module is in."""
    return ".".join(module.split(".")[:2])


def breaks(imports: Iterable[Import]) -> list[tuple[Import, str]]:
    """Each import the table forbids, with the rule it breaks."""
    found = []
    for imp in imports:
        src = layer_of(imp.source)
        if imp.external:
            banned = BANNED_LIBS.get(src, set()) | BANNED_FOR_MODULE.get(imp.source, set())
            if imp.target in banned:
                found.append((imp, f"{src} never imports {imp.target}"))
            continue
        if imp.target in COMPAT or imp.target == imp.source:
            continue
        if src == "server" and imp.target in ("settings", "webhooks"):
            # design.md allows these two: settings owns the local admin-token file;
            # webhooks signs and classifies deliveries for the server and debug forward.
            continue
        dst = layer_of(imp.target)
        if src == "unknown" or dst == "unknown":
            found.append((imp, "module not placed in a layer (add it to the table)"))
        elif dst not in ALLOWED_LAYERS[src]:
            found.append((imp, f"{src} may not import {dst}"))
        elif imp.source == "paths":
            found.append((imp, "paths imports nothing of the package"))
        elif src == "server" and imp.target in {"client", "output", "context"}:
            found.append((imp, f"server never imports {imp.target}"))
        elif src == "commands" and dst == "server" and not imp.in_function:
            found.append((imp, "commands import server only inside functions"))
        elif (
            src == "commands"
            and dst == "commands"
            and imp.source.startswith("commands.")
            and imp.target.startswith("commands.")
            and _command_group(imp.source) != _command_group(imp.target)
        ):
            found.append((imp, "command groups never import each other"))
    return found


def cycles(imports: Iterable[Import]) -> list[tuple[str, ...]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.external or imp.target == imp.source:
            continue
        # Importing a submodule runs its package's __init__ first; a submodule reading
        # its own package's __init__ is not a cycle unless that __init__ imports back.
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[tuple[str, ...]] = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(tuple(sorted(group)))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(groups)


def _describe(found: list[tuple[Import, str]]) -> str:
    return "\n".join(
        f"  {i.source or PACKAGE} -> {i.target or PACKAGE} (line {i.line}"
        f"{', in a function' if i.in_function else ''}): {rule}"
        for i, rule in found
    )


# -- the tree ---------------------------------------------------------------------------


def test_every_import_follows_the_table():
    found = breaks(all_imports(ROOT))
    unexpected = [(i, r) for i, r in found if (i.source, i.target) not in KNOWN_BREAKS]
    assert not unexpected, "imports design.md's table forbids:\n" + _describe(unexpected)


def test_no_import_cycles():
    found = [c for c in cycles(all_imports(ROOT)) if c not in KNOWN_CYCLES]
    assert not found, "import cycles:\n" + "\n".join("  " + " <-> ".join(c) for c in found)


def test_known_lists_hold_only_what_is_still_there():
    """An entry of KNOWN_CYCLES or KNOWN_BREAKS that is fixed must leave the list."""
    imports = all_imports(ROOT)
    gone_cycles = KNOWN_CYCLES - set(cycles(imports))
    present = {(i.source, i.target) for i, _ in breaks(imports)}
    gone_breaks = KNOWN_BREAKS - present
    assert not gone_cycles and not gone_breaks, (gone_cycles, gone_breaks)


def test_every_module_has_a_layer():
    names = {module_name(p, ROOT) for p in ROOT.rglob("*.py")}
    assert not sorted(n for n in names if layer_of(n) == "unknown")


# -- the checker itself -----------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    package = root / PACKAGE
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


def test_the_checker_catches_a_bad_module(tmp_path):
    package = _write(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "output.py": "import httpx\n",
            # library importing presentation, hidden in a function
            "lookup.py": "def f():\n    from boltic_cli.output import sanitize\n",
            # engine importing typer
            "tail.py": "import typer\n",
            # type-only: allowed
            "sender.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from boltic_cli.output import Output\n"
            ),
            # server importing the client; command importing the server at module level
            "server/__init__.py": "",
            "server/app.py": "from boltic_cli import client\n",
            "client.py": "",
            "commands/__init__.py": "",
            "commands/dev.py": "from boltic_cli.server import app\nfrom . import sources\n",
            "commands/sources.py": "",
            # a cycle between two base modules (relative imports)
            "models.py": "from . import paths\n",
            "paths.py": "def f():\n    from boltic_cli import models\n",
        },
    )
    found = {(i.source, i.target): rule for i, rule in breaks(all_imports(package))}
    assert found[("lookup", "output")] == "library may not import presentation"
    assert found[("output", "httpx")] == "presentation never imports httpx"
    assert found[("tail", "typer")] == "engines never imports typer"
    assert found[("server.app", "client")] == "server may not import library"
    assert found[("commands.dev", "server.app")] == "commands import server only inside functions"
    assert found[("commands.dev", "commands.sources")] == "command groups never import each other"
    assert found[("paths", "models")] == "paths imports nothing of the package"
    assert ("sender", "output") not in found
    assert cycles(all_imports(package)) == [("models", "paths")]


def test_the_checker_passes_a_good_module(tmp_path):
    package = _write(
        tmp_path,
        {
            "__init__.py": "__version__ = '0'\n",
            "errors.py": "",
            "models.py": "from boltic_cli.errors import X\n",
            "client.py": "from boltic_cli import _compat, __version__\nimport httpx\n",
            "_compat.py": "",
            "commands/__init__.py": "",
            "commands/dev.py": "def f():\n    from boltic_cli.server.app import create_app\n",
            "server/__init__.py": "",
            "server/app.py": "from boltic_cli.models import M\nfrom . import routes\n",
            "server/routes.py": "",
        },
    )
    imports = all_imports(package)
    assert not breaks(imports), _describe(breaks(imports))
    assert not cycles(imports)
