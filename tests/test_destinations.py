"""boltic destinations: list and create, config from flags, JSON, files and stdin."""

from __future__ import annotations

import csv
import io
import json

import pytest


def without_signing_secret(config: dict) -> dict:
    """A webhook's config as given: the server adds a ``whsec_`` signing secret."""
    assert config.get("signingSecret", "whsec_").startswith("whsec_")
    return {k: v for k, v in config.items() if k != "signingSecret"}


def stored_destinations(api) -> list[dict]:
    response = api.get("/streams/destinations")
    assert response.status_code == 200
    return response.json()["data"]


def test_create_merges_config_flags_over_config_json(cli, api):
    result = cli(
        "destinations",
        "create",
        "--name",
        "hooks",
        "--type",
        "webhook",
        "--config",
        '{"url": "https://old.example/in", "headers": {"x-team": "growth"}}',
        "-c",
        "url=https://example.com/in",
        "-c",
        "retries:=3",
        "-c",
        "secret=s3cr3t-value",
        "-o",
        "json",
    )

    assert result.exit_code == 0, result.stderr
    created = result.json()
    expected = {
        "url": "https://example.com/in",
        "headers": {"x-team": "growth"},
        "retries": 3,
        "secret": "s3cr3t-value",
    }
    assert without_signing_secret(created["config"]) == expected
    assert stored_destinations(api) == [created]


def test_secrets_are_masked_in_table_and_plain_but_not_json(cli, api):
    cli(
        "destinations",
        "create",
        "--name",
        "wh",
        "--type",
        "webhook",
        "-c",
        "url=https://example.com/in",
        "-c",
        "apiKey=topsecret123",
        "-c",
        'auth:={"password": "hunter2"}',
    )

    plain = cli("destinations", "list")
    table = cli("destinations", "list", "-o", "table")
    as_json = cli("destinations", "list", "-o", "json")

    for shown in (plain, table):
        assert shown.exit_code == 0
        assert "topsecret123" not in shown.stdout
        assert "hunter2" not in shown.stdout
        assert "https://example.com/in" in shown.stdout
    # The table cuts the config cell to its width; plain shows it whole.
    config_cell = json.loads(plain.stdout.split("\t")[4])
    assert config_cell == {
        "url": "https://example.com/in",
        "apiKey": "********",
        "auth": {"password": "********"},
        "signingSecret": "********",
    }
    config = as_json.json()[0]["config"]
    assert config["apiKey"] == "topsecret123"
    assert config["auth"] == {"password": "hunter2"}


def test_create_plain_masks_the_created_secret(cli):
    result = cli(
        "destinations",
        "create",
        "--name",
        "s3",
        "--type",
        "s3",
        "-c",
        "bucket=events",
        "-c",
        "secret_access_key=AKIAXXXX",
    )

    assert result.exit_code == 0, result.stderr
    assert "AKIAXXXX" not in result.stdout
    fields = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    assert json.loads(fields["config"]) == {"bucket": "events", "secret_access_key": "********"}


def test_config_from_file_and_stdin(cli, api, tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text('{"url": "http://localhost:9000/hook"}', encoding="utf-8")

    from_file = cli(
        "destinations", "create", "--name", "a", "--type", "webhook", "--config", f"@{config_file}"
    )
    from_stdin = cli(
        "destinations",
        "create",
        "--name",
        "b",
        "--type",
        "bigquery",
        "--config",
        "-",
        input='{"dataset": "analytics"}',
    )

    assert from_file.exit_code == from_stdin.exit_code == 0
    configs = {d["name"]: without_signing_secret(d["config"]) for d in stored_destinations(api)}
    assert configs == {"a": {"url": "http://localhost:9000/hook"}, "b": {"dataset": "analytics"}}


def test_bad_config_is_a_usage_error_before_any_request(cli, api):
    bad_json = cli("destinations", "create", "--name", "x", "--type", "t", "--config", "{nope")
    bad_field = cli("destinations", "create", "--name", "x", "--type", "t", "-c", "novalue")
    not_object = cli("destinations", "create", "--name", "x", "--type", "t", "--config", "[1]")

    assert bad_json.exit_code == bad_field.exit_code == not_object.exit_code == 2
    assert stored_destinations(api) == []


def test_webhook_without_url_is_refused_by_the_server(cli, api):
    result = cli("destinations", "create", "--name", "x", "--type", "webhook", "-o", "json")

    assert result.exit_code == 2
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == 422
    assert "url" in (error["details"] or error["message"])
    assert stored_destinations(api) == []


def test_list_quiet_and_table_width(cli, api):
    for name in ("one", "two"):
        api.post(
            "/streams/destinations",
            json={"name": name, "type": "webhook", "config": {"url": "https://e.example/x"}},
        )
    ids = [d["id"] for d in stored_destinations(api)]

    quiet = cli("destinations", "list", "-q")
    table = cli("destinations", "list", "-o", "table")

    assert sorted(quiet.stdout.split()) == sorted(ids)
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "TYPE", "STATUS", "CONFIG", "CREATED"]
    assert all(len(line) <= 120 for line in lines)
    assert len(lines) == 3


@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
@pytest.mark.parametrize("columns", ["80", "60"])
def test_list_table_on_a_narrow_terminal_is_one_line_per_row_with_every_header(
    cli, api, columns, tty
):
    from boltic_cli.output import short_id

    for name in ("a-destination-with-a-rather-long-name", "two"):
        api.post(
            "/streams/destinations",
            json={"name": name, "type": "webhook", "config": {"url": "https://e.example/x"}},
        )
    ids = [d["id"] for d in stored_destinations(api)]

    result = cli("destinations", "list", "-o", "table", env={"COLUMNS": columns}, tty=tty)

    assert result.exit_code == 0, result.stderr
    words = result.stdout.split()
    lines = result.stdout.splitlines()
    # Ids whole while they fit, their prefix and tail on a 60-column terminal.
    for id_ in ids:
        assert (id_ if columns == "80" else short_id(id_)) in words
    for header in ("ID", "NAME", "TYPE", "STATUS", "CONFIG", "CREATED"):
        assert header in words
    assert words.count("webhook") == words.count("active") == 2
    assert len(lines) == len(ids) + (4 if lines[0].startswith("╭") else 1)
    assert all(len(line.rstrip()) <= int(columns) for line in lines)


def test_csv_is_data_and_keeps_secrets(cli, api):
    api.post(
        "/streams/destinations",
        json={"name": "wh", "type": "webhook", "config": {"url": "https://e/x", "apiKey": "k9"}},
    )

    result = cli("destinations", "list", "-o", "csv")

    assert result.exit_code == 0, result.stderr
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    assert without_signing_secret(json.loads(row["config"])) == {
        "url": "https://e/x",
        "apiKey": "k9",
    }
    assert "k9" not in cli("destinations", "list").stdout
