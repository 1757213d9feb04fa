"""Benchmark: how fast `boltic` starts, completes and lists, beside its references.

Run: .venv/bin/python tests/bench/bench_startup.py [--runs 15]

Measures in one run, with hyperfine (medians of --runs runs after 3 warm-ups each;
a subprocess timer when hyperfine is missing):
  - `boltic --help` and a static completion request (`boltic <TAB>`, bash protocol)
    beside a bare Typer app (default settings, the same group names with empty
    commands, written to a temp file): target at most 1.15 times its time;
  - `boltic sources list -o json` against a `boltic server` subprocess beside httpie's
    `http GET` of the same URL with the same token: target at most 0.9 times;
  - `boltic --version`;
  - source-id completion (zsh protocol) with the server up (cache emptied before each
    run, so every run asks the API; and with a warm cache), with nothing listening,
    and with a server that accepts but never answers: each must return within 1 s
    with empty stderr.
Also records where `sources list -o json` spends its imports (`python -X importtime`).
Waits (up to --max-wait s) for the 1-minute load average to fall below --max-load,
and records the load before and after. Writes bench_startup.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# Run as a script: this folder is on sys.path, so the shared module imports by its name.
from _common import (
    BOLTIC,
    HTTPIE,
    isolated_env,
    load_averages,
    machine,
    start_server,
    wait_for_quiet,
)

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
HYPERFINE = shutil.which("hyperfine") or "/usr/bin/hyperfine"
TOKEN = "bench-startup-token-0123456789abcdef"
GROUPS = ["sources", "events", "destinations", "debug", "auth", "config", "api", "server"]
GROUPS += ["dev", "completion"]
HEAVY = ("httpx", "pydantic", "keyring", "fastapi", "uvicorn", "rich", "yaml")

BARE_TYPER_APP = f"""\
import typer

app = typer.Typer()
for name in {GROUPS!r}:
    group = typer.Typer()

    @group.command()
    def noop() -> None:
        pass

    app.add_typer(group, name=name)

if __name__ == "__main__":
    app()
"""


def load() -> float:
    return load_averages()[0]


def env_prefix(env: dict[str, str]) -> list[str]:
    return ["env", *(f"{k}={v}" for k, v in env.items())]


def shell_words(argv: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def hyperfine(
    commands: dict[str, list[str]],
    runs: int,
    env: dict[str, str],
    workdir: Path,
    prepare: str | None = None,
) -> dict[str, dict]:
    """name -> {median, mean, min, max, runs} in ms, all commands in one hyperfine run."""
    out = workdir / "hyperfine.json"
    argv = [HYPERFINE, "-N", "--warmup", "3", "--runs", str(runs), "--export-json", str(out)]
    argv += ["--style", "none"]
    if prepare:
        argv += ["--prepare", prepare]
    for name, command in commands.items():
        argv += ["--command-name", name, shell_words(command)]
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    results = json.loads(out.read_text())["results"]
    return {r["command"]: summary([t * 1000 for t in r["times"]]) for r in results}


def time_subprocesses(
    commands: dict[str, list[str]],
    runs: int,
    env: dict[str, str],
    workdir: Path,
    prepare: str | None = None,
) -> dict[str, dict]:
    """The same figures without hyperfine: interleaved runs, wall time of each."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(runs + 3):
        for name, command in commands.items():
            if prepare:
                subprocess.run(prepare, shell=True, env=env)
            started = time.perf_counter()
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if i >= 3:
                times[name].append((time.perf_counter() - started) * 1000)
    return {name: summary(values) for name, values in times.items()}


