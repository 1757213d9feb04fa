"""The server's request log: one stderr line per refused request (time, method, path,
status, reason, token kind; never the token), one per accepted request only with
``--access-log``."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import AppTransport, ServerProcess

LINE = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<method>[A-Z]+) (?P<path>\S+) "
    r"(?P<status>\d{3})(?: (?P<reason>.*))? token=(?P<kind>admin|write key|none|invalid)$"
)


def request_lines(caplog) -> list[re.Match[str]]:
    lines = [r.getMessage() for r in caplog.records if r.name == "boltic.requests"]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    return [m for m in matches if m is not None]


@pytest.fixture
def logged(caplog):
    caplog.set_level(logging.INFO, logger="boltic.requests")
    return caplog


def test_refused_requests_are_logged_with_reason_and_token_kind(cli, api, logged):
    source = api.post("/streams/sources", json={"name": "web", "type": "server"}).json()
    key = source["writeKey"]
    logged.clear()

    bad_token = cli("sources", "list", env={"BOLTIC_TOKEN": "not-the-token"})
    api.get("/streams/sources", headers={"Authorization": ""})
    api.get("/streams/sources", headers={"Authorization": f"Bearer {key}"})
    api.post("/streams/events", content=b"x" * 40_000)
    api.post("/streams/events", json={"sourceId": source["id"]})

    assert bad_token.exit_code == 4
    lines = request_lines(logged)
    got = [(m["method"], m["path"], m["status"], m["kind"]) for m in lines]
    assert got == [
        ("GET", "/v1/streams/sources", "401", "invalid"),
        ("GET", "/v1/streams/sources", "401", "none"),
        ("GET", "/v1/streams/sources", "403", "write key"),
        ("POST", "/v1/streams/events", "413", "admin"),
        ("POST", "/v1/streams/events", "422", "admin"),
    ]
    assert "unknown token" in lines[0]["reason"]
    assert "write key may only" in lines[2]["reason"]
    assert "type" in lines[4]["reason"]
    text = "\n".join(r.getMessage() for r in logged.records)
    for secret in (ADMIN_TOKEN, key, "not-the-token"):
        assert secret not in text


def test_accepted_requests_are_not_logged_without_access_log(cli, api, logged):
    result = cli("sources", "create", "--name", "web", "--type", "server", "-o", "json")

    assert result.exit_code == 0, result.stderr
    assert request_lines(logged) == []


def test_an_inactive_source_refusal_is_logged(cli, api, logged):
    source = api.post("/streams/sources", json={"name": "web", "type": "server"}).json()
    api.patch(f"/streams/sources/{source['id']}", json={"status": "inactive"})
    logged.clear()

    result = cli("events", "send", source["id"], "--type", "t")

    assert result.exit_code == 4
    (line,) = request_lines(logged)
    assert (line["status"], line["kind"]) == ("403", "admin")
    assert "inactive" in line["reason"]


def test_with_access_log_every_request_is_logged(run_cli, server_settings, logged):
    from fastapi.testclient import TestClient

    from boltic_cli.server.app import create_app

    app = create_app(replace(server_settings, access_log=True))
    with TestClient(app, base_url="http://testserver/v1") as api:
        env = {"BOLTIC_API_URL": "http://testserver/v1", "BOLTIC_TOKEN": ADMIN_TOKEN}
        created = run_cli(
            "sources", "create", "--name", "web", "--type", "server", "-o", "json",
            env=env, transport=AppTransport(api),
        )  # fmt: skip
        listed = run_cli("sources", "list", env=env, transport=AppTransport(api))

    assert (created.exit_code, listed.exit_code) == (0, 0)
    got = [(m["method"], m["status"], m["reason"], m["kind"]) for m in request_lines(logged)]
    # sources create also lists first (a duplicate name warns); every request is there.
    assert ("POST", "201", None, "admin") in got and got[-1] == ("GET", "200", None, "admin")
    assert all(kind == "admin" and reason is None for _, _, reason, kind in got)


def test_control_characters_in_a_path_are_escaped(api, logged):
    api.get("/streams/sources/src_%1B[31mred")  # the path arrives percent-decoded

    (line,) = request_lines(logged)
    assert "\x1b" not in line.string
    assert "\\x1b" in line["path"]


class AccessLoggedServer(ServerProcess):
    def command(self) -> list[str]:
        return [*super().command(), "--access-log"]


@pytest.mark.e2e
@pytest.mark.parametrize("access_log", [False, True])
def test_boltic_server_writes_the_log_to_stderr(tmp_path: Path, access_log: bool):
    import httpx

    kind = AccessLoggedServer if access_log else ServerProcess
    with kind(tmp_path / "server.db", token=ADMIN_TOKEN, home=tmp_path) as server:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert httpx.get(f"{server.url}/streams/sources", headers=auth).status_code == 200
        assert httpx.get(f"{server.url}/streams/sources").status_code == 401
    stderr = server.stderr_text()

    assert re.search(r"GET /v1/streams/sources 401 .*missing Authorization.* token=none", stderr)
    assert bool(re.search(r"GET /v1/streams/sources 200 token=admin", stderr)) is access_log
    assert ADMIN_TOKEN not in stderr


def test_the_server_log_goes_to_the_process_stderr_whatever_stood_in_for_it(monkeypatch, capfd):
    """The log config binds no stand-in stream: configured while sys.stderr was a
    buffer (a CliRunner's, a test's capture) that is then closed, a record still reaches
    the process's stderr (fd 2), with no "--- Logging error ---", and nothing of it goes
    to whatever stands in for stderr when it is written (a CLI command's output)."""
    import io
    import logging.config

    from boltic_cli.server.runner import log_config

    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    logging.config.dictConfig(log_config("info"))
    first.close()
    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("boltic.requests").warning("GET /v1/x 404 token=admin")
    assert second.getvalue() == ""
    assert capfd.readouterr().err.strip() == "WARNING:  GET /v1/x 404 token=admin"
