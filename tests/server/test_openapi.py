"""The server's own OpenAPI document (generated from its routes and models) against the
shared spec: every operation, and per schema the property names, required fields, enums."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.spec import load_spec

METHODS = ("get", "post", "put", "patch", "delete")

# Everything in which the generated document may differ from the spec, and why.
KNOWN_DIFFERENCES = {
    # FastAPI writes OpenAPI 3.1 (JSON Schema dialect: nullable as anyOf [.., null]).
    "openapi: 3.0.3 != 3.1.0",
    # The spec leaves EventInput.context free-form; the shared model names the fields
    # the server fills (ip, userAgent) and those Event.context documents, and still
    # keeps whatever else a sender puts there.
    "EventInput.context: properties [] != ['ip', 'locale', 'page', 'userAgent']",
    "sendEvent body.context: properties [] != ['ip', 'locale', 'page', 'userAgent']",
}
# Optional properties our server adds to the spec's schemas (design.md "Extensions
# beyond the spec"): removed from the generated document before the comparison, after
# checking that each is there and optional. Any other added property still fails.
EXTENSION_PROPERTIES = {
    ("EventInput", "messageId"),
    ("Event", "messageId"),
    ("StreamDestination", "disabledReason"),
}
# Schemas used only by extension operations.
EXTENSION_SCHEMAS = {
    "EventBatchInput",
    "EventBatchResult",
    "BatchItemResult",
    # design.md, "Destinations that deliver"
    "Delivery",
    "DeliveryAttempt",
    "DeliveryList",
    "DeliveryTestResult",
    "ReplayInput",
    "ReplayResult",
    "StreamDestinationUpdate",
    # design.md, "Sources"
    "StreamSourceUpdate",
}
# Extra named schemas: the spec's inline objects (response envelopes, Event.context)
# become named models. FastAPI's own validation-error schemas (HTTPValidationError,
# ValidationError) are absent: every 422 is documented with the spec's Error.
EXTRA_SCHEMAS = {
    "DebugResult",
    "DestinationList",
    "EventAccepted",
    "EventContext",
    "EventPage",
    "EventQueryResult",
    "EventSummary",
    "SourceList",
    "TimeRange",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


@pytest.fixture
def generated(api) -> dict[str, Any]:
    response = api.get("/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    return response.json()


class Resolver:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def __call__(self, schema: dict[str, Any] | None) -> dict[str, Any]:
        schema = schema or {}
        while True:
            if "$ref" in schema:
                node: Any = self.doc
                for part in schema["$ref"].lstrip("#/").split("/"):
                    node = node[part]
                schema = node
            elif "anyOf" in schema:
                options = [s for s in schema["anyOf"] if s.get("type") != "null"]
                if len(options) != 1:
                    return schema
                schema = options[0]
            else:
                return schema


def enum(schema: dict[str, Any]) -> list[Any]:
    # JSON Schema (3.1) writes a one-value enum as const.
    return sorted(schema.get("enum", [schema["const"]] if "const" in schema else []))


def compare(a: Any, b: Any, ra: Resolver, rb: Resolver, where: str, out: set[str]) -> None:
    a, b = ra(a), rb(b)
    props_a, props_b = a.get("properties", {}), b.get("properties", {})
    if sorted(props_a) != sorted(props_b):
        out.add(f"{where}: properties {sorted(props_a)} != {sorted(props_b)}")
    if sorted(a.get("required", [])) != sorted(b.get("required", [])):
        out.add(
            f"{where}: required {sorted(a.get('required', []))} != {sorted(b.get('required', []))}"
        )
    if enum(a) != enum(b):
        out.add(f"{where}: enum {enum(a)} != {enum(b)}")
    for name in props_a.keys() & props_b.keys():
        compare(props_a[name], props_b[name], ra, rb, f"{where}.{name}", out)
    if "items" in a or "items" in b:
        compare(a.get("items"), b.get("items"), ra, rb, f"{where}[]", out)


def operations(doc: dict[str, Any], prefix: str = "") -> dict[tuple[str, str], dict]:
    """The spec's operations: extension operations (``x-boltic-extension``) are skipped."""
    return {
        (prefix + path, method): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS and not op.get("x-boltic-extension")
    }


def without_extensions(generated: dict[str, Any]) -> dict[str, Any]:
    """A copy of the generated document without the known extension properties."""
    doc = copy.deepcopy(generated)
    schemas = doc["components"]["schemas"]
    for name, prop in EXTENSION_PROPERTIES:
        schema = schemas[name]
        assert prop in schema.get("properties", {}), f"{name}.{prop} is listed but absent"
        assert prop not in schema.get("required", []), f"{name}.{prop} must be optional"
        del schema["properties"][prop]
    return doc