def summary(ms: list[float]) -> dict:
    return {
        "median_ms": round(statistics.median(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "min_ms": round(min(ms), 1),
        "max_ms": round(max(ms), 1),
        "runs": len(ms),
    }


def create_sources(url: str, names: list[str]) -> None:
    import urllib.request

    for name in names:
        request = urllib.request.Request(
            f"{url}/streams/sources",
            data=json.dumps({"name": name, "type": "javascript"}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 201


def completion_env(line: str, shell: str = "zsh") -> dict[str, str]:
    if shell == "bash":
        words = line.split(" ")
        return {
            "_BOLTIC_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
        }
    return {"_BOLTIC_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": line}


def check_quiet(command: list[str], env: dict[str, str]) -> dict:
    """One run: seconds, and whether stderr stayed empty."""
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "exit_code": proc.returncode,
        "stdout_lines": len([x for x in proc.stdout.splitlines() if x.strip()]),
        "stderr": proc.stderr,
    }


def import_profile(command: list[str], env: dict[str, str]) -> dict:
    """`python -X importtime`: total import ms, the biggest top-level imports, heavy ones."""
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", *command], env=env, capture_output=True, text=True, check=True
    )
    top: list[tuple[str, float]] = []
    names = set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        names.add(name.strip())
        if not name.startswith("  "):  # imported by the program itself, not a module
            top.append((name.strip(), int(cumulative) / 1000))
    top.sort(key=lambda item: -item[1])
    return {
        "total_top_level_import_ms": round(sum(ms for _, ms in top), 1),
        "top_level_imports_ms": {name: round(ms, 1) for name, ms in top[:12]},
        "heavy_imported": sorted(n for n in names if n in HEAVY),
    }


HTTPX_CLIENT_INIT = """\
import sys, time
sys.modules.setdefault("httpx._main", None)
import httpx
started = time.perf_counter()
httpx.Client(base_url=sys.argv[1])
verifying = time.perf_counter() - started
started = time.perf_counter()
httpx.Client(base_url=sys.argv[1], transport=httpx.HTTPTransport(verify=False))
plain = time.perf_counter() - started
print(verifying * 1000, plain * 1000)
"""


def httpx_client_init(url: str, env: dict[str, str], runs: int = 7) -> dict:
    """What building the client costs: httpx loads the CA bundle even for http:// URLs."""
    verifying, plain = [], []
    for _ in range(runs):
        out = subprocess.run(
            [PYTHON, "-c", HTTPX_CLIENT_INIT, url],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        verifying.append(float(out[0]))
        plain.append(float(out[1]))
    return {
        "verifying_client_median_ms": round(statistics.median(verifying), 1),
        "client_without_tls_context_median_ms": round(statistics.median(plain), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--max-wait", type=float, default=600)
    args = parser.parse_args()
    measure = hyperfine if Path(HYPERFINE).exists() else time_subprocesses

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        workdir = Path(tmp)
        bare = workdir / "bare"
        bare.write_text(BARE_TYPER_APP)
        base_env = {**isolated_env(workdir), "NO_COLOR": "1"}
        server, url = start_server(workdir, base_env, TOKEN)
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        try:
            create_sources(url, ["web", "checkout", "mobile-app"])
            env = {**base_env, "BOLTIC_API_URL": url, "BOLTIC_TOKEN": TOKEN}
            wait_for_quiet(args.max_load, args.max_wait, poll_seconds=60)
            load_before = load()
            cache = workdir / "cache" / "completion-sources.json"
            complete_get = completion_env("boltic sources get ")
            down = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
            hung = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
            commands = {
                "boltic --help": [BOLTIC, "--help"],
                "bare typer --help": [PYTHON, str(bare), "--help"],
                "boltic <TAB>": [*env_prefix(completion_env("boltic ", "bash")), BOLTIC],
                "bare typer <TAB>": [
                    *env_prefix(
                        {
                            "_BARE_COMPLETE": "complete_bash",
                            "COMP_WORDS": "bare ",
                            "COMP_CWORD": "1",
                        }
                    ),
                    PYTHON,
                    str(bare),
                ],
                "boltic --version": [BOLTIC, "--version"],
                "boltic sources list -o json": [BOLTIC, "sources", "list", "-o", "json"],
                "http GET sources": [
                    HTTPIE,
                    "--ignore-stdin",
                    "GET",
                    f"{url}/streams/sources",
                    f"Authorization:Bearer {TOKEN}",
                ],
                "boltic sources get <TAB> (warm cache)": [*env_prefix(complete_get), BOLTIC],
            }
            results = measure(commands, args.runs, env, workdir)
            lookups = {
                "boltic sources get <TAB> (server up, no cache)": [
                    *env_prefix(complete_get),
                    BOLTIC,
                ],
                "boltic sources get <TAB> (nothing listening)": [
                    *env_prefix({**complete_get, "BOLTIC_API_URL": down}),
                    BOLTIC,
                ],
                "boltic sources get <TAB> (server never answers)": [
                    *env_prefix({**complete_get, "BOLTIC_API_URL": hung}),
                    BOLTIC,
                ],
            }
            results |= measure(lookups, args.runs, env, workdir, prepare=f"rm -f {cache}")
            load_after = load()

            quiet = {}
            for name, command in lookups.items():
                cache.unlink(missing_ok=True)
                quiet[name] = check_quiet(command, env)
            imports = import_profile(["-m", "boltic_cli", "sources", "list", "-o", "json"], env)
            help_imports = import_profile(["-m", "boltic_cli", "--help"], env)
            client_init = httpx_client_init(url, env)
        finally:
            server.terminate()
            server.wait(20)
            silent.close()
            closed.close()

    def ratio(a: str, b: str) -> float:
        return round(results[a]["median_ms"] / results[b]["median_ms"], 3)

    report = {
        "benchmark": "startup: help, completion, version, sources list vs bare Typer and httpie",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python tests/bench/bench_startup.py " + " ".join(sys.argv[1:]),
        "timer": "hyperfine -N --warmup 3" if measure is hyperfine else "subprocess wall time",
        "results_ms": results,
        "ratios": {
            "help_vs_bare_typer": ratio("boltic --help", "bare typer --help"),
            "static_completion_vs_bare_typer": ratio("boltic <TAB>", "bare typer <TAB>"),
            "sources_list_json_vs_httpie": ratio("boltic sources list -o json", "http GET sources"),
        },
        "targets": {
            "help_vs_bare_typer": 1.15,
            "static_completion_vs_bare_typer": 1.15,
            "sources_list_json_vs_httpie": 0.9,
            "source_completion_seconds": 1.0,
        },
        "source_completion_single_run": quiet,
        "imports": {"sources list -o json": imports, "--help": help_imports},
        "httpx_client_init": client_init,
        "load_1min": {"before": load_before, "after": load_after},
        "machine": machine(typer=_version("typer"), httpie=_version("httpie")),
    }
    text = json.dumps(report, indent=2).replace(TOKEN, "<token>")
    (HERE / "bench_startup.json").write_text(text + "\n")
    print(text)
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
