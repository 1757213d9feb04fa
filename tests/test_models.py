"""The pydantic models match every schema of the shared spec, and behave on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from boltic_cli import models
from tests.spec import SHARED_SPEC, VENDORED_SPEC, load_spec

SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "StreamSource": models.StreamSource,
    "StreamSourceInput": models.StreamSourceInput,
    "Event": models.Event,
    "EventInput": models.EventInput,
    "StreamDestination": models.StreamDestination,
    "StreamDestinationInput": models.StreamDestinationInput,
    "Error": models.Error,
}

# Inline response schemas of the spec's operations, by (path, method, status).
ENVELOPE_MODELS: dict[tuple[str, str, str], type[BaseModel]] = {
    ("/streams/sources", "get", "200"): models.SourceList,
    ("/streams/destinations", "get", "200"): models.DestinationList,
    ("/streams/events", "get", "200"): models.EventQueryResult,
    ("/streams/events", "post", "202"): models.EventAccepted,
    ("/streams/sources/{sourceId}/debug", "get", "200"): models.DebugResult,
}


# Optional fields our server adds to a spec schema (design.md "Extensions beyond the
# spec"), by (schema, wire name): not in the spec, so not compared with it.
EXTENSION_FIELDS = {
    ("Event", "messageId"),
    ("EventInput", "messageId"),
    ("StreamDestination", "disabledReason"),
}


def _wire_fields(model: type[BaseModel]) -> dict[str, object]:
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _model_of(field) -> type[BaseModel] | None:
    """The model inside a field's annotation (X, X | None, list[X]), if any."""
    import typing

    stack = [field.annotation]
    while stack:
        tp = stack.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
        stack.extend(typing.get_args(tp))
    return None


def _enum_of(field) -> set[str] | None:
    import typing

    stack = [field.annotation]
    while stack:
        tp = stack.pop()
        if typing.get_origin(tp) is typing.Literal:
            return set(typing.get_args(tp))
        stack.extend(typing.get_args(tp))
    return None


def _check(schema: dict, model: type[BaseModel], where: str) -> None:
    props = schema.get("properties", {})
    fields = {n: f for n, f in _wire_fields(model).items() if (where, n) not in EXTENSION_FIELDS}
    assert set(props) == set(fields), f"{where}: property names differ"
    required = {n for n, f in fields.items() if f.is_required()}
    assert set(schema.get("required", [])) == required, f"{where}: required fields differ"
    for name, prop in props.items():
        if "enum" in prop:
            assert _enum_of(fields[name]) == set(prop["enum"]), f"{where}.{name}: enum differs"
        else:
            assert _enum_of(fields[name]) is None, f"{where}.{name}: enum not in spec"
        if prop.get("type") == "object" and "properties" in prop:
            inner = _model_of(fields[name])
            assert inner is not None, f"{where}.{name}: spec has an object, model has none"
            _check(prop, inner, f"{where}.{name}")
        if prop.get("type") == "array" and "$ref" in prop.get("items", {}):
            ref = prop["items"]["$ref"].rsplit("/", 1)[-1]
            assert _model_of(fields[name]) is SCHEMA_MODELS[ref], f"{where}.{name}: items"


def test_every_spec_schema_has_a_model():
    assert set(load_spec()["components"]["schemas"]) == set(SCHEMA_MODELS)


@pytest.mark.parametrize("name", sorted(SCHEMA_MODELS))
def test_schema_matches_model(name):
    _check(load_spec()["components"]["schemas"][name], SCHEMA_MODELS[name], name)


@pytest.mark.parametrize("key", sorted(ENVELOPE_MODELS))
def test_envelope_matches_model(key):
    path, method, status = key
    operation = load_spec()["paths"][path][method]
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    _check(schema, ENVELOPE_MODELS[key], f"{method.upper()} {path} {status}")


def test_vendored_spec_is_the_shared_one():
    if not SHARED_SPEC.exists():
        pytest.skip("no ../shared beside this checkout")
    assert VENDORED_SPEC.read_bytes() == SHARED_SPEC.read_bytes()


def test_unknown_fields_parse_and_absent_fields_stay_absent():
    source = models.StreamSource.model_validate(
        {"id": "src_1", "name": "web", "future": {"x": 1}, "eventsToday": 3}
    )
    assert source.to_wire() == {"id": "src_1", "name": "web", "eventsToday": 3}


def test_event_properties_keep_null_values_and_context_keeps_extras():
    event = models.Event.model_validate(
        {
            "id": "evt_1",
            "properties": {"a": None, "nested": {"b": [1, None]}},
            "context": {"ip": "1.2.3.4", "page": {"url": "https://x"}, "campaign": "fall"},
        }
    )
    wire = event.to_wire()
    assert wire["properties"] == {"a": None, "nested": {"b": [1, None]}}
    assert wire["context"] == {"ip": "1.2.3.4", "page": {"url": "https://x"}, "campaign": "fall"}


def test_times_are_utc_with_milliseconds_and_z():
    offset = timezone(timedelta(hours=2))
    event = models.Event(id="e", timestamp=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=offset))
    assert event.to_wire()["timestamp"] == "2026-01-02T01:04:05.678Z"
    parsed = models.EventInput.model_validate(
        {"sourceId": "s", "type": "t", "timestamp": "2026-01-02T03:04:05+02:00"}
    )
    assert parsed.timestamp == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)


def test_query_time_range_uses_from_on_the_wire():
    result = models.EventQueryResult.model_validate(
        {
            "data": [],
            "summary": {
                "totalEvents": 0,
                "uniqueEventTypes": 0,
                "timeRange": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00.5Z"},
            },
        }
    )
    assert result.to_wire()["summary"]["timeRange"] == {
        "from": "2026-01-01T00:00:00.000Z",
        "to": "2026-01-02T00:00:00.500Z",
    }


@pytest.mark.parametrize(
    "body",
    [
        {"type": "page_view"},
        {"sourceId": "src_1"},
        {"sourceId": "src_1", "type": "x", "properties": [1, 2]},
        {"sourceId": "src_1", "type": "x", "timestamp": "yesterday"},
    ],
)
def test_event_input_rejects_bad_bodies(body):
    with pytest.raises(ValidationError):
        models.EventInput.model_validate(body)


def test_source_input_enum():
    with pytest.raises(ValidationError):
        models.StreamSourceInput.model_validate({"name": "x", "type": "desktop"})
    assert models.StreamSourceInput(name="x", type="server").to_wire() == {
        "name": "x",
        "type": "server",
    }


def test_early_years_are_zero_padded():
    assert models.format_time(datetime(263, 3, 15, 17, 59, 37, 815000, tzinfo=UTC)) == (
        "0263-03-15T17:59:37.815Z"
    )
