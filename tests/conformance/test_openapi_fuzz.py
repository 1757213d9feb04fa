"""The server against the shared OpenAPI spec, with inputs generated from the spec.

Every operation is fuzzed with schemathesis-generated cases, valid and invalid,
under several identities (admin, a write key, no token, unknown and mangled
tokens). Each answer must be:

- never a 5xx;
- valid against the spec's schema for its status, and against ``Error`` (with
  ``code`` equal to the status) for the statuses the spec does not list;
- a resource with every field design.md promises, ids, keys and times in the
  promised shapes;
- the status the identity allows (401 without a valid token, 403 for a write key
  outside its own source, invalid input refused with a 4xx).

A stateful run then checks that what was created can be read, listed and deleted.
The last test asserts the volume: at least ``MIN_CASES`` generated cases, at least
half of them authenticated and past the auth check (answers other than 401).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from tests.spec import load_spec, spec_path

ADMIN_TOKEN = "conformance-admin-token-" + "k" * 24
BASE_URL = "http://testserver/v1"
MIN_CASES = 1000
# Per (operation, mode); 9 operations x 2 modes x 110 leaves room for the few
# operations whose input space hypothesis exhausts early.
EXAMPLES_PER_TEST = 110
STATEFUL_RUNS = 12
STATEFUL_STEPS = 25

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
WRITE_KEY = re.compile(r"^wk_[A-Za-z0-9_-]{32,}$")
SOURCE_FIELDS = {"id", "name", "type", "writeKey", "status", "eventsToday", "createdAt"}
EVENT_FIELDS = {"id", "sourceId", "type", "receivedAt", "timestamp"}
DESTINATION_FIELDS = {"id", "name", "type", "config", "status", "createdAt"}

# Weighted identities: most cases go to the handlers as admin.
AUTH_MODES = ("admin",) * 6 + ("write_key", "none", "unknown", "fuzzed")

SPEC_SCHEMA = schemathesis.openapi.from_path(
    spec_path(),
    config=schemathesis.Config.from_dict(
        # 413 is how the server refuses a generated body over 32 KiB.
        {
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": [400, 401, 403, 404, 405, 413, 422]
                }
            }
        }
    ),
)
OPERATIONS = {result.ok().label: result.ok() for result in SPEC_SCHEMA.get_all_operations()}


@dataclass
class Tally:
    """What the fuzz tests sent, so the last test can hold the run to its volume."""

    cases: int = 0
    past_auth: int = 0
    authenticated_past_auth: int = 0
    statuses: Counter = field(default_factory=Counter)
    # (operation, mode, identity, status) -> count; shown when the volume test fails.
    outcomes: Counter = field(default_factory=Counter)
    finished: set[str] = field(default_factory=set)

    def count(self, identity: str, status: int) -> None:
        self.cases += 1
        self.statuses[status] += 1
        if status != 401:
            self.past_auth += 1
        if identity in ("admin", "write_key") and status not in (401, 403):
            self.authenticated_past_auth += 1


TALLY = Tally()


@dataclass
class Server:
    app: Any
    client: Any  # schemathesis' in-process ASGI session (a requests.Session)
    source_id: str
    write_key: str
    other_source_id: str

    def request(self, method: str, path: str, *, token: str | None = ADMIN_TOKEN, **kw: Any):
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, BASE_URL + path, headers=headers, **kw)

    def create_source(self, name: str = "fuzz", type_: str = "server") -> dict[str, Any]:
        response = self.request("POST", "/streams/sources", json={"name": name, "type": type_})
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    from boltic_cli.server.app import create_app
    from boltic_cli.server.settings import ServerSettings

    db = tmp_path_factory.mktemp("conformance") / "server.db"
    app = create_app(ServerSettings(db_path=db, admin_token=ADMIN_TOKEN))
    try:
        with asgi.get_client(app) as client:
            server = Server(app, client, "", "", "")
            own = server.create_source("fuzz-own")
            other = server.create_source("fuzz-other", "javascript")
            server.source_id, server.write_key = own["id"], own["writeKey"]
            server.other_source_id = other["id"]
            yield server
    finally:
        # Schemathesis keeps an app's lifespan (our open store) until told otherwise.
        asgi.shutdown_lifespans()


# --- what every answer must satisfy -------------------------------------------------


def header(response: Any, name: str) -> str | None:
    for key, values in response.headers.items():
        if key.lower() == name.lower():
            return values[0] if isinstance(values, list) else values
    return None


def check_error_body(response: Any) -> None:
    """A non-2xx answer is the spec's Error: code = the status, a message, details text."""
    content_type = header(response, "content-type") or ""
    assert content_type.startswith("application/json"), f"Error body as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("code") == response.status_code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("details", ""), str), body


