"""Batch ingest from the client side: BolticClient.send_events and ``events send --file``
over POST /streams/events/batch, against the real server app (and the same app with
the batch route hidden, as a spec-only server would answer)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import httpx
import pytest

from boltic_cli.errors import ExtensionUnavailable, UsageError
from boltic_cli.models import EventInput
from boltic_cli.sender import BulkSender, InputItem, message_id_for
from tests.conftest import ADMIN_TOKEN
from tests.spec_only import SpecOnlyTransport
from tests.support import AppTransport


def batch_calls(transport: SpecOnlyTransport) -> int:
    return transport.refused.count(("POST", "/streams/events/batch"))


BATCH_PATH = "/v1/streams/events/batch"


class BatchRouteAnswers(httpx.BaseTransport):
    """The app with the batch route answering ``status`` (405: a server that routes the
    path but not the method; 500: a broken one); counts what was asked. For 404 (a
    spec-only server) the tests use ``tests.spec_only.SpecOnlyTransport``."""

    def __init__(self, inner: httpx.BaseTransport, status: int) -> None:
        self.inner, self.status = inner, status
        self.batch_calls = 0
        self.calls = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls += 1
        if request.url.path == BATCH_PATH:
            with self.lock:
                self.batch_calls += 1
            body = {"code": self.status, "message": "not found", "details": "no such route"}
            return httpx.Response(self.status, json=body, request=request)
        return self.inner.handle_request(request)


class SmallBodyProxy(httpx.BaseTransport):
    """A proxy in front of the server that refuses bodies over ``limit`` bytes with 413."""

    def __init__(self, inner: httpx.BaseTransport, limit: int) -> None:
        self.inner, self.limit = inner, limit
        self.sizes: list[tuple[int, int]] = []  # (body bytes, status)
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        size = len(request.read())
        if size > self.limit:
            with self.lock:
                self.sizes.append((size, 413))
            return httpx.Response(413, text="<html>413 Request Entity Too Large</html>")
        response = self.inner.handle_request(request)
        with self.lock:
            self.sizes.append((size, response.status_code))
        return response


class LosesFirstAnswer(httpx.BaseTransport):
    """Passes every request on, but answers the first batch with 503 after the server
    handled it (the answer lost on the way back): the client must retry with the same
    Idempotency-Key."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path != BATCH_PATH:
            return response
        self.keys.append(request.headers["idempotency-key"])
        if len(self.keys) == 1:
            response.read()
            return httpx.Response(503, json={"code": 503, "message": "bad gateway"})
        return response


@pytest.fixture
def cli_over(run_cli):
    """Run ``boltic ARGS`` as admin with the CLI's HTTP going through ``transport``."""

    def run(transport: httpx.BaseTransport, *args: str, **kwargs):
        env = {"BOLTIC_API_URL": "http://testserver/v1", "BOLTIC_TOKEN": ADMIN_TOKEN}
        return run_cli(*args, env=env, transport=transport, **kwargs)

    return run


def total_events(api, **params) -> int:
    response = api.get("/streams/events", params={"limit": 1, **params})
    assert response.status_code == 200
    return response.json()["summary"]["totalEvents"]


def stored_ns(api, source_id: str) -> list[int]:
    from boltic_cli.client import BolticClient

    with BolticClient("http://testserver/v1", ADMIN_TOKEN, transport=AppTransport(api)) as c:
        return sorted(e.properties["n"] for e in c.iter_events(source_id=source_id))


def client_over(transport: httpx.BaseTransport):
    from boltic_cli.client import BolticClient

    return BolticClient(
        "http://testserver/v1", ADMIN_TOKEN, transport=transport, sleep=lambda s: None
    )


# BolticClient.send_events


def test_send_events_answers_one_typed_result_per_item_in_order(api, source):
    items = [
        {"sourceId": source["id"], "type": "a", "properties": {"n": 1}},
        {"sourceId": source["id"], "properties": {}},  # no type
        EventInput(source_id=source["id"], type="c"),
        {"sourceId": "src_missing000000000000000000", "type": "d"},
    ]
    with client_over(AppTransport(api)) as client:
        result = client.send_events(items)

    assert (result.accepted, result.rejected) == (2, 2)
    assert [(e.index, e.status) for e in result.data] == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "accepted"),
        (3, "rejected"),
    ]
    assert result.data[1].error.code == 422 and "type" in result.data[1].error.details
    assert result.data[3].error.code == 404
    stored = api.get("/streams/events").json()["data"]
    assert sorted(e["id"] for e in stored) == sorted(
        [result.data[0].event_id, result.data[2].event_id]
    )


