"""Bad input on the user's side: broken NDJSON, unreadable files, no keyring, a config
dir that cannot be written. Each against the real server app where one is involved."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ._support import assert_clean_failure

TOKEN = "tok_input_faults_0123456789"


def stored_ns(api, source_id: str) -> list[int]:
    data = api.get("/streams/events", params={"sourceId": source_id, "limit": 1000}).json()["data"]
    return sorted(event["properties"]["n"] for event in data)


def stored_count(api, source_id: str) -> int:
    response = api.get("/streams/events", params={"sourceId": source_id, "limit": 1})
    return response.json()["summary"]["totalEvents"]


def event_line(n: int) -> str:
    return json.dumps({"type": "page_view", "properties": {"n": n}})


BROKEN = {
    3: '{"type": "page_view", "properties": {"n": 3}',  # cut off
    5: "not json at all \x1b[31m",
    7: "[1, 2, 3]",
    9: '{"properties": {"n": 9}}',  # no type: the server refuses it
}


def write_with_broken_lines(path: Path, total: int = 12) -> Path:
    lines = [BROKEN.get(n, event_line(n)) for n in range(1, total + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_broken_ndjson_lines_are_each_reported_and_the_rest_sent(cli, api, source, tmp_path):
    file = write_with_broken_lines(tmp_path / "events.ndjson")
    result = cli("events", "send", source["id"], "--file", str(file), "--concurrency", "4")
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    reported = sorted(int(line.split(":")[0].removeprefix("line ")) for line in lines[:-2])
    assert reported == sorted(BROKEN)
    assert lines[-2].startswith("Sent 12 events") and "(8 accepted, 4 failed; " in lines[-2]
    assert lines[-1] == "Error: 4 of 12 events failed"
    assert "\x1b" not in result.stderr  # the broken line's text is not replayed raw
    assert stored_ns(api, source["id"]) == [n for n in range(1, 13) if n not in BROKEN]


def test_broken_ndjson_lines_in_json_mode(cli, api, source, tmp_path):
    file = write_with_broken_lines(tmp_path / "events.ndjson")
    result = cli("events", "send", source["id"], "--file", str(file), "-o", "json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["failed"]) == (8, 4)
    *failure_lines, error_line, error_json = result.stderr.splitlines()
    failures = [json.loads(line) for line in failure_lines]
    error = json.loads(error_json)
    assert error_line == "Error: 4 of 12 events failed"
    assert sorted(f["line"] for f in failures) == sorted(BROKEN)
    assert error["error"]["exitCode"] == 1
    assert len(stored_ns(api, source["id"])) == summary["sent"]


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "not-utf8",
    ],
)
def test_unreadable_input_file_is_exit_2_and_sends_nothing(cli, api, source, tmp_path, kind):
    path = tmp_path / "events.ndjson"
    if kind == "directory":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b'{"type": "caf\xe9"}\n' * 3)
    line = assert_clean_failure(cli("events", "send", source["id"], "--file", str(path)), 2)
    assert str(path) in line
    assert stored_ns(api, source["id"]) == []


def test_file_turning_non_utf8_late_stops_with_exit_2_and_an_honest_count(
    cli, api, source, tmp_path
):
    path = tmp_path / "events.ndjson"
    good = "".join(event_line(n) + "\n" for n in range(2000))  # past the first 64 KiB read
    path.write_bytes(good.encode() + b'{"type": "caf\xe9"}\n')
    result = cli("events", "send", source["id"], "--file", str(path), "-o", "json")
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    line, error = result.stderr.splitlines()
    assert line == f"Error: {path} is not UTF-8 text"
    assert json.loads(error)["error"]["exitCode"] == 2
    summary = json.loads(result.stdout)
    assert summary["interrupted"] is True
    assert 0 < summary["sent"] <= 2000
    assert stored_count(api, source["id"]) == summary["sent"]


def test_unreadable_properties_file_is_exit_2(cli, api, source, tmp_path):
    args = ["events", "send", source["id"], "--type", "t", "--properties", f"@{tmp_path}/nope"]
    assert_clean_failure(cli(*args), 2)
    assert stored_ns(api, source["id"]) == []


# Keyring and config dir


@pytest.mark.parametrize("json_mode", [False, True])
def test_no_keyring_backend_login_is_one_line_exit_4(run_cli, cli_env, no_keyring, json_mode):
    args = ["auth", "login", "--with-token"] + (["-o", "json"] if json_mode else [])
    result = run_cli(*args, input=TOKEN + "\n")
    line = assert_clean_failure(result, 4, json_mode=json_mode)
    assert "BOLTIC_TOKEN" in line and "--insecure-storage" in line
    assert TOKEN not in result.stdout + result.stderr
    config_dir = Path(cli_env["BOLTIC_CONFIG_DIR"])
    assert not (config_dir / "credentials.toml").exists()
    assert not (config_dir / "config.toml").exists()  # nothing half-done: no profile


def test_no_keyring_backend_status_of_a_cloud_profile_is_exit_4(run_cli, cli_env, no_keyring):
    config_dir = Path(cli_env["BOLTIC_CONFIG_DIR"])
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text(
        'current_profile = "cloud"\n[profiles.cloud]\napi_url = "https://api.boltic.io/v1"\n'
    )
    result = run_cli("auth", "status")
    line = assert_clean_failure_after_data(result, 4)
    assert "auth login" in line


def assert_clean_failure_after_data(result, exit_code: int) -> str:
    """`auth status` prints what it knows on stdout, then fails: the stderr rules still hold."""
    assert result.exit_code == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_no_keyring_backend_with_boltic_token_still_works(cli, no_keyring):
    result = cli("sources", "list", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.fixture
def config_dir_is_a_file(cli_env) -> Path:
    """A config dir that cannot be written, even by root: a file stands where it should be."""
    path = Path(cli_env["BOLTIC_CONFIG_DIR"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a directory")
    return path


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["config", "set", "output", "json"], None),
        (["config", "use", "local"], None),
        (["auth", "login", "--with-token", "--insecure-storage"], TOKEN),
    ],
    ids=["config-set", "config-use", "auth-login-file"],
)
def test_unwritable_config_dir_is_one_line_exit_2(run_cli, config_dir_is_a_file, args, stdin):
    result = run_cli(*args, input=stdin)
    line = assert_clean_failure(result, 2)
    assert str(config_dir_is_a_file) in line
    assert TOKEN not in result.stdout + result.stderr
    assert config_dir_is_a_file.read_text() == "not a directory"


def test_failed_config_write_leaves_the_old_file_whole(run_cli, cli_env):
    config_dir = Path(cli_env["BOLTIC_CONFIG_DIR"])
    assert run_cli("config", "set", "output", "json").exit_code == 0
    before = (config_dir / "config.toml").read_text()
    # The atomic write goes through this temp name; a directory there makes it fail
    # even for root, who ignores permission bits.
    (config_dir / f".config.toml.{os.getpid()}.tmp").mkdir()
    line = assert_clean_failure(run_cli("config", "set", "output", "yaml"), 2)
    assert "cannot write" in line
    assert (config_dir / "config.toml").read_text() == before


def test_no_keyring_backend_and_no_token_is_one_line_exit_4(cli, cli_env, no_keyring):
    config_dir = Path(cli_env["BOLTIC_CONFIG_DIR"])
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text(
        'current_profile = "cloud"\n[profiles.cloud]\napi_url = "http://testserver/v1"\n'
    )
    line = assert_clean_failure(cli("sources", "list", env={"BOLTIC_TOKEN": ""}), 4)
    assert "boltic auth login" in line
