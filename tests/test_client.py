"""BolticClient against httpx.MockTransport: the wire it sends, the errors it raises, retries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from boltic_cli import __version__, errors
from boltic_cli.client import (
    BACKOFF_BASE,
    LOCAL_SERVER_HINT,
    LOGIN_HINT,
    BolticClient,
)
from boltic_cli.models import EventInput, StreamDestinationInput, StreamSourceInput
from tests.support import AppTransport

TOKEN = "sekrit-admin-token-XYZ"
BASE = "https://api.example.test/v1"

SOURCE = {
    "id": "src_01J",
    "name": "web",
    "type": "javascript",
    "writeKey": "wk_abc",
    "status": "active",
    "eventsToday": 3,
    "createdAt": "2026-11-26T11:19:14.123Z",
}
EVENT = {
    "id": "evt_01J",
    "sourceId": "src_01J",
    "type": "signup",
    "properties": {"plan": "pro"},
    "timestamp": "2026-11-26T11:19:14.123Z",
    "receivedAt": "2026-11-26T11:19:14.200Z",
}
DESTINATION = {
    "id": "dst_01J",
    "name": "hook",
    "type": "webhook",
    "config": {"url": "https://example.test/hook"},
    "status": "active",
    "createdAt": "2026-11-26T11:19:14.123Z",
}


class Recorder:
    """A MockTransport that answers from a script and keeps every request it saw."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[httpx.Request], object]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def make_client(recorder: Recorder, **kwargs) -> tuple[BolticClient, list[float]]:
    slept: list[float] = []
    kwargs.setdefault("sleep", slept.append)
    client = BolticClient(
        kwargs.pop("base_url", BASE),
        kwargs.pop("token", TOKEN),
        transport=httpx.MockTransport(recorder),
        **kwargs,
    )
    return client, slept


def body_of(request: httpx.Request) -> object:
    return json.loads(request.content) if request.content else None


def ok(data: object, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=data, headers=headers)


def error(status: int, message: str = "nope", details: str | None = None, **headers: str):
    body: dict = {"code": status, "message": message}
    if details is not None:
        body["details"] = details
    return httpx.Response(status, json=body, headers=headers)


def refused(request: httpx.Request) -> Exception:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as cause:
        try:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request) from cause
        except httpx.ConnectError as e:
            return e


# The nine operations on the wire


def test_list_stream_sources():
    rec = Recorder(ok({"data": [SOURCE]}))
    client, _ = make_client(rec)
    sources = client.list_stream_sources()
    assert rec.last.method == "GET"
    assert rec.last.url.path == "/v1/streams/sources"
    assert rec.last.url.query == b""
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert rec.last.headers["user-agent"] == f"boltic-cli/{__version__}"
    assert not rec.last.content
    assert [s.id for s in sources] == ["src_01J"]
    assert sources[0].write_key == "wk_abc"
    assert sources[0].created_at == datetime(2026, 11, 26, 11, 19, 14, 123000, tzinfo=UTC)


def test_create_stream_source_from_model_and_dict():
    rec = Recorder(ok(SOURCE, 201))
    client, _ = make_client(rec)
    source = client.create_stream_source(StreamSourceInput(name="web", type="javascript"))
    assert (rec.last.method, rec.last.url.path) == ("POST", "/v1/streams/sources")
    assert body_of(rec.last) == {"name": "web", "type": "javascript"}
    assert rec.last.headers["content-type"] == "application/json"
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert uuid.UUID(rec.last.headers["idempotency-key"])
    assert source.status == "active"

    client.create_stream_source({"name": "srv", "type": "server"})
    assert body_of(rec.last) == {"name": "srv", "type": "server"}


def test_get_stream_source_quotes_the_id():
    rec = Recorder(ok(SOURCE))
    client, _ = make_client(rec)
    assert client.get_stream_source("src_01J").name == "web"
    assert (rec.last.method, rec.last.url.path) == ("GET", "/v1/streams/sources/src_01J")
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    client.get_stream_source("../destinations")
    assert rec.last.url.raw_path == b"/v1/streams/sources/..%2Fdestinations"


def test_delete_stream_source():
    rec = Recorder(httpx.Response(204))
    client, _ = make_client(rec)
    assert client.delete_stream_source("src_01J") is None
    assert (rec.last.method, rec.last.url.path) == ("DELETE", "/v1/streams/sources/src_01J")
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert "idempotency-key" not in rec.last.headers


