"""`boltic api` against the real server app, plus the exit codes of its failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN


def make_source(api, name: str = "web", type_: str = "javascript") -> dict:
    response = api.post("/streams/sources", json={"name": name, "type": type_})
    assert response.status_code == 201, response.text
    return response.json()


def test_get_prints_the_answer_as_sent_when_piped(cli, api):
    created = make_source(api)
    result = cli("api", "GET", "/streams/sources")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.encode() == api.get("/streams/sources").content
    assert [s["id"] for s in result.json()["data"]] == [created["id"]]
    assert result.json()["data"][0]["writeKey"] == created["writeKey"]


def test_get_is_pretty_on_a_terminal(cli, api):
    make_source(api)
    result = cli("api", "GET", "streams/sources", tty=True)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith('{\n  "data": [')
    assert len(result.json()["data"]) == 1


def test_post_with_fields_creates_a_source(cli, api):
    result = cli("api", "POST", "/streams/sources", "-f", "name=checkout", "-f", "type=server")
    assert result.exit_code == 0, result.stderr
    created = result.json()
    assert created["name"] == "checkout"
    assert created["type"] == "server"
    stored = api.get(f"/streams/sources/{created['id']}")
    assert stored.status_code == 200
    assert stored.json()["name"] == "checkout"


def test_typed_fields_become_json_values(cli, api):
    source = make_source(api)
    result = cli(
        "api",
        "POST",
        "/streams/events",
        "-f",
        f"sourceId={source['id']}",
        "-f",
        "type=purchase",
        "-f",
        'properties:={"amount": 12.5, "items": [1, 2], "gift": false}',
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()["status"] == "accepted"
    events = api.get("/streams/events", params={"sourceId": source["id"]}).json()["data"]
    assert events[0]["properties"] == {"amount": 12.5, "items": [1, 2], "gift": False}


def test_get_fields_go_to_the_query(cli, api):
    source = make_source(api)
    for n in range(3):
        sent = api.post("/streams/events", json={"sourceId": source["id"], "type": f"t{n}"})
        assert sent.status_code == 202
    source_field = f"sourceId={source['id']}"
    result = cli("api", "GET", "/streams/events", "-f", source_field, "-f", "limit:=2")
    assert result.exit_code == 0, result.stderr
    answer = result.json()
    assert len(answer["data"]) == 2
    assert answer["summary"]["totalEvents"] == 3


def test_input_file_is_the_body(cli, api, tmp_path: Path):
    body = tmp_path / "source.json"
    body.write_text(json.dumps({"name": "from-file", "type": "mobile"}))
    result = cli("api", "POST", "/streams/sources", "--input", str(body))
    assert result.exit_code == 0, result.stderr
    names = [s["name"] for s in api.get("/streams/sources").json()["data"]]
    assert names == ["from-file"]


def test_input_from_stdin(cli, api):
    source = make_source(api)
    event = json.dumps({"sourceId": source["id"], "type": "signup", "userId": "u1"})
    result = cli("api", "POST", "/streams/events", "--input", "-", input=event)
    assert result.exit_code == 0, result.stderr
    events = api.get("/streams/events").json()["data"]
    assert [(e["type"], e["userId"]) for e in events] == [("signup", "u1")]


def test_not_found_exits_3_with_body_on_stdout(cli):
    result = cli("api", "GET", "/streams/sources/src_missing")
    assert result.exit_code == 3
    assert result.json()["code"] == 404
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr


def test_schema_violation_exits_2(cli, api):
    result = cli("api", "POST", "/streams/sources", "-f", "name=x")
    assert result.exit_code == 2
    assert result.json()["code"] == 422
    assert api.get("/streams/sources").json()["data"] == []


def test_header_replaces_the_token_with_a_write_key(cli, api):
    source = make_source(api)
    auth = f"Authorization: Bearer {source['writeKey']}"
    fields = ["-f", f"sourceId={source['id']}", "-f", "type=x"]
    sent = cli("api", "POST", "/streams/events", "-H", auth, *fields)
    assert sent.exit_code == 0, sent.stderr
    listed = cli("api", "GET", "/streams/sources", "-H", auth)
    assert listed.exit_code == 4
    assert listed.json()["code"] == 403


def test_wrong_token_exits_4(cli):
    result = cli("api", "GET", "/streams/sources", env={"BOLTIC_TOKEN": "wrong"})
    assert result.exit_code == 4
    assert result.json()["code"] == 401
    assert "wrong" not in result.stderr


def test_verbose_logs_the_call_without_the_token(cli):
    result = cli("api", "GET", "/streams/sources", "-v")
    assert result.exit_code == 0
    assert result.stderr.startswith("GET http://testserver/v1/streams/sources 200 ")
    assert ADMIN_TOKEN not in result.stderr + result.stdout


def test_json_mode_error_object_on_stderr(cli):
    result = cli("api", "GET", "/streams/sources/src_missing", "--json")
    assert result.exit_code == 3
    error = json.loads(result.stderr.splitlines()[-1])["error"]
    assert (error["code"], error["exitCode"]) == (404, 3)


# Usage errors: caught before any request, so no server is needed.


def test_bad_field_is_usage_error(run_cli):
    result = run_cli("api", "POST", "/streams/sources", "-f", "novalue")
    assert result.exit_code == 2
    assert "key=value" in result.stderr


def test_bad_json_field_is_usage_error(run_cli):
    result = run_cli("api", "POST", "/streams/sources", "-f", "n:={oops")
    assert result.exit_code == 2
    assert "valid JSON" in result.stderr


def test_unknown_method_is_usage_error(run_cli):
    result = run_cli("api", "FETCH", "/streams/sources")
    assert result.exit_code == 2
    assert "FETCH" in result.stderr


def test_missing_input_file_is_usage_error(run_cli, tmp_path: Path):
    result = run_cli("api", "POST", "/streams/sources", "--input", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert "nope.json" in result.stderr


def test_bad_header_is_usage_error(run_cli):
    result = run_cli("api", "GET", "/streams/sources", "-H", "no colon here")
    assert result.exit_code == 2


def test_path_on_another_host_is_refused(run_cli):
    env = {"BOLTIC_API_URL": "http://127.0.0.1:9/v1", "BOLTIC_TOKEN": "t"}
    result = run_cli("api", "GET", "https://evil.test/v1/streams/sources", env=env)
    assert result.exit_code == 2
    assert "not below the API URL" in result.stderr


# A body no real server sends: the client-side rendering of text.


def _text_transport(text: str) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(200, text=text, headers={"content-type": "text/plain"})
    )


def test_non_json_text_is_printed_as_is_when_piped(run_cli):
    env = {"BOLTIC_API_URL": "http://api.test/v1", "BOLTIC_TOKEN": "t"}
    result = run_cli("api", "GET", "/health", env=env, transport=_text_transport("ok \x1b[31m"))
    assert result.exit_code == 0
    assert result.stdout == "ok \x1b[31m"  # the answer's bytes, nothing added


def test_escape_sequences_are_neutralised_on_a_terminal(run_cli):
    env = {"BOLTIC_API_URL": "http://api.test/v1", "BOLTIC_TOKEN": "t"}
    result = run_cli(
        "api", "GET", "/health", env=env, transport=_text_transport("ok \x1b[31m"), tty=True
    )
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout
    assert result.stdout.startswith("ok ")


# The installed command, in a subprocess


def test_unreachable_server_exits_5_with_one_line(tmp_path: Path):
    boltic = Path(sys.executable).with_name("boltic")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "BOLTIC_CONFIG_DIR": str(tmp_path / "config"),
        "BOLTIC_DATA_DIR": str(tmp_path / "data"),
        "BOLTIC_CACHE_DIR": str(tmp_path / "cache"),
        "BOLTIC_API_URL": "http://127.0.0.1:9/v1",
    }
    proc = subprocess.run(
        [str(boltic), "api", "GET", "/streams/sources"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "connection refused" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dotted_fields_nest_objects(cli, api):
    result = cli(
        "api",
        "POST",
        "/streams/destinations",
        "-f",
        "name=hook",
        "-f",
        "type=webhook",
        "-f",
        "config.url=https://example.test/hook",
        "-f",
        "config.retries:=3",
    )
    assert result.exit_code == 0, result.stderr
    stored = api.get("/streams/destinations").json()["data"]
    config = stored[0]["config"]
    assert config.pop("signingSecret").startswith("whsec_")  # made by the server
    assert config == {"url": "https://example.test/hook", "retries": 3}


def test_event_data_cannot_drive_the_terminal(cli, api):
    source = make_source(api)
    hostile = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"
    sent = api.post(
        "/streams/events",
        json={"sourceId": source["id"], "type": "x", "properties": {"note": hostile}},
    )
    assert sent.status_code == 202
    for tty in (False, True):
        result = cli("api", "GET", "/streams/events", tty=tty)
        assert result.exit_code == 0, result.stderr
        assert not any(c in result.stdout for c in "\x1b\x07\x9b\u202e")
        assert result.json()["data"][0]["properties"]["note"] == hostile


def test_query_in_path_is_kept_beside_field_params(cli, api):
    source = api.post("/streams/sources", json={"name": "q", "type": "server"}).json()
    for n in range(3):
        api.post(
            "/streams/events", json={"sourceId": source["id"], "type": "x", "properties": {"n": n}}
        )
    result = cli("api", "GET", "/streams/events?limit=1", "-f", "eventType=x", "-v")
    assert result.exit_code == 0, result.stderr
    assert len(result.json()["data"]) == 1
    assert result.json()["summary"]["totalEvents"] == 3
    assert "limit=1" in result.stderr and "eventType=x" in result.stderr