def test_send_events_same_key_stores_once(api, source):
    items = [{"sourceId": source["id"], "type": "k", "properties": {"n": n}} for n in range(3)]
    with client_over(AppTransport(api)) as client:
        first = client.send_events(items, idempotency_key="batch-1")
        again = client.send_events(items, idempotency_key="batch-1")

    assert [e.event_id for e in first.data] == [e.event_id for e in again.data]
    assert total_events(api) == 3


@pytest.mark.parametrize("status", [404, 405])
def test_send_events_on_a_spec_only_server_raises_extension_unavailable(api, source, status):
    transport = (
        SpecOnlyTransport(AppTransport(api))
        if status == 404
        else BatchRouteAnswers(AppTransport(api), status)
    )
    with (
        client_over(transport) as client,
        pytest.raises(ExtensionUnavailable) as info,
    ):
        client.send_events([{"sourceId": source["id"], "type": "x"}])
    assert info.value.status == status
    assert "batch" in info.value.message
    assert info.value.exit_status == 1


def test_send_events_refuses_empty_and_over_long_lists_before_any_request(api, source):
    transport = SpecOnlyTransport(AppTransport(api))
    with client_over(transport) as client:
        with pytest.raises(UsageError):
            client.send_events([])
        with pytest.raises(UsageError):
            client.send_events([{"sourceId": source["id"], "type": "x"}] * 501)
        with pytest.raises(UsageError):
            client.send_events([{"sourceId": source["id"], "type": "x", "v": float("nan")}])
    assert transport.requests == []


def test_a_batch_whose_answer_was_lost_is_retried_with_its_key_and_stored_once(api, source):
    transport = LosesFirstAnswer(AppTransport(api))
    items = [{"sourceId": source["id"], "type": "r", "properties": {"n": n}} for n in range(40)]
    with client_over(transport) as client:
        result = client.send_events(items)

    assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
    assert result.accepted == 40
    assert total_events(api) == 40


# events send --file


def broken_file(path: Path, source_id: str, count: int) -> dict[int, str]:
    """``count`` NDJSON lines with five broken ones scattered; {line: what is wrong}."""
    broken = {
        1234: '{"sourceId": "' + source_id + '", "type": "x", "properties": {',  # bad JSON
        5678: json.dumps({"sourceId": source_id, "properties": {"n": 5677}}),  # no type
        9999: json.dumps(
            {"sourceId": source_id, "type": "big", "properties": {"n": 9998, "pad": "x" * 40000}}
        ),
        14000: '{"sourceId": "' + source_id + '", "type": "x", "properties": {"n": NaN}}',
        19990: json.dumps({"sourceId": "src_nosuchsource0000000000000", "type": "x"}),
    }
    with path.open("w", encoding="utf-8") as f:
        for line in range(1, count + 1):
            text = broken.get(line) or json.dumps(
                {"sourceId": source_id, "type": f"t{line % 7}", "properties": {"n": line - 1}}
            )
            f.write(text + "\n")
    return broken


@pytest.mark.slow
@pytest.mark.parametrize("server", ["batch", "spec-only"])
def test_20000_lines_with_5_broken_ones(cli_over, api, source, tmp_path, server):
    path = tmp_path / "events.ndjson"
    broken = broken_file(path, source["id"], 20000)
    transport = SpecOnlyTransport(AppTransport(api)) if server == "spec-only" else AppTransport(api)

    result = cli_over(transport, "events", "send", "--file", str(path))

    assert result.exit_code == 1, result.stderr
    reported = [int(n) for n in re.findall(r"^line (\d+): ", result.stderr, re.MULTILINE)]
    assert sorted(reported) == sorted(broken)
    assert "Sent 20,000 events in " in result.stderr
    assert "(19,995 accepted, 5 failed; " in result.stderr
    assert total_events(api) == 19995
    if server == "spec-only":
        assert batch_calls(transport) == 1  # decided once, by the first batch


@pytest.mark.parametrize("server", ["batch", "spec-only"])
def test_both_ways_report_the_same_failures_as_json(cli_over, api, source, tmp_path, server):
    path = tmp_path / "events.ndjson"
    broken = broken_file(path, source["id"], 20000)
    text = path.read_text().splitlines()
    # The lines around each broken one, so this stays quick: line numbers kept by
    # blanking the rest (blank lines are skipped).
    keep = {n for line in broken for n in range(line - 3, line + 3)}
    path.write_text("\n".join(t if n + 1 in keep else "" for n, t in enumerate(text)) + "\n")
    transport = SpecOnlyTransport(AppTransport(api)) if server == "spec-only" else AppTransport(api)

    result = cli_over(transport, "events", "send", "--file", str(path), "-o", "json")

    assert result.exit_code == 1
    summary = result.json()
    assert (summary["sent"], summary["failed"]) == (len(keep) - 5, 5)
    failures = {}
    for line in result.stderr.splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if "line" in record:
            failures[record["line"]] = record["error"]
    assert set(failures) == set(broken)
    assert failures[1234]["message"].startswith("invalid JSON")
    assert failures[5678] == {
        "code": 422,
        "message": "invalid event",
        "details": "type: field required",
    }
    assert failures[9999]["message"] == "event too large"
    assert "JSON" in failures[14000]["message"]
    assert failures[19990]["code"] == 404
    assert total_events(api) == len(keep) - 5