def check_time(value: Any, what: str) -> None:
    assert isinstance(value, str) and TIME.match(value), f"{what}: {value!r} is not UTC ms with Z"


def check_no_nulls(obj: dict[str, Any], what: str) -> None:
    nulls = [key for key, value in obj.items() if value is None]
    assert not nulls, f"{what} has null fields {nulls} (absent fields are omitted)"


def check_source(source: dict[str, Any]) -> None:
    missing = SOURCE_FIELDS - source.keys()
    assert not missing, f"StreamSource lacks {sorted(missing)}: {source}"
    check_no_nulls(source, "StreamSource")
    assert source["id"].startswith("src_"), source
    assert WRITE_KEY.match(source["writeKey"]), source
    assert isinstance(source["eventsToday"], int) and source["eventsToday"] >= 0, source
    check_time(source["createdAt"], "StreamSource.createdAt")


def check_event(event: dict[str, Any]) -> None:
    missing = EVENT_FIELDS - event.keys()
    assert not missing, f"Event lacks {sorted(missing)}: {event}"
    check_no_nulls(event, "Event")
    assert event["id"].startswith("evt_"), event
    check_time(event["receivedAt"], "Event.receivedAt")
    check_time(event["timestamp"], "Event.timestamp")


def check_destination(destination: dict[str, Any]) -> None:
    missing = DESTINATION_FIELDS - destination.keys()
    assert not missing, f"StreamDestination lacks {sorted(missing)}: {destination}"
    check_no_nulls(destination, "StreamDestination")
    assert destination["id"].startswith("dst_"), destination
    assert isinstance(destination["config"], dict), destination
    check_time(destination["createdAt"], "StreamDestination.createdAt")


def check_list(body: dict[str, Any], check_item) -> None:
    assert isinstance(body.get("data"), list), body
    for item in body["data"]:
        check_item(item)


def check_query_result(body: dict[str, Any]) -> None:
    check_list(body, check_event)
    summary = body.get("summary")
    assert isinstance(summary, dict), body
    assert isinstance(summary.get("totalEvents"), int), summary
    assert isinstance(summary.get("uniqueEventTypes"), int), summary
    assert summary["totalEvents"] >= len(body["data"]), body
    if summary["totalEvents"]:
        time_range = summary.get("timeRange")
        assert isinstance(time_range, dict), summary
        check_time(time_range.get("from"), "timeRange.from")
        check_time(time_range.get("to"), "timeRange.to")
    else:
        assert "timeRange" not in summary, summary


def check_debug_result(body: dict[str, Any]) -> None:
    check_list(body, check_event)
    assert isinstance(body.get("connected"), bool), body
    if body["data"]:
        assert body.get("lastEventAt") == max(e["receivedAt"] for e in body["data"]), body
    else:
        assert "lastEventAt" not in body, body


def check_accepted(body: dict[str, Any]) -> None:
    assert body.get("status") == "accepted", body
    assert isinstance(body.get("eventId"), str) and body["eventId"].startswith("evt_"), body


PROMISES = {
    ("GET /streams/sources", 200): lambda body: check_list(body, check_source),
    ("POST /streams/sources", 201): check_source,
    ("GET /streams/sources/{sourceId}", 200): check_source,
    ("GET /streams/sources/{sourceId}/debug", 200): check_debug_result,
    ("POST /streams/events", 202): check_accepted,
    ("GET /streams/events", 200): check_query_result,
    ("GET /streams/destinations", 200): lambda body: check_list(body, check_destination),
    ("POST /streams/destinations", 201): check_destination,
}


def check_answer(label: str, response: Any) -> None:
    """What design.md adds to the spec's schemas, for any answer to ``label``."""
    status = response.status_code
    assert status < 500, f"{label} -> {status}: {response.content[:500]!r}"
    method, path = label.split(" ", 1)
    documented = str(status) in load_spec()["paths"][path][method.lower()]["responses"]
    if not documented:
        check_error_body(response)
        return
    if status == 204:
        assert not response.content, response.content[:200]
        return
    PROMISES[(label, status)](response.json())


# --- the generated cases --------------------------------------------------------------


def slashed_source_id(case: Any) -> bool:
    """A generated sourceId with '/' in it can land on another route (or none)."""
    return "/" in str((case.path_parameters or {}).get("sourceId", ""))