def test_debug_stream_source_with_and_without_limit():
    answer = {"data": [EVENT], "connected": True, "lastEventAt": "2026-11-26T11:19:14.200Z"}
    rec = Recorder(ok(answer))
    client, _ = make_client(rec)
    result = client.debug_stream_source("src_01J", limit=7)
    assert (rec.last.method, rec.last.url.path) == ("GET", "/v1/streams/sources/src_01J/debug")
    assert dict(rec.last.url.params) == {"limit": "7"}
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert result.connected is True
    assert result.data[0].properties == {"plan": "pro"}
    client.debug_stream_source("src_01J")
    assert rec.last.url.query == b""


def test_send_event_body_and_given_idempotency_key():
    rec = Recorder(ok({"eventId": "evt_01J", "status": "accepted"}, 202))
    client, _ = make_client(rec)
    event = EventInput(
        source_id="src_01J",
        type="signup",
        properties={"plan": "pro", "seats": 3},
        timestamp=datetime(2026, 11, 26, 12, 19, 14, 123000).astimezone(UTC),
    )
    accepted = client.send_event(event, idempotency_key="key-1")
    assert (rec.last.method, rec.last.url.path) == ("POST", "/v1/streams/events")
    assert rec.last.headers["idempotency-key"] == "key-1"
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    sent = body_of(rec.last)
    assert sent["sourceId"] == "src_01J"
    assert sent["type"] == "signup"
    assert sent["properties"] == {"plan": "pro", "seats": 3}
    assert sent["timestamp"].endswith("Z")
    assert "userId" not in sent and "context" not in sent
    assert accepted.event_id == "evt_01J"


def test_query_events_params():
    answer = {
        "data": [EVENT],
        "summary": {
            "totalEvents": 41,
            "uniqueEventTypes": 2,
            "timeRange": {"from": "2026-11-26T00:00:00.000Z", "to": "2026-11-26T11:19:14.123Z"},
        },
    }
    rec = Recorder(ok(answer))
    client, _ = make_client(rec)
    result = client.query_events(
        source_id="src_01J",
        event_type="signup",
        from_=datetime(2026, 11, 26, tzinfo=UTC),
        to=datetime(2026, 11, 27, 1, 2, 3, 456789, tzinfo=UTC),
        limit=20,
    )
    assert (rec.last.method, rec.last.url.path) == ("GET", "/v1/streams/events")
    assert dict(rec.last.url.params) == {
        "sourceId": "src_01J",
        "eventType": "signup",
        "from": "2026-11-26T00:00:00.000Z",
        "to": "2026-11-27T01:02:03.456Z",
        "limit": "20",
    }
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert result.summary.total_events == 41
    assert result.summary.time_range.from_ == datetime(2026, 11, 26, tzinfo=UTC)
    client.query_events()
    assert rec.last.url.query == b""


def test_list_stream_destinations():
    rec = Recorder(ok({"data": [DESTINATION]}))
    client, _ = make_client(rec)
    destinations = client.list_stream_destinations()
    assert (rec.last.method, rec.last.url.path) == ("GET", "/v1/streams/destinations")
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert destinations[0].config == {"url": "https://example.test/hook"}


def test_create_stream_destination():
    rec = Recorder(ok(DESTINATION, 201))
    client, _ = make_client(rec)
    body = StreamDestinationInput(name="hook", type="webhook", config={"url": "https://x.test"})
    destination = client.create_stream_destination(body)
    assert (rec.last.method, rec.last.url.path) == ("POST", "/v1/streams/destinations")
    assert body_of(rec.last) == {
        "name": "hook",
        "type": "webhook",
        "config": {"url": "https://x.test"},
    }
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert destination.id == "dst_01J"


def test_no_token_sends_no_authorization_header():
    rec = Recorder(ok({"data": []}))
    client, _ = make_client(rec, token=None)
    assert client.list_stream_sources() == []
    assert "authorization" not in rec.last.headers


def test_timeouts_default_and_custom():
    rec = Recorder(ok({"data": []}))
    client, _ = make_client(rec)
    client.list_stream_sources()
    assert rec.last.extensions["timeout"]["connect"] == 5.0
    assert rec.last.extensions["timeout"]["read"] == 30.0
    client, _ = make_client(rec, timeout=12.5)
    client.list_stream_sources()
    assert rec.last.extensions["timeout"]["read"] == 12.5