def test_message_ids_make_a_second_run_store_nothing(cli, api, source, tmp_path):
    path = tmp_path / "events.ndjson"
    lines = [
        json.dumps({"sourceId": source["id"], "type": "m", "properties": {"n": n}})
        for n in range(1200)
    ]
    lines[7] = json.dumps(
        {"sourceId": source["id"], "type": "m", "messageId": "mine-1", "properties": {"n": 7}}
    )
    path.write_text("\n".join(lines) + "\n")

    first = cli("events", "send", "--file", str(path), "--message-ids", "-o", "json")
    # A crash after part of it: the same file again, this time one by one.
    again = cli("events", "send", "--file", str(path), "--message-ids", "--no-batch", "-o", "json")
    batched_again = cli("events", "send", "--file", str(path), "--message-ids", "-o", "json")

    assert first.exit_code == again.exit_code == batched_again.exit_code == 0
    assert first.json()["sent"] == again.json()["sent"] == 1200
    assert total_events(api) == 1200
    assert stored_ns(api, source["id"]) == list(range(1200))
    with client_over(AppTransport(api)) as client:
        ids = {e.message_id for e in client.iter_events(source_id=source["id"])}
    assert "mine-1" in ids and all(i == "mine-1" or i.startswith("boltic-") for i in ids)
    without = cli("events", "send", "--file", str(path), "-o", "json")
    assert without.json()["sent"] == 1200 and total_events(api) == 1200 + 1199  # mine-1 deduped


def test_message_id_depends_on_content_and_place():
    a = InputItem(3, body={"type": "x", "properties": {"a": 1, "b": 2}})
    same = InputItem(3, body={"properties": {"b": 2, "a": 1}, "type": "x"})
    assert message_id_for(a) == message_id_for(same)
    assert message_id_for(a) != message_id_for(InputItem(4, body=a.body))
    assert message_id_for(a) != message_id_for(InputItem(3, body={"type": "y"}))
    assert message_id_for(a) != message_id_for(InputItem(3, body=a.body, item=2))
    assert 1 <= len(message_id_for(a)) <= 100


