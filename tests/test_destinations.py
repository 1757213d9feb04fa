"""boltic destinations: list and create, config from flags, JSON, files and stdin."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

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


# -- destinations that deliver (design.md "Destinations that deliver") ---------------
#
# The real server app in-process with its delivery worker, delivering to real HTTP
# receivers on 127.0.0.1 (tests/receivers.py). Its retry schedule is shortened to
# fractions of a second (a server setting), so a failing delivery runs out quickly.

import time  # noqa: E402

from tests.conftest import ADMIN_TOKEN  # noqa: E402
from tests.receivers import Receiver, Reply, receiver_fixture  # noqa: E402, F401
from tests.spec_only import SpecOnlyTransport  # noqa: E402
from tests.support import AppTransport  # noqa: E402

SHORT_SCHEDULE = (0.1, 0.1)  # three attempts in all, about 0.2 s apart


@pytest.fixture
def server_settings(tmp_path):
    from boltic_cli.server.settings import ServerSettings

    return ServerSettings(
        db_path=tmp_path / "server.db",
        admin_token=ADMIN_TOKEN,
        delivery_schedule=SHORT_SCHEDULE,
        delivery_poll_interval=0.02,
    )


def eventually(check, timeout: float = 10.0, interval: float = 0.05):
    """``check()``'s first truthy value, polled until ``timeout`` seconds (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        time.sleep(interval)


def succeeded(cli, count: int, destination: str = "hooks") -> list[dict]:
    """The destination's succeeded deliveries, once there are exactly ``count``.

    Waits for the count, not for any: the receiver sees a request before the worker
    records its outcome, so a first poll can list one of two.
    """
    return eventually(
        lambda: (
            rows
            if len(
                rows := [d for d in deliveries_json(cli, destination) if d["status"] == "succeeded"]
            )
            == count
            else None
        )
    )


def make_source(api, name: str = "web") -> dict:
    response = api.post("/streams/sources", json={"name": name, "type": "server"})
    assert response.status_code == 201
    return response.json()


def send(api, source: dict, event_type: str = "signup", **properties) -> str:
    response = api.post(
        "/streams/events",
        json={"sourceId": source["id"], "type": event_type, "properties": properties},
    )
    assert response.status_code == 202, response.text
    return response.json()["eventId"]


def create_webhook(cli, url: str, name: str = "hooks", *extra: str) -> dict:
    result = cli("destinations", "create", "--name", name, "--url", url, *extra, "-o", "json")
    assert result.exit_code == 0, result.stderr
    return result.json()