def test_answers_with_unknown_and_absent_fields_parse():
    rec = Recorder(ok({"data": [{"id": "src_1", "color": "red"}], "next": "x"}))
    client, _ = make_client(rec)
    (source,) = client.list_stream_sources()
    assert source.id == "src_1"
    assert source.name is None
    assert source.to_wire() == {"id": "src_1"}


def test_invalid_dict_body_is_a_usage_error_before_any_request():
    rec = Recorder(ok(SOURCE, 201))
    client, _ = make_client(rec)
    with pytest.raises(errors.UsageError) as info:
        client.create_stream_source({"name": "web", "type": "carrier-pigeon"})
    assert "type must be one of" in info.value.message
    assert rec.requests == []


# Error mapping


@pytest.mark.parametrize(
    ("status", "cls", "exit_status"),
    [
        (400, errors.BadRequest, 2),
        (401, errors.AuthenticationFailed, 4),
        (403, errors.PermissionDenied, 4),
        (404, errors.NotFound, 3),
        (413, errors.BadRequest, 2),
        (422, errors.BadRequest, 2),
        (429, errors.RateLimited, 1),
        (500, errors.ServerError, 1),
        (503, errors.ServerError, 1),
    ],
)
def test_status_maps_to_error_tree(status, cls, exit_status):
    rec = Recorder(error(status, "the message", "name: field required"))
    client, _ = make_client(rec)
    with pytest.raises(errors.APIError) as info:
        client.get_stream_source("src_1")
    e = info.value
    assert type(e) is cls
    assert e.exit_status == exit_status
    assert e.status == status
    assert e.message == "the message"
    assert e.details == "name: field required"
    assert e.to_dict()["error"]["code"] == status


def test_401_hints_login_remotely_and_the_local_server_on_loopback():
    rec = Recorder(error(401, "unauthorized"))
    client, _ = make_client(rec)
    with pytest.raises(errors.AuthenticationFailed) as info:
        client.list_stream_sources()
    assert info.value.hint == LOGIN_HINT
    client, _ = make_client(rec, base_url="http://127.0.0.1:8765/v1")
    with pytest.raises(errors.AuthenticationFailed) as info:
        client.list_stream_sources()
    assert info.value.hint == LOCAL_SERVER_HINT


def test_error_body_that_is_not_the_error_schema():
    rec = Recorder(
        httpx.Response(500, text="<html>\x1b[31mboom</html>", headers={"content-type": "text/html"})
    )
    client, _ = make_client(rec, retries=1)
    with pytest.raises(errors.ServerError) as info:
        client.list_stream_sources()
    assert info.value.message == "HTTP 500 Internal Server Error"

    rec = Recorder(httpx.Response(422, json={"message": "bad\x1b[2J", "details": [{"loc": "x"}]}))
    client, _ = make_client(rec)
    with pytest.raises(errors.BadRequest) as info:
        client.list_stream_sources()
    assert info.value.message == "bad?[2J"
    assert "loc" in info.value.details


def test_connection_refused_is_network_error():
    rec = Recorder(refused)
    client, slept = make_client(rec)
    with pytest.raises(errors.NetworkError) as info:
        client.list_stream_sources()
    assert type(info.value) is errors.NetworkError
    assert info.value.exit_status == 5
    assert info.value.message == f"cannot reach {BASE}/streams/sources: connection refused"
    assert len(rec.requests) == 3
    assert len(slept) == 2


def test_real_connection_refused_on_a_closed_port():
    slept: list[float] = []
    client = BolticClient("http://127.0.0.1:9/v1", TOKEN, sleep=slept.append)
    with client, pytest.raises(errors.NetworkError) as info:
        client.list_stream_sources()
    url = "http://127.0.0.1:9/v1/streams/sources"
    assert info.value.message == f"cannot reach {url}: connection refused"
    assert len(slept) == 2


def test_connection_reset_is_network_error():
    def reset(request):
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError as cause:
            raise httpx.ReadError("reset", request=request) from cause

    rec = Recorder(reset)
    client, _ = make_client(rec)
    with pytest.raises(errors.NetworkError) as info:
        client.list_stream_sources()
    assert info.value.message.endswith(": connection reset")
    assert len(rec.requests) == 3


def test_read_timeout_is_request_timeout_without_retry():
    rec = Recorder(httpx.ReadTimeout("timed out"))
    client, slept = make_client(rec, timeout=2)
    with pytest.raises(errors.RequestTimeout) as info:
        client.list_stream_sources()
    assert info.value.exit_status == 5
    assert "timed out after 2 s" in info.value.message
    assert len(rec.requests) == 1
    assert slept == []