def test_a_413_from_a_proxy_splits_the_batch(cli_over, api, source, tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_text(
        "\n".join(
            json.dumps(
                {"sourceId": source["id"], "type": "p", "properties": {"n": n, "pad": "y" * 200}}
            )
            for n in range(1000)
        )
        + "\n"
    )
    proxy = SmallBodyProxy(AppTransport(api), limit=64 * 1024)

    result = cli_over(proxy, "events", "send", "--file", str(path), "-o", "json")

    assert result.exit_code == 0, result.stderr
    assert result.json() == {**result.json(), "sent": 1000, "failed": 0}
    assert any(status == 413 for _, status in proxy.sizes)
    assert all(size <= 64 * 1024 for size, status in proxy.sizes if status == 200)
    assert stored_ns(api, source["id"]) == list(range(1000))


def test_an_event_a_proxy_refuses_even_alone_fails_that_line(cli_over, api, source):
    small = json.dumps({"sourceId": source["id"], "type": "s", "properties": {"n": 0}})
    large = json.dumps(
        {"sourceId": source["id"], "type": "s", "properties": {"n": 1, "pad": "z" * 3000}}
    )
    proxy = SmallBodyProxy(AppTransport(api), limit=2000)

    result = cli_over(proxy, "events", "send", "--file", "-", input=f"{small}\n{large}\n")

    assert result.exit_code == 1
    assert re.findall(r"^line (\d+): .*HTTP 413", result.stderr, re.MULTILINE) == ["2"]
    assert total_events(api) == 1


@pytest.mark.parametrize("fmt", ["plain", "ndjson"])
def test_print_ids_prints_each_accepted_event_with_its_line(cli, api, source, fmt):
    lines = [
        json.dumps({"sourceId": source["id"], "type": "i", "properties": {"n": n}})
        for n in range(30)
    ]
    lines[4] = "{oops"
    result = cli(
        "events", "send", "--file", "-", "--print-ids", "--batch-size", "7", "-o", fmt,
        input="\n".join(lines),
    )  # fmt: skip

    assert result.exit_code == 1
    if fmt == "ndjson":
        records = [r for r in result.ndjson() if "eventId" in r]
        printed = {r["line"]: r["eventId"] for r in records}
        assert result.ndjson()[-1]["sent"] == 29
    else:
        printed = {int(a): b for a, b in (row.split("\t") for row in result.stdout.splitlines())}
    assert sorted(printed) == [n for n in range(1, 31) if n != 5]
    stored = {e["id"]: e["properties"]["n"] for e in api.get("/streams/events").json()["data"]}
    assert {line: stored[event_id] + 1 for line, event_id in printed.items()} == {
        line: line for line in printed
    }


def test_print_ids_of_a_json_array_name_the_item(cli, api, source):
    text = '[{"type": "a"}, {"type": "b"},\n {"type": "c"}]'
    result = cli("events", "send", source["id"], "--file", "-", "--print-ids", input=text)

    assert result.exit_code == 0, result.stderr
    rows = sorted(tuple(row.split("\t")[:2]) for row in result.stdout.splitlines())
    assert rows == [("1", "1"), ("1", "2"), ("2", "3")]


def test_write_key_sends_batches_to_its_own_source(cli, api, source):
    other = api.post("/streams/sources", json={"name": "other", "type": "server"}).json()
    lines = [
        json.dumps({"sourceId": source["id"], "type": "w", "properties": {"n": n}})
        for n in range(20)
    ]
    lines[10] = json.dumps({"sourceId": other["id"], "type": "w", "properties": {"n": 10}})
    result = cli(
        "events",
        "send",
        "--file",
        "-",
        input="\n".join(lines),
        env={"BOLTIC_TOKEN": source["writeKey"]},
    )

    assert result.exit_code == 1
    assert re.findall(r"^line (\d+): .*HTTP 403", result.stderr, re.MULTILINE) == ["11"]
    assert total_events(api) == 19


def test_batch_size_and_byte_budget_bound_every_request(api, source):
    sizes: list[int] = []

    class Recorder(httpx.BaseTransport):
        def __init__(self, inner):
            self.inner = inner

        def handle_request(self, request):
            if request.url.path == BATCH_PATH:
                sizes.append(len(json.loads(request.read())["batch"]))
            return self.inner.handle_request(request)

    items = [
        InputItem(
            n + 1, body={"sourceId": source["id"], "type": "b", "properties": {"pad": "q" * 20000}}
        )
        for n in range(60)
    ]
    items += [InputItem(61 + n, body={"sourceId": source["id"], "type": "b"}) for n in range(30)]
    with client_over(Recorder(AppTransport(api))) as client:
        summary = BulkSender(client, batch_size=12, concurrency=2).run(items)

    assert (summary.sent, summary.failed) == (90, 0)
    # 20 KB items: 512 KiB holds 26 of them, but --batch-size caps at 12.
    assert max(sizes) == 12 and sum(sizes) == 90
    with client_over(Recorder(AppTransport(api))) as client:
        sizes.clear()
        BulkSender(client, concurrency=2).run(items[:60])
    assert max(sizes) == 26 and sum(sizes) == 60


def test_unknown_batch_route_status_other_than_404_405_is_not_a_fallback(api, source):
    items = [InputItem(n + 1, body={"sourceId": source["id"], "type": "u"}) for n in range(5)]
    with client_over(BatchRouteAnswers(AppTransport(api), status=500)) as client:
        summary = BulkSender(client).run(items)
    assert summary.failed == 5 and summary.mode == "batch"
    assert all(f.error["code"] == 500 for f in summary.failures)


def test_spec_only_server_gets_every_event_one_by_one_after_the_first_batch(api, source):
    transport = SpecOnlyTransport(AppTransport(api))
    items = [InputItem(n + 1, body={"sourceId": source["id"], "type": "s"}) for n in range(35)]
    with client_over(transport) as client:
        summary = BulkSender(client, batch_size=10, concurrency=3).run(items)

    assert (summary.sent, summary.failed, summary.mode) == (35, 0, "single")
    assert batch_calls(transport) == 1 and summary.requests == 36
    assert transport.requests.count(("POST", "/streams/events")) == 35
    assert total_events(api) == 35


def test_sample_traffic_goes_in_batches_or_one_by_one_on_a_spec_only_server(api, source):
    from boltic_cli.traffic import run_traffic

    spec_only = SpecOnlyTransport(AppTransport(api))
    with client_over(spec_only) as client:
        alone = run_traffic(client, source["id"], rate=None, count=30, duration=None, types=None)
    with client_over(AppTransport(api)) as client:
        batched = run_traffic(client, source["id"], rate=None, count=700, duration=None, types=None)

    assert (alone.sent, alone.failed, batched.sent, batched.failed) == (30, 0, 700, 0)
    assert batch_calls(spec_only) == 1
    assert spec_only.requests.count(("POST", "/streams/events")) == 30
    assert total_events(api) == 730