def invalid_input(case: Any, identity: str) -> bool:
    """Whether the request as sent breaks the spec.

    Schemathesis negates headers by mangling Authorization; any identity but
    "fuzzed" replaces that header, which makes such a case valid again.
    """
    negated = {location for location, info in case.meta.components.items() if info.mode.is_negative}
    if identity != "fuzzed":
        negated.discard(ParameterLocation.HEADER)
    return bool(negated)


def negation_replaced(case: Any, identity: str) -> bool:
    """Whether we replaced a header schemathesis negated, so its view of the case is stale."""
    header = case.meta.components.get(ParameterLocation.HEADER)
    return identity != "fuzzed" and header is not None and header.mode.is_negative


def checks_for(case: Any, identity: str) -> list[Any]:
    if invalid_input(case, identity) and not negation_replaced(case, identity):
        return CHECKS
    return VALID_INPUT_CHECKS


def expected_statuses(label: str, case: Any, identity: str, own_source: bool) -> set[int] | None:
    """The statuses an identity may get for this case.

    None for invalid input as admin: schemathesis' negative_data_rejection judges
    those, knowing which negations survive serialization (a negated query value
    can be a valid string on the wire).
    """
    positive = not invalid_input(case, identity)
    route_may_move = slashed_source_id(case)
    if identity not in ("admin", "write_key"):
        return {401, 404, 405} if route_may_move else {401}
    if identity == "write_key":
        if label != "POST /streams/events":
            return {403, 404, 405} if route_may_move else {403}
        if positive and own_source:
            return {202, 413, 422}
        return {400, 403, 404, 413, 422}
    if positive:
        return (
            {200, 201, 202, 204, 404, 405, 413, 422}
            if route_may_move
            else ({200, 201, 202, 204, 404, 413, 422})
        )
    return None


def aim_at_known_sources(server: Server, label: str, case: Any, target: str) -> bool:
    """Point a valid case at a real source, so handlers past the lookup get exercised.

    Returns whether the case now names the write key's own source.
    """
    if target == "generated":
        return False
    source_id = server.source_id if target == "own" else server.other_source_id
    if label == "DELETE /streams/sources/{sourceId}":
        # Deleting the shared sources would starve the other cases of real targets.
        source_id = server.create_source("fuzz-doomed")["id"]
    if case.path_parameters and "sourceId" in case.path_parameters:
        case.path_parameters["sourceId"] = source_id
    if isinstance(case.query, dict) and "sourceId" in case.query:
        case.query["sourceId"] = source_id
    if label == "POST /streams/events" and isinstance(case.body, dict):
        case.body["sourceId"] = source_id
    return target == "own"


def send(server: Server, case: Any, identity: str) -> Any:
    """Send ``case`` as ``identity``: its Authorization header is ours, not the generated one.

    The request is serialized by schemathesis and sent on its in-process session;
    only the credentials are replaced (schemathesis would drop a header it negated).
    """
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    headers = {
        name: value for name, value in kwargs["headers"].items() if name.lower() != "authorization"
    }
    tokens = {
        "admin": ADMIN_TOKEN,
        "write_key": server.write_key,
        "unknown": "not-a-token-of-this-server",
    }
    if identity in tokens:
        headers["Authorization"] = f"Bearer {tokens[identity]}"
    elif identity == "fuzzed" and case.headers and "Authorization" in case.headers:
        headers["Authorization"] = case.headers["Authorization"]
    kwargs["headers"] = headers
    return server.client.request(**kwargs)