def test_connect_timeout_is_retried_then_request_timeout():
    rec = Recorder(httpx.ConnectTimeout("timed out"))
    client, slept = make_client(rec)
    with pytest.raises(errors.RequestTimeout) as info:
        client.list_stream_sources()
    assert "connect timed out" in info.value.message
    assert len(rec.requests) == 3
    assert len(slept) == 2


def test_non_json_success_body_is_unexpected_response():
    rec = Recorder(httpx.Response(200, text="<html>hello</html>"))
    client, _ = make_client(rec)
    with pytest.raises(errors.UnexpectedResponse) as info:
        client.list_stream_sources()
    assert info.value.exit_status == 1
    assert info.value.code == 200
    assert "not JSON" in info.value.message


def test_wrong_shape_is_unexpected_response():
    rec = Recorder(ok({"data": {"id": "not a list"}}))
    client, _ = make_client(rec)
    with pytest.raises(errors.UnexpectedResponse) as info:
        client.list_stream_sources()
    assert "wrong shape" in info.value.message
    assert "data" in info.value.details


# Retries


def test_retry_after_seconds_is_honoured():
    rec = Recorder(error(429, "slow down", **{"Retry-After": "2"}), ok({"data": []}))
    client, slept = make_client(rec)
    assert client.list_stream_sources() == []
    assert slept == [2.0]
    assert len(rec.requests) == 2


def test_retry_after_http_date_in_the_past_means_now():
    rec = Recorder(
        error(503, "busy", **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), ok({"data": []})
    )
    client, slept = make_client(rec)
    client.list_stream_sources()
    assert slept == [0.0]


def test_retry_after_too_long_gives_up_at_once():
    rec = Recorder(error(429, "come back tomorrow", **{"Retry-After": "86400"}))
    client, slept = make_client(rec)
    with pytest.raises(errors.RateLimited):
        client.list_stream_sources()
    assert slept == []
    assert len(rec.requests) == 1


def test_backoff_without_retry_after_is_jittered_exponential():
    rec = Recorder(error(502, "bad gateway"), error(504, "gateway timeout"), ok({"data": []}))
    client, slept = make_client(rec)
    client.list_stream_sources()
    assert len(slept) == 2
    assert 0 <= slept[0] <= BACKOFF_BASE
    assert 0 <= slept[1] <= 2 * BACKOFF_BASE


def test_post_is_retried_with_the_same_idempotency_key():
    rec = Recorder(error(503, "store busy"), refused, ok(SOURCE, 201))
    client, slept = make_client(rec)
    client.create_stream_source({"name": "web", "type": "javascript"})
    keys = [r.headers["idempotency-key"] for r in rec.requests]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert uuid.UUID(keys[0]).version == 4
    assert [body_of(r) for r in rec.requests] == [{"name": "web", "type": "javascript"}] * 3
    assert len(slept) == 2


def test_each_post_gets_its_own_idempotency_key():
    rec = Recorder(ok(SOURCE, 201))
    client, _ = make_client(rec)
    client.create_stream_source({"name": "a", "type": "server"})
    client.create_stream_source({"name": "b", "type": "server"})
    assert rec.requests[0].headers["idempotency-key"] != rec.requests[1].headers["idempotency-key"]


def test_exhausted_retries_raise_the_last_status():
    rec = Recorder(error(503, "store unavailable"))
    client, slept = make_client(rec)
    with pytest.raises(errors.ServerError) as info:
        client.list_stream_sources()
    assert info.value.status == 503
    assert info.value.message == "store unavailable"
    assert len(rec.requests) == 3
    assert len(slept) == 2


def test_retries_setting_bounds_the_tries():
    rec = Recorder(error(503, "down"))
    client, slept = make_client(rec, retries=1)
    with pytest.raises(errors.ServerError):
        client.list_stream_sources()
    assert len(rec.requests) == 1
    assert slept == []


def test_statuses_that_are_not_transient_are_not_retried():
    rec = Recorder(error(500, "bug"))
    client, slept = make_client(rec)
    with pytest.raises(errors.ServerError):
        client.list_stream_sources()
    assert len(rec.requests) == 1
    assert slept == []