def deliveries_json(cli, dest: str, *args: str) -> list[dict]:
    result = cli("destinations", "deliveries", dest, *args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    return result.json()


def verify(secret: str, received) -> dict:
    """The receiver's side: the Standard Webhooks library checks the signature."""
    from standardwebhooks import Webhook

    return Webhook(secret).verify(received.body, received.headers)


def test_create_test_send_and_deliveries_succeeded(cli, api, receiver):
    web, other = make_source(api, "web"), make_source(api, "other")
    created = create_webhook(
        cli,
        receiver.url,
        "hooks",
        "--header",
        "X-Team: growth",
        "--event-type",
        "signup",
        "--event-type",
        "purchase",
        "--source",
        "web",  # by name: stored as its id
    )
    config = created["config"]
    assert created["type"] == "webhook"
    assert without_signing_secret(config) == {
        "url": receiver.url,
        "headers": {"X-Team": "growth"},
        "eventTypes": ["signup", "purchase"],
        "sourceIds": [web["id"]],
    }
    secret = config["signingSecret"]

    tested = cli("destinations", "test", "hooks", "-o", "json")
    assert tested.exit_code == 0, tested.stderr
    attempt = tested.json()
    assert attempt["outcome"] == "success" and attempt["responseStatus"] == 200
    [probe] = receiver.wait_for(1)
    assert verify(secret, probe)["type"] == "boltic.test"
    assert probe.headers["x-team"] == "growth"
    assert probe.headers["webhook-id"] == attempt["webhookId"]
    receiver.clear()

    wanted = [send(api, web, "signup", n=1), send(api, web, "purchase", n=2)]
    send(api, web, "page_view")  # another type: not delivered
    send(api, other, "signup")  # another source: not delivered
    got = receiver.wait_for(2)
    assert sorted(verify(secret, r)["id"] for r in got) == sorted(wanted)

    listed = succeeded(cli, 2)
    assert sorted(d["eventId"] for d in listed) == sorted(wanted)
    assert all(d["attempts"] == 1 and d["responseStatus"] == 200 for d in listed)
    assert deliveries_json(cli, created["id"], "--status", "failed") == []
    assert [d["eventId"] for d in deliveries_json(cli, "hooks", "--event", wanted[0])] == [
        wanted[0]
    ]
    assert len(deliveries_json(cli, "hooks", "--limit", "1")) == 1

    # The table shows the event's type where known; plain is tab-separated.
    for columns, tty in [("80", False), ("120", False), ("80", True), ("120", True)]:
        table = cli(
            "destinations", "deliveries", "hooks", "-o", "table", env={"COLUMNS": columns}, tty=tty
        )
        assert table.exit_code == 0, table.stderr
        lines = table.stdout.splitlines()
        header = lines[1] if lines[0].startswith("╭") else lines[0]
        headers = header.replace("│", " ").split()
        assert headers == ["EVENT", "TYPE", "STATUS", "TRIES", "LAST", "NEXT"]
        assert all(len(line) <= int(columns) for line in lines), table.stdout
        words = table.stdout.split()
        assert set(wanted) <= set(words) and {"signup", "purchase"} <= set(words)
        assert words.count("succeeded") == 2
    plain = cli("destinations", "deliveries", "hooks")
    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert {(r[0], r[1], r[2], r[3], r[4]) for r in rows} == {
        (wanted[0], "signup", "succeeded", "1", "200"),
        (wanted[1], "purchase", "succeeded", "1", "200"),
    }


def test_one_delivery_shows_every_attempt(cli, api, receiver):
    source = make_source(api)
    receiver.script(Reply(500, body="boom\nline two"), Reply(503))
    create_webhook(cli, receiver.url)
    event_id = send(api, source)
    receiver.wait_for(3)
    [delivery] = succeeded(cli, 1)

    by_id = cli("destinations", "deliveries", "hooks", delivery["id"], "-o", "json")
    by_event = cli("destinations", "deliveries", "hooks", event_id, "-o", "json")
    table = cli("destinations", "deliveries", "hooks", delivery["id"], "-o", "table")
    plain = cli("destinations", "deliveries", "hooks", delivery["id"])

    assert by_id.exit_code == by_event.exit_code == table.exit_code == 0, by_id.stderr
    assert by_id.json() == by_event.json()
    history = by_id.json()["history"]
    assert [(a["n"], a["outcome"], a["responseStatus"]) for a in history] == [
        (1, "transient", 500),
        (2, "transient", 503),
        (3, "success", 200),
    ]
    assert "boom | line two" in table.stdout
    assert [line.split("\t")[2:4] for line in plain.stdout.splitlines()] == [
        ["transient", "500"],
        ["transient", "503"],
        ["success", "200"],
    ]
    missing = cli("destinations", "deliveries", "hooks", "dlv_nope")
    assert missing.exit_code == 3, missing.stderr


def test_failing_receiver_fails_after_the_last_attempt_and_replay_delivers(cli, api, receiver):
    source = make_source(api)
    receiver.default = Reply(500, body="down for maintenance")
    create_webhook(cli, receiver.url)
    events = [send(api, source, n=i) for i in range(2)]

    failed = eventually(lambda: len(deliveries_json(cli, "hooks", "--status", "failed")) == 2)
    assert failed
    listed = deliveries_json(cli, "hooks", "--status", "failed")
    assert sorted(d["eventId"] for d in listed) == sorted(events)
    assert all(d["attempts"] == 3 and d["responseStatus"] == 500 for d in listed)
    assert all("nextAttemptAt" not in d for d in listed)
    table = cli("destinations", "deliveries", "hooks", "--status", "failed", "-o", "table")
    assert table.stdout.split().count("failed") == 2 and "500" in table.stdout

    receiver.default = Reply(200)
    receiver.clear()
    replayed = cli("destinations", "replay", "hooks", "--failed", "-o", "table")
    assert replayed.exit_code == 0, replayed.stderr
    assert replayed.stdout.strip() == "Queued 2 failed deliveries of hooks again."
    assert sorted(r.json()["id"] for r in receiver.wait_for(2)) == sorted(events)
    done = succeeded(cli, 2)
    assert len(done) == 2 and all(d["attempts"] == 4 for d in done)
    again = cli("destinations", "replay", "hooks", "--failed", "--since", "1h", "-o", "json")
    assert again.exit_code == 0 and again.json() == {"queued": 0}


def test_replay_needs_failed_and_a_valid_since(cli, api, receiver):
    create_webhook(cli, receiver.url)
    assert cli("destinations", "replay", "hooks").exit_code == 2
    bad = cli("destinations", "replay", "hooks", "--failed", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_test_against_a_failing_receiver_exits_1_with_the_attempt(cli, api, receiver):
    receiver.default = Reply(500, body="first line\nsecond line\nthird\nfourth")
    create_webhook(cli, receiver.url)

    as_json = cli("destinations", "test", "hooks", "-o", "json")
    plain = cli("destinations", "test", "hooks")

    assert as_json.exit_code == plain.exit_code == 1
    attempt = as_json.json()
    assert attempt["outcome"] == "transient" and attempt["responseStatus"] == 500
    fields = dict(line.split("\t", 1) for line in plain.stdout.splitlines())
    assert fields["responseStatus"] == "500"
    assert fields["answer"] == "first line | second line | third"
    assert int(fields["durationMs"]) >= 0
    assert plain.stderr.strip().splitlines() == ["Error: test delivery failed: transient (500)"]


def send_at_first_pause(api, source: dict, receiver) -> tuple[list[str], Callable[[float], None]]:
    """``(sent, sleep)`` for a follow run: the first pause between polls sends an event
    (its id lands in ``sent``) and waits until its first attempt reached the receiver;
    every pause then really sleeps. Clear ``sent`` to send again on the next run."""
    sent: list[str] = []

    def sleep(seconds: float) -> None:
        if not sent:
            sent.append(send(api, source))
            receiver.wait_for(1)
        time.sleep(seconds)

    return sent, sleep


def test_follow_prints_attempts_as_they_happen(cli, api, receiver, server_settings):
    source = make_source(api)
    server_settings.delivery_schedule = (0.5,)  # polls every 0.1 s see the retry wait
    receiver.script(Reply(500))
    create_webhook(cli, receiver.url)
    sent, sleep = send_at_first_pause(api, source, receiver)

    result = cli(
        "destinations",
        "deliveries",
        "hooks",
        "--follow",
        "--duration",
        "1.5s",
        "--interval",
        "0.1",
        "-o",
        "ndjson",
        sleep=sleep,
    )

    assert result.exit_code == 0, result.stderr
    lines = result.ndjson()
    assert lines, "no attempt printed"
    assert {line["eventId"] for line in lines} == set(sent)
    assert lines[-1]["status"] == "succeeded" and lines[-1]["attempts"] == 2
    failing = [line for line in lines if line.get("responseStatus") == 500]
    assert failing and failing[0]["status"] == "pending" and failing[0]["attempts"] == 1
    # Each line is a change: no line repeats the one before.
    changes = [(line["attempts"], line["status"]) for line in lines]
    assert len(changes) == len(set(changes))
    assert result.stderr.strip() == f"{len(lines)} delivery updates shown."
    assert len(lines) >= 2


def test_follow_ctrl_c_prints_its_summary_and_exits_130(cli, api, receiver):
    source = make_source(api)
    create_webhook(cli, receiver.url)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            send(api, source)
            receiver.wait_for(1)
            time.sleep(0.3)
        else:
            raise KeyboardInterrupt

    result = cli("destinations", "deliveries", "hooks", "--follow", sleep=sleep)

    assert result.exit_code == 130
    assert len(result.stdout.splitlines()) == 1
    assert "1 delivery update shown." in result.stderr


def test_follow_plain_and_table_lines(cli, api, receiver):
    source = make_source(api)
    create_webhook(cli, receiver.url)
    sent, sleep = send_at_first_pause(api, source, receiver)

    for fmt in ("plain", "table"):
        sent.clear()
        receiver.clear()
        result = cli(
            "destinations",
            "deliveries",
            "hooks",
            "-f",
            "-d",
            "0.8s",
            "--interval",
            "0.1",
            "-o",
            fmt,
            sleep=sleep,
        )
        assert result.exit_code == 0, result.stderr
        last = result.stdout.splitlines()[-1]
        assert sent[0] in last and "succeeded" in last and "200" in last
        if fmt == "plain":
            assert last.split("\t")[2:6] == [sent[0], "succeeded", "1", "200"]


def test_disable_holds_and_enable_resumes(cli, api, receiver, server_settings):
    source = make_source(api)
    server_settings.delivery_schedule = (1.0,)  # the retry waits long enough to disable
    receiver.script(Reply(500))
    created = create_webhook(cli, receiver.url)
    event_id = send(api, source)
    receiver.wait_for(1)

    disabled = cli("destinations", "disable", "hooks", "-o", "json")
    assert disabled.exit_code == 0, disabled.stderr
    assert disabled.json()["status"] == "inactive"
    send(api, source)  # while inactive: no delivery at all
    time.sleep(1.5)
    assert len(receiver.requests) == 1  # the pending retry waits
    [pending] = deliveries_json(cli, "hooks")
    assert pending["eventId"] == event_id and pending["status"] == "pending"

    enabled = cli("destinations", "enable", created["id"], "-o", "table")
    assert enabled.exit_code == 0
    assert enabled.stderr.strip() == f"Enabled destination hooks ({created['id']})"
    assert receiver.wait_for(2)[1].json()["id"] == event_id
    [done] = succeeded(cli, 1)
    assert done["eventId"] == event_id


def test_get_update_keeps_the_secret_and_masks_it(cli, api, receiver):
    created = create_webhook(cli, receiver.url, "hooks", "-H", "X-A: 1")
    secret = created["config"]["signingSecret"]

    updated = cli(
        "destinations",
        "update",
        "hooks",
        "--name",
        "renamed",
        "--url",
        receiver.url + "/v2",
        "--header",
        "X-B:2",
        "-o",
        "json",
    )
    assert updated.exit_code == 0, updated.stderr
    assert updated.json()["name"] == "renamed"
    assert updated.json()["config"] == {
        "url": receiver.url + "/v2",
        "headers": {"X-A": "1", "X-B": "2"},
        "signingSecret": secret,
    }
    replaced = cli(
        "destinations", "update", created["id"], "--config", f'{{"url": "{receiver.url}"}}'
    )
    assert replaced.exit_code == 0, replaced.stderr
    stored = api.get(f"/streams/destinations/{created['id']}").json()
    assert stored["config"] == {"url": receiver.url, "signingSecret": secret}

    for fmt in ("table", "plain"):
        shown = cli("destinations", "get", "renamed", "-o", fmt)
        assert shown.exit_code == 0 and secret not in shown.stdout
        assert created["id"] in shown.stdout
    for fmt in ("json", "yaml"):
        shown = cli("destinations", "get", created["id"], "-o", fmt)
        assert shown.exit_code == 0 and secret in shown.stdout
    assert cli("destinations", "update", "renamed").exit_code == 2  # nothing to change
    bad = cli("destinations", "update", "renamed", "--url", "ftp://x", "-o", "json")
    assert bad.exit_code == 2 and "config.url" in bad.stderr
    assert cli("destinations", "update", "renamed", "-H", "novalue").exit_code == 2


def test_create_on_a_terminal_shows_the_secret_once(cli, receiver):
    result = cli("destinations", "create", "--name", "hooks", "--url", receiver.url, tty=True)

    assert result.exit_code == 0, result.stderr
    [secret_line] = [line for line in result.stdout.splitlines() if "whsec_" in line]
    secret = secret_line.split()[-1]
    assert "standardwebhooks" in result.stdout
    assert result.stdout.count(secret) == 1
    listed = cli("destinations", "list", "-o", "table", tty=True)
    assert secret not in listed.stdout
    assert cli("destinations", "list", "-o", "json").json()[0]["config"]["signingSecret"] == secret
    assert cli("destinations", "create", "--name", "x").exit_code == 2  # no --type, no --url


def test_delete_asks_and_yes_deletes(cli, api, receiver):
    created = create_webhook(cli, receiver.url)

    piped = cli("destinations", "delete", "hooks")
    declined = cli("destinations", "delete", "hooks", tty=True, input="n\n")
    assert piped.exit_code == 2 and "--yes" in piped.stderr
    assert declined.exit_code == 1 and "Nothing deleted." in declined.stderr
    assert stored_destinations(api) == [created]

    confirmed = cli("destinations", "delete", "hooks", tty=True, input="y\n")
    assert confirmed.exit_code == 0, confirmed.stderr
    assert stored_destinations(api) == []
    create_webhook(cli, receiver.url, "again")
    assert cli("destinations", "delete", "again", "--yes").exit_code == 0
    assert stored_destinations(api) == []
    gone = cli("destinations", "get", created["id"], "-o", "json")
    assert gone.exit_code == 3
    assert json.loads(gone.stderr.strip().splitlines()[-1])["error"]["exitCode"] == 3
    assert cli("destinations", "get", "no-such-name").exit_code == 3


@pytest.mark.parametrize("group", ["sources", "destinations"])
def test_sources_and_destinations_confirm_a_delete_the_same_way(cli, api, receiver, group):
    # One owner (Context.require_yes_off_terminal / confirm_delete): the two groups
    # cannot drift apart in what they ask, when, and what a "no" or a pipe does.
    if group == "sources":
        created = cli(
            "sources", "create", "--name", "kept", "--type", "server", "-o", "json"
        ).json()
        consequence = f"Source kept ({created['id']}) and all its events will be deleted."
    else:
        created = create_webhook(cli, receiver.url, "kept")
        consequence = f"Destination kept ({created['id']}) and its deliveries will be deleted."
    kind = group[:-1]

    piped = cli(group, "delete", "kept")
    declined = cli(group, "delete", "kept", tty=True, input="n\n")

    assert piped.exit_code == 2
    assert (
        piped.stderr.strip()
        .splitlines()[-1]
        .endswith(f"deleting a {kind} needs --yes when not run from a terminal")
    )
    assert declined.exit_code == 1
    question, prompt = declined.stderr.splitlines()
    assert question == consequence
    assert prompt.startswith("Delete it? [y/N]:") and prompt.endswith("Nothing deleted.")
    assert api.get(f"/streams/{group}/{created['id']}").status_code == 200
    confirmed = cli(group, "delete", "kept", tty=True, input="y\n")
    assert confirmed.exit_code == 0, confirmed.stderr
    assert api.get(f"/streams/{group}/{created['id']}").status_code == 404


def test_several_destinations_of_one_name_need_an_id(cli, receiver):
    create_webhook(cli, receiver.url, "twin")
    create_webhook(cli, receiver.url, "twin")
    result = cli("destinations", "get", "twin")
    assert result.exit_code == 2 and "use an id" in result.stderr


@pytest.mark.parametrize("fmt", ["table", "plain", "json", "ndjson", "yaml", "csv"])
def test_every_format_of_the_delivery_commands(cli, api, receiver, fmt):
    import yaml

    source = make_source(api)
    created = create_webhook(cli, receiver.url)
    event_id = send(api, source)
    receiver.wait_for(1)
    succeeded(cli, 1)

    runs = {
        "get": cli("destinations", "get", "hooks", "-o", fmt),
        "deliveries": cli("destinations", "deliveries", "hooks", "-o", fmt),
        "one": cli("destinations", "deliveries", "hooks", event_id, "-o", fmt),
        "test": cli("destinations", "test", "hooks", "-o", fmt),
        "replay": cli("destinations", "replay", "hooks", "--failed", "-o", fmt),
        "disable": cli("destinations", "disable", "hooks", "-o", fmt),
    }
    for name, result in runs.items():
        assert result.exit_code == 0, (name, result.stderr)
        assert result.stdout.strip() or (fmt == "table" and name == "disable"), name
    if fmt == "json":
        assert runs["get"].json()["id"] == created["id"]
        assert runs["deliveries"].json()[0]["eventId"] == event_id
        assert runs["one"].json()["history"][0]["outcome"] == "success"
        assert runs["replay"].json() == {"queued": 0}
    elif fmt == "ndjson":
        assert runs["deliveries"].ndjson()[0]["eventId"] == event_id
        assert runs["test"].ndjson()[0]["outcome"] == "success"
    elif fmt == "yaml":
        assert yaml.safe_load(runs["deliveries"].stdout)[0]["eventId"] == event_id
        assert yaml.safe_load(runs["one"].stdout)["eventId"] == event_id
    elif fmt == "csv":
        row = next(csv.DictReader(io.StringIO(runs["deliveries"].stdout)))
        assert row["eventId"] == event_id and row["status"] == "succeeded"


# -- against a server that implements the spec and nothing more ------------------------


@pytest.fixture
def spec_only(run_cli, api):
    """Run ``boltic ARGS`` against the real app behind a spec-only wrapper (404 for
    every route the spec lacks); ``.transport`` records what was asked."""
    transport = SpecOnlyTransport(AppTransport(api))

    def run(*args: str, **kwargs):
        env = {"BOLTIC_API_URL": "http://testserver/v1", "BOLTIC_TOKEN": ADMIN_TOKEN}
        return run_cli(*args, env=env, transport=transport, **kwargs)

    run.transport = transport
    return run


@pytest.mark.parametrize(
    "args",
    [
        ("update", "hooks", "--name", "x"),
        ("enable", "hooks"),
        ("disable", "DST_ID"),
        ("delete", "hooks", "--yes"),
        ("test", "hooks"),
        ("deliveries", "hooks"),
        ("deliveries", "hooks", "dlv_1"),
        ("deliveries", "DST_ID", "--follow", "--duration", "1s"),
        ("replay", "hooks", "--failed"),
    ],
    ids=lambda a: "-".join(a[:3]),
)
@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_extension_commands_say_the_server_does_not_offer_them(spec_only, api, args, fmt):
    created = api.post(
        "/streams/destinations",
        json={"name": "hooks", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
    ).json()
    args = tuple(created["id"] if a == "DST_ID" else a for a in args)

    result = spec_only("destinations", *args, "-o", fmt)

    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    if fmt == "json":  # the line, then the same error as JSON
        assert len(lines) == 2
        error = json.loads(lines[-1])["error"]
        assert "does not offer" in error["message"] and error["exitCode"] == 1
    else:
        [line] = lines
        assert line.startswith("Error: this server does not offer ")
        assert line.endswith("is a boltic server extension)")
    assert spec_only.transport.refused, "the extension route was never asked"
    assert stored_destinations(api) == [created]  # nothing changed


def test_spec_only_get_and_unknown_ids_use_the_list(spec_only, api):
    created = api.post(
        "/streams/destinations",
        json={"name": "hooks", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
    ).json()

    by_id = spec_only("destinations", "get", created["id"], "-o", "json")
    by_name = spec_only("destinations", "get", "hooks", "-o", "json")
    unknown = spec_only("destinations", "test", "dst_unknown")

    assert by_id.exit_code == by_name.exit_code == 0, by_id.stderr
    assert by_id.json() == by_name.json() == created
    assert unknown.exit_code == 3, unknown.stderr


def test_unknown_destination_id_is_not_found_not_a_missing_extension(cli):
    result = cli("destinations", "deliveries", "dst_unknown", "-o", "json")
    assert result.exit_code == 3
    assert json.loads(result.stderr.strip().splitlines()[-1])["error"]["code"] == 404


# -- shell completion of DEST -----------------------------------------------------------

from tests.test_completion import api_env, complete, server  # noqa: E402, F401


@pytest.mark.e2e
@pytest.mark.parametrize(
    "line",
    ["boltic destinations get ", "boltic destinations deliveries ", "boltic destinations test "],
)
def test_dest_completes_ids_and_names(complete, api_env, server, line):  # noqa: F811
    import httpx

    made = [
        httpx.post(
            f"{server.url}/streams/destinations",
            json={"name": name, "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).json()
        for name in ("hooks", "my hooks")
    ]

    result = complete(line, env=api_env)

    assert result.returncode == 0 and result.stderr == ""
    assert {d["id"] for d in made} | {"hooks"} <= set(result.lines)
    assert "my hooks" not in result.stdout  # two shell words; its id still completes


# -- the client's decision: a missing route, or a missing destination ------------------


@pytest.mark.parametrize(
    ("status", "body", "missing_route"),
    [
        (405, {"code": 405, "message": "method not allowed"}, True),
        (404, None, True),  # no Error body at all
        (404, {"code": 404, "message": "Not Found", "details": "no route GET /x"}, True),
        (404, {"code": 404, "message": "not found", "details": "/streams/x"}, True),
        (404, {"code": 404, "message": "destination not found", "details": "no dst_1"}, False),
    ],
)
def test_extension_route_missing_or_destination_missing(status, body, missing_route):
    import httpx

    from boltic_cli.client import BolticClient
    from boltic_cli.errors import ExtensionUnavailable, NotFound

    def answer(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, text="<html>nope</html>")
        return httpx.Response(status, json=body)

    expected = ExtensionUnavailable if missing_route else NotFound
    transport = httpx.MockTransport(answer)
    with (
        BolticClient("http://api.test/v1", "t", transport=transport) as client,
        pytest.raises(expected) as caught,
    ):
        client.test_stream_destination("dst_1")
    if missing_route:
        assert caught.value.exit_status == 1
        assert "POST /streams/destinations/{id}/test" in caught.value.message
    else:
        assert caught.value.exit_status == 3


# -- end to end: the installed boltic, a `boltic server` process, a real receiver -------


@pytest.mark.e2e
def test_readme_flow_end_to_end(tmp_path, receiver):
    """The README's Destinations example, with the installed `boltic`."""
    import os
    import subprocess

    from tests.support import BOLTIC, ServerProcess

    with ServerProcess(tmp_path / "e2e.db", token=ADMIN_TOKEN, home=tmp_path) as process:
        env = {**process.env, "BOLTIC_API_URL": process.url, "BOLTIC_TOKEN": ADMIN_TOKEN}
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")

        def boltic(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [BOLTIC, *args], env=env, capture_output=True, text=True, timeout=60
            )

        source = boltic("sources", "create", "--name", "website", "--type", "javascript")
        assert source.returncode == 0, source.stderr
        made = boltic(
            "destinations", "create", "--name", "hooks", "--url", receiver.url,
            "--event-type", "signup", "--source", "website", "--header", "X-Team: growth",
            "-o", "json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        secret = json.loads(made.stdout)["config"]["signingSecret"]

        tested = boltic("destinations", "test", "hooks")
        assert tested.returncode == 0, tested.stderr
        sent = boltic("events", "send", "website", "--type", "signup", "-p", "plan=pro")
        assert sent.returncode == 0, sent.stderr
        probe, delivered = receiver.wait_for(2)
        assert verify(secret, probe)["type"] == "boltic.test"
        event = verify(secret, delivered)
        assert event["type"] == "signup" and event["properties"] == {"plan": "pro"}

        def listed() -> list[dict]:
            result = boltic("destinations", "deliveries", "hooks", "-o", "json")
            assert result.returncode == 0, result.stderr
            return [d for d in json.loads(result.stdout) if d["status"] == "succeeded"]

        [delivery] = eventually(listed, timeout=20)
        assert delivery["eventId"] == event["id"]
        assert delivered.headers["webhook-id"] == delivery["id"]


def test_delivery_statuses_are_the_models_in_the_same_order():
    # Two declarations (the command's keeps pydantic out of startup); typing caches
    # `Literal[...] | None` by the set of values, so a different order would make
    # `--status`'s help depend on which module was imported first.
    from boltic_cli import models
    from boltic_cli.commands import destinations

    assert destinations.DeliveryStatus.__args__ == models.DeliveryStatus.__args__