CHECKS = [
    not_a_server_error,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
VALID_INPUT_CHECKS = [check for check in CHECKS if check is not negative_data_rejection]

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_TEST,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

FUZZ_IDS = [
    f"{label}-{mode.value}"
    for label in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
]


@pytest.mark.parametrize("test_id", FUZZ_IDS)
def test_fuzz(server: Server, test_id: str) -> None:
    label, _, mode_name = test_id.rpartition("-")
    operation = OPERATIONS[label]
    mode = GenerationMode(mode_name)
    # Hypothesis favours the first choices: real sources first.
    targets = ("own", "other", "generated") if mode.is_positive else ("generated",)

    @FUZZ_SETTINGS
    @given(
        case=operation.as_strategy(generation_mode=mode),
        identity=st.sampled_from(AUTH_MODES),
        target=st.sampled_from(targets),
    )
    def run(case: Any, identity: str, target: str) -> None:
        own_source = aim_at_known_sources(server, label, case, target)
        response = schemathesis.Response.from_any(send(server, case, identity))
        TALLY.count(identity, response.status_code)
        TALLY.outcomes[(label, mode.value, identity, response.status_code)] += 1
        case.validate_response(
            response,
            checks=checks_for(case, identity),
            transport_kwargs={"base_url": BASE_URL, "session": server.client, "app": server.app},
        )
        check_answer(label, response)
        allowed = expected_statuses(label, case, identity, own_source)
        if allowed is not None:
            assert response.status_code in allowed, (
                f"{identity} {label} -> {response.status_code}, expected one of {sorted(allowed)}:"
                f" {response.content[:300]!r}; sent headers {dict(response.request.headers)}"
            )
        if response.status_code == 401:
            assert (header(response, "www-authenticate") or "").startswith("Bearer"), (
                "401 without WWW-Authenticate: Bearer"
            )

    run()
    TALLY.finished.add(test_id)


# --- stateful: what was created can be read, listed and deleted ---------------------------


def within_model_limits(body: Any) -> bool:
    """models.py bounds names and types to 1..100+ characters and refuses U+0000 in
    them (design.md: it cannot be an identifier in every store); the spec does not.

    The fuzz tests take the resulting 422s; the stateful run needs inputs that are stored.
    """
    if not isinstance(body, dict) or len(repr(body)) > 4000:
        return False
    return all(
        0 < len(body[key]) <= 100 and "\x00" not in body[key]
        for key in ("name", "type")
        if key in body
    )


def body_strategy(label: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid request bodies for ``label``, generated from the spec."""
    return (
        OPERATIONS[label]
        .as_strategy(generation_mode=GenerationMode.POSITIVE)
        .map(lambda case: case.body)
        .filter(within_model_limits)
    )


def spec_check(server_response: Any, label: str) -> None:
    """The spec's own schema for the answer, then design.md's promises."""
    method, path = label.split(" ", 1)
    SPEC_SCHEMA[path][method].validate_response(server_response)
    check_answer(label, server_response)


class CreateReadListDelete(RuleBasedStateMachine):
    """Sources, events and destinations made here must be visible until deleted, then gone."""

    sources = Bundle("sources")
    server: Server  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, dict[str, Any]] = {}
        self.events: dict[str, set[str]] = {}
        self.destinations: dict[str, dict[str, Any]] = {}
        # eventsToday restarts at 00:00 UTC; a run across midnight cannot compare it.
        self.day = utc_day()

    def call(self, label: str, path: str, *, token: str | None = ADMIN_TOKEN, **kw: Any):
        method = label.split(" ", 1)[0]
        response = self.server.request(method, path, token=token, **kw)
        spec_check(response, label)
        return response

    @initialize(target=sources, body=body_strategy("POST /streams/sources"))
    def first_source(self, body: dict[str, Any]) -> str:
        return self.create_source(body)

    @rule(target=sources, body=body_strategy("POST /streams/sources"))
    def create_source(self, body: dict[str, Any]) -> str:
        response = self.call("POST /streams/sources", "/streams/sources", json=body)
        assert response.status_code == 201, response.text
        source = response.json()
        assert (source["name"], source["type"]) == (body["name"], body["type"]), source
        assert (source["status"], source["eventsToday"]) == ("active", 0), source
        self.live[source["id"]] = source
        self.events[source["id"]] = set()
        return source["id"]

    @rule(source_id=sources)
    def read_source(self, source_id: str) -> None:
        response = self.call("GET /streams/sources/{sourceId}", f"/streams/sources/{source_id}")
        if source_id in self.deleted:
            assert response.status_code == 404, response.text
            return
        assert response.status_code == 200, response.text
        source = response.json()
        created = self.live[source_id]
        for key in ("id", "name", "type", "writeKey", "createdAt", "status"):
            assert source[key] == created[key], (key, source, created)
        if utc_day() == self.day:
            assert source["eventsToday"] == len(self.events[source_id]), source

    @rule(source_id=sources, body=body_strategy("POST /streams/events"), by_key=st.booleans())
    def send_event(self, source_id: str, body: dict[str, Any], by_key: bool) -> None:
        source = self.live.get(source_id) or self.deleted[source_id]
        token = source["writeKey"] if by_key else ADMIN_TOKEN
        body = {**body, "sourceId": source_id}
        response = self.call("POST /streams/events", "/streams/events", token=token, json=body)
        if source_id in self.deleted:
            assert response.status_code == (401 if by_key else 404), response.text
            return
        assert response.status_code in (202, 413, 422), response.text
        if response.status_code == 202:
            self.events[source_id].add(response.json()["eventId"])

    @rule(source_id=sources)
    def query_events(self, source_id: str) -> None:
        response = self.call(
            "GET /streams/events",
            "/streams/events",
            params={"sourceId": source_id, "limit": 1000},
        )
        if source_id in self.deleted and response.status_code == 404:
            return
        assert response.status_code == 200, response.text
        result = response.json()
        expected = self.events.get(source_id, set()) if source_id in self.live else set()
        assert {event["id"] for event in result["data"]} == expected, result
        assert result["summary"]["totalEvents"] == len(expected), result["summary"]
        assert all(event["sourceId"] == source_id for event in result["data"]), result

    @rule(source_id=sources)
    def debug_source(self, source_id: str) -> None:
        response = self.call(
            "GET /streams/sources/{sourceId}/debug",
            f"/streams/sources/{source_id}/debug",
            params={"limit": 500},
        )
        if source_id in self.deleted:
            assert response.status_code == 404, response.text
            return
        assert response.status_code == 200, response.text
        result = response.json()
        assert {event["id"] for event in result["data"]} == self.events[source_id], result
        assert result["connected"] is bool(self.events[source_id]), result

    @rule(source_id=consumes(sources))
    def delete_source(self, source_id: str) -> None:
        response = self.call("DELETE /streams/sources/{sourceId}", f"/streams/sources/{source_id}")
        if source_id in self.deleted:
            assert response.status_code == 404, response.text
            return
        assert response.status_code == 204, response.text
        self.deleted[source_id] = self.live.pop(source_id)
        self.events[source_id] = set()

    @rule(body=body_strategy("POST /streams/destinations"))
    def create_destination(self, body: dict[str, Any]) -> None:
        response = self.call("POST /streams/destinations", "/streams/destinations", json=body)
        if body["type"] == "webhook":
            # Which URLs a validator takes is its business; a non-HTTP one is never taken.
            assert response.status_code in (201, 422), response.text
            if not is_http_url(body["config"].get("url")):
                assert response.status_code == 422, response.text
            if response.status_code == 422:
                return
        assert response.status_code == 201, response.text
        destination = response.json()
        assert destination["name"] == body["name"], destination
        assert destination["type"] == body["type"], destination
        assert destination["config"] == body["config"], destination
        self.destinations[destination["id"]] = destination

    @invariant()
    def listed_sources_are_the_live_ones(self) -> None:
        response = self.call("GET /streams/sources", "/streams/sources")
        listed = {source["id"]: source for source in response.json()["data"]}
        assert self.live.keys() <= listed.keys(), sorted(self.live.keys() - listed.keys())
        assert not self.deleted.keys() & listed.keys(), sorted(self.deleted.keys() & listed.keys())
        for source_id, created in self.live.items():
            assert listed[source_id]["writeKey"] == created["writeKey"], listed[source_id]

    @invariant()
    def listed_destinations_include_the_created(self) -> None:
        if not self.destinations:
            return
        response = self.call("GET /streams/destinations", "/streams/destinations")
        listed = {item["id"]: item for item in response.json()["data"]}
        for destination_id, created in self.destinations.items():
            assert listed.get(destination_id) == created, (listed.get(destination_id), created)


def utc_day() -> date:
    return datetime.now(UTC).date()


def is_http_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^https?://[^/\s]+", value) is not None


def test_stateful_create_read_list_delete(server: Server) -> None:
    CreateReadListDelete.server = server
    run_state_machine_as_test(
        CreateReadListDelete,
        settings=settings(
            max_examples=STATEFUL_RUNS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_spec_operations_are_all_fuzzed() -> None:
    spec_operations = {
        f"{method.upper()} {path}"
        for path, item in load_spec()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert set(OPERATIONS) == spec_operations


def test_zz_volume(record_property) -> None:
    """Runs last: the fuzz tests together sent enough cases, most of them past auth."""
    if TALLY.finished != set(FUZZ_IDS):
        pytest.skip("only part of the fuzz tests ran")
    record_property("generated_cases", TALLY.cases)
    record_property("authenticated_past_auth", TALLY.authenticated_past_auth)
    print(
        f"\nconformance: {TALLY.cases} cases, {TALLY.past_auth} past auth "
        f"({TALLY.authenticated_past_auth} authenticated), statuses {dict(TALLY.statuses)}"
    )
    assert TALLY.cases >= MIN_CASES, TALLY
    assert TALLY.authenticated_past_auth * 2 >= TALLY.cases, TALLY
