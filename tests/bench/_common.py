"""What the benchmark scripts share: the installed executables, an isolated environment,
`boltic server` on a free port, the load average and the facts about the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BOLTIC = str(Path(sys.executable).with_name("boltic"))
HTTPIE = str(Path(sys.executable).with_name("http"))


def isolated_env(workdir: Path) -> dict[str, str]:
    """This process's environment with boltic's config, data and cache dirs in ``workdir``."""
    return {
        **os.environ,
        "BOLTIC_CONFIG_DIR": str(workdir / "config"),
        "BOLTIC_DATA_DIR": str(workdir / "data"),
        "BOLTIC_CACHE_DIR": str(workdir / "cache"),
    }


def start_server(workdir: Path, env: dict[str, str], token: str) -> tuple[subprocess.Popen, str]:
    """`boltic server --port 0` on ``workdir/bench.db``, logging to ``workdir/server.log``."""
    command = [BOLTIC, "server", "--port", "0", "--db", str(workdir / "bench.db")]
    command += ["--token", token]
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    if not url.startswith("http"):
        server.terminate()
        raise SystemExit(f"server did not start: {url!r}; see {workdir / 'server.log'}")
    return server, url


def load_averages() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(max_load: float, max_wait: float, poll_seconds: float) -> float:
    """Waits until the 1-minute load is at most ``max_load`` (or ``max_wait`` passed);
    returns the seconds waited. Figures taken on a busy shared machine mislead."""
    started = time.monotonic()
    while os.getloadavg()[0] > max_load and time.monotonic() - started < max_wait:
        print(f"load {load_averages()[0]} > {max_load}: waiting", file=sys.stderr)
        time.sleep(poll_seconds)
    return time.monotonic() - started


#: The libraries whose versions a result depends on (issue 10: every benchmark JSON
#: records the versions it measured).
MEASURED_LIBRARIES = (
    "httpx", "pydantic", "typer", "rich", "fastapi", "starlette", "uvicorn", "uvloop",
    "httptools", "aiohttp", "asyncpg", "standardwebhooks", "httpie",
)  # fmt: skip


def library_versions() -> dict[str, str]:
    """name -> installed version of each of MEASURED_LIBRARIES that is installed."""
    from importlib import metadata

    versions = {}
    for name in MEASURED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine(**extra: object) -> dict:
    """Platform, Python, CPU count and the measured libraries' versions, with whatever
    else a script records about the run."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "libraries": library_versions(),
        **extra,
    }