def differences(spec: dict[str, Any], generated: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    if spec["openapi"] != generated["openapi"]:
        out.add(f"openapi: {spec['openapi']} != {generated['openapi']}")
    generated = without_extensions(generated)
    rs, rg = Resolver(spec), Resolver(generated)
    ops_s, ops_g = operations(spec, "/v1"), operations(generated)
    if ops_s.keys() != ops_g.keys():
        out.add(f"operations: {sorted(ops_s.keys() ^ ops_g.keys())}")
    for key in ops_s.keys() & ops_g.keys():
        s, g = ops_s[key], ops_g[key]
        name = s["operationId"]
        if s["operationId"] != g.get("operationId"):
            out.add(f"{key}: operationId {s['operationId']} != {g.get('operationId')}")
        params_s = {(p["name"], p["in"]) for p in s.get("parameters", [])}
        params_g = {(p["name"], p["in"]) for p in g.get("parameters", [])}
        if params_s != params_g:
            out.add(f"{name}: parameters {sorted(params_s)} != {sorted(params_g)}")
        if "requestBody" in s:
            body_s = s["requestBody"]["content"]["application/json"]["schema"]
            body_g = g.get("requestBody", {}).get("content", {}).get("application/json", {})
            compare(body_s, body_g.get("schema"), rs, rg, f"{name} body", out)
        for status, response in s["responses"].items():
            if status not in g["responses"]:
                out.add(f"{name}: no {status} response")
                continue
            content_s = response.get("content", {}).get("application/json")
            content_g = g["responses"][status].get("content", {}).get("application/json")
            if content_s:
                compare(
                    content_s["schema"],
                    (content_g or {}).get("schema"),
                    rs,
                    rg,
                    f"{name} {status}",
                    out,
                )
    schemas_s = spec["components"]["schemas"]
    schemas_g = generated["components"]["schemas"]
    for missing in schemas_s.keys() - schemas_g.keys():
        out.add(f"schema {missing} missing")
    for extra in schemas_g.keys() - schemas_s.keys() - EXTRA_SCHEMAS - EXTENSION_SCHEMAS:
        out.add(f"schema {extra} not in the spec")
    for name in schemas_s.keys() & schemas_g.keys():
        compare(schemas_s[name], schemas_g[name], rs, rg, name, out)
    return out


def test_generated_document_matches_the_spec(spec, generated):
    assert differences(spec, generated) == KNOWN_DIFFERENCES


def test_extension_operations_are_marked(generated):
    extensions = {
        (path, method)
        for path, item in generated["paths"].items()
        for method, op in item.items()
        if op.get("x-boltic-extension")
    }
    base = "/v1/streams/destinations/{id}"
    assert {
        (base, "get"),
        (base, "patch"),
        (base, "delete"),
        (base + "/deliveries", "get"),
        (base + "/deliveries/{deliveryId}", "get"),
        (base + "/test", "post"),
        (base + "/replay", "post"),
    } <= extensions


def test_every_operation_id(spec, generated):
    ids = {op["operationId"] for op in operations(generated).values()}
    assert ids == {op["operationId"] for op in operations(spec).values()}
    assert len(ids) == 9


def test_security_is_bearer(generated):
    assert generated["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert generated["security"] == [{"bearerAuth": []}]


def test_comparison_notices_a_difference(spec, generated):
    # The comparison itself must be able to fail.
    generated["components"]["schemas"]["StreamSource"]["properties"].pop("writeKey")
    generated["paths"]["/v1/streams/events"]["post"]["operationId"] = "postEvent"
    found = differences(spec, generated) - KNOWN_DIFFERENCES
    assert any(d.startswith("StreamSource: properties") for d in found)
    assert any("operationId sendEvent != postEvent" in d for d in found)


def test_extensions_are_marked_and_an_unlisted_property_still_fails(spec, generated):
    batch = generated["paths"]["/v1/streams/events/batch"]["post"]
    assert batch["x-boltic-extension"] is True
    assert batch["operationId"] not in {op["operationId"] for op in operations(spec).values()}
    generated["components"]["schemas"]["EventInput"]["properties"]["dedupeKey"] = {"type": "string"}
    generated["paths"]["/v1/streams/events/other"] = {"post": {"operationId": "unmarked"}}
    found = differences(spec, generated) - KNOWN_DIFFERENCES
    assert any(d.startswith("EventInput: properties") and "dedupeKey" in d for d in found)
    assert any("/v1/streams/events/other" in d for d in found)