def test_patch_without_key_is_not_replayed_after_the_request_went_out():
    rec = Recorder(httpx.ReadError("reset"))
    client, _ = make_client(rec)
    with pytest.raises(errors.NetworkError):
        client.request("PATCH", "/streams/sources/src_1", json={"name": "x"})
    assert len(rec.requests) == 1
    assert "idempotency-key" not in rec.last.headers


# Raw request and secrecy


def test_request_returns_any_status_and_joins_paths():
    rec = Recorder(error(404, "no such route"))
    client, _ = make_client(rec)
    response = client.request("get", "streams/nowhere", params={"a": "1"})
    assert response.status_code == 404
    assert str(rec.last.url) == f"{BASE}/streams/nowhere?a=1"
    client.request("GET", "//evil.test/steal")
    assert rec.last.url.host == "api.example.test"
    assert rec.last.url.path == "/v1/evil.test/steal"


def test_request_refuses_absolute_urls_elsewhere_but_accepts_its_own():
    rec = Recorder(ok({"data": []}))
    client, _ = make_client(rec)
    with pytest.raises(errors.UsageError):
        client.request("GET", "https://evil.test/v1/streams/sources")
    assert rec.requests == []
    client.request("GET", f"{BASE}/streams/sources")
    assert str(rec.last.url) == f"{BASE}/streams/sources"


def test_token_never_reaches_the_hook_or_errors():
    calls: list[tuple] = []
    rec = Recorder(error(503, "busy"), refused)

    def hook(method, url, status, ms):
        calls.append((method, url, status, ms))

    client, _ = make_client(
        rec, base_url=f"https://user:{TOKEN}@api.example.test/v1", on_response=hook
    )
    with pytest.raises(errors.NetworkError) as info:
        client.request("GET", f"/streams/events?token={TOKEN}")
    assert len(calls) == 3
    assert calls[0][:3] == ("GET", "https://api.example.test/v1/streams/events?token=***", 503)
    assert calls[1][2] is None
    assert all(ms >= 0 for *_, ms in calls)
    assert TOKEN not in repr(calls)
    assert TOKEN not in str(info.value) and TOKEN not in (info.value.details or "")


def test_invalid_base_url_is_a_config_error():
    with pytest.raises(errors.ConfigError):
        BolticClient("ftp://example.test/v1", TOKEN)
    with pytest.raises(errors.ConfigError):
        BolticClient("not a url", TOKEN)


def test_lost_answer_to_a_post_does_not_store_twice(api):
    """Against the real server: the answer is lost after the write, the retry gets the first."""
    from tests.conftest import ADMIN_TOKEN

    class LoseFirstAnswer(httpx.BaseTransport):
        def __init__(self, inner: httpx.BaseTransport):
            self.inner = inner
            self.calls = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            self.calls += 1
            response = self.inner.handle_request(request)
            if self.calls == 1:
                response.read()
                raise httpx.RemoteProtocolError("server disconnected", request=request)
            return response

    transport = LoseFirstAnswer(AppTransport(api))
    slept: list[float] = []
    with BolticClient(
        "http://testserver/v1", ADMIN_TOKEN, transport=transport, sleep=slept.append
    ) as client:
        created = client.create_stream_source({"name": "once", "type": "server"})
    assert transport.calls == 2
    assert len(slept) == 1
    stored = api.get("/streams/sources").json()["data"]
    assert [s["id"] for s in stored] == [created.id]


# The bulk path: send_event_json


def test_send_event_json_sends_the_bytes_with_the_usual_headers():
    rec = Recorder(ok({"eventId": "evt_01J", "status": "accepted"}, 202))
    client, _ = make_client(rec, timeout=7)
    payload = b'{"sourceId":"src_01J","type":"signup","properties":{"caf\xc3\xa9":1}}'
    accepted = client.send_event_json(payload, idempotency_key="key-7")
    assert (rec.last.method, str(rec.last.url)) == ("POST", f"{BASE}/streams/events")
    assert rec.last.content == payload
    assert rec.last.headers["content-type"] == "application/json"
    assert rec.last.headers["content-length"] == str(len(payload))
    assert rec.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert rec.last.headers["user-agent"] == f"boltic-cli/{__version__}"
    assert rec.last.headers["accept"] == "application/json"
    assert rec.last.headers["idempotency-key"] == "key-7"
    assert rec.last.extensions["timeout"]["read"] == 7
    assert accepted.event_id == "evt_01J"


def test_send_event_json_gives_each_event_its_own_key_and_retries_with_it():
    rec = Recorder(
        error(503, "store busy"), refused, ok({"eventId": "evt_1"}, 202), ok({"eventId": "evt_2"})
    )
    client, slept = make_client(rec)
    first = client.send_event_json(b'{"type":"a","sourceId":"s"}')
    second = client.send_event_json(b'{"type":"b","sourceId":"s"}')
    keys = [r.headers["idempotency-key"] for r in rec.requests]
    assert len(keys) == 4
    assert len(set(keys[:3])) == 1 and keys[3] != keys[0]
    assert uuid.UUID(keys[0]).version == 4
    assert [r.content for r in rec.requests[:3]] == [b'{"type":"a","sourceId":"s"}'] * 3
    assert len(slept) == 2
    assert (first.event_id, second.event_id) == ("evt_1", "evt_2")


def test_send_event_json_maps_errors_like_every_call():
    rec = Recorder(error(422, "invalid event", "type: field required"))
    client, _ = make_client(rec)
    with pytest.raises(errors.APIError) as info:
        client.send_event_json(b'{"sourceId":"s"}')
    assert (info.value.status, info.value.details) == (422, "type: field required")
    assert info.value.exit_status == errors.ExitStatus.USAGE

    client, _ = make_client(Recorder(httpx.Response(202, text="<html>ok</html>")))
    with pytest.raises(errors.UnexpectedResponse) as info:
        client.send_event_json(b'{"sourceId":"s","type":"t"}')
    assert "POST https://api.example.test/v1/streams/events" in info.value.message

    client, _ = make_client(Recorder(httpx.ReadTimeout("slow")))
    with pytest.raises(errors.RequestTimeout):
        client.send_event_json(b'{"sourceId":"s","type":"t"}')


def test_send_event_json_calls_the_hook_per_attempt_without_the_token():
    calls: list[tuple] = []
    rec = Recorder(error(502, "bad gateway"), ok({"eventId": "evt_1"}, 202))
    client, _ = make_client(
        rec,
        base_url=f"https://user:{TOKEN}@api.example.test/v1",
        on_response=lambda *call: calls.append(call),
    )
    client.send_event_json(b'{"sourceId":"s","type":"t"}')
    assert [c[:3] for c in calls] == [
        ("POST", "https://api.example.test/v1/streams/events", 502),
        ("POST", "https://api.example.test/v1/streams/events", 202),
    ]
    assert TOKEN not in repr(calls)


def test_send_event_validates_then_uses_the_same_wire_as_send_event_json():
    rec = Recorder(ok({"eventId": "evt_1", "status": "accepted"}, 202))
    client, _ = make_client(rec)
    client.send_event({"sourceId": "s", "type": "t", "unknown": 1, "properties": {"x": "é"}})
    assert rec.last.content == '{"sourceId":"s","type":"t","properties":{"x":"é"}}'.encode()
    with pytest.raises(errors.UsageError):
        client.send_event({"sourceId": "s"})
    assert len(rec.requests) == 1


def test_event_sender_over_an_injected_transport_uses_it():
    rec = Recorder(ok({"eventId": "evt_1", "status": "accepted"}, 202))
    client, _ = make_client(rec)
    with client.event_sender() as events:
        accepted = events.send_event({"sourceId": "s", "type": "t", "extra": 1})
        events.send_event_json(b'{"sourceId":"s","type":"u"}', idempotency_key="k")
        with pytest.raises(errors.UsageError):
            events.send_event({"type": "t"})
    assert accepted.event_id == "evt_1"
    assert [body_of(r) for r in rec.requests] == [
        {"sourceId": "s", "type": "t"},
        {"sourceId": "s", "type": "u"},
    ]
    assert rec.requests[1].headers["idempotency-key"] == "k"
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in rec.requests)


def test_plain_http_skips_the_ca_bundle_and_https_still_verifies():
    import ssl

    from boltic_cli._compat import httpx_transport_ssl_context
    from boltic_cli.client_transport import LazyTLSTransport

    transport = LazyTLSTransport()
    with httpx.Client(transport=transport, timeout=1) as http:
        for url in ("http://127.0.0.1:9/v1/x", "https://127.0.0.1:9/v1/x"):
            with pytest.raises(httpx.ConnectError):
                http.get(url)
            if url.startswith("http:"):
                assert transport._plain is not None and transport._tls is None
    context = httpx_transport_ssl_context(transport._tls)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
