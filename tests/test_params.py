"""Option parsers: good inputs give the value, bad ones a one-line UsageError."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from boltic_cli.durations import parse_duration, parse_retry_after, parse_time
from boltic_cli.errors import ExitStatus, UsageError
from boltic_cli.params import (
    load_json_object,
    matches,
    parse_fields,
    parse_where,
)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def usage_error(func, *args, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        func(*args, **kwargs)
    message = info.value.message
    assert "\n" not in message
    assert info.value.exit_status == ExitStatus.USAGE
    return message


# --- parse_fields ----------------------------------------------------------------


def test_parse_fields_strings_json_and_nesting():
    assert parse_fields(
        [
            "plan=pro",
            "n:=3",
            "ok:=true",
            'tags:=["a", 1]',
            "a.b=c",
            'a.d:={"x": null}',
            "eq=x=y",
            "url=http://h/?q=1",
            "empty=",
            "text=3",
        ]
    ) == {
        "plan": "pro",
        "n": 3,
        "ok": True,
        "tags": ["a", 1],
        "a": {"b": "c", "d": {"x": None}},
        "eq": "x=y",
        "url": "http://h/?q=1",
        "empty": "",
        "text": "3",
    }


def test_parse_fields_later_value_wins():
    assert parse_fields(["a=1", "a:=2"]) == {"a": 2}


def test_parse_fields_nests_into_a_json_object_given_earlier():
    assert parse_fields(['user:={"id": 1}', "user.name=bob"]) == {"user": {"id": 1, "name": "bob"}}


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("novalue", "key=value"),
        ("=x", "key is empty"),
        (":=1", "key is empty"),
        ("a..b=1", "key is empty"),
        (".a=1", "key is empty"),
        ("n:={oops", "invalid JSON"),
        ("n:=", "invalid JSON"),
        ("n:=NaN", "invalid JSON"),
    ],
)
def test_parse_fields_bad_items_are_named(item, words):
    message = usage_error(parse_fields, ["good=1", item])
    assert repr(item) in message
    assert words in message


def test_parse_fields_cannot_nest_under_a_string():
    message = usage_error(parse_fields, ["a=1", "a.b=2"])
    assert "'a.b=2'" in message and "a is already set" in message


# --- load_json_object ------------------------------------------------------------


def test_load_json_object_inline_file_and_stdin(tmp_path):
    body = tmp_path / "props.json"
    body.write_text('{"plan": "pro", "n": 1}', encoding="utf-8")
    assert load_json_object('{"a": [1]}', None) == {"a": [1]}
    assert load_json_object(f"@{body}", None) == {"plan": "pro", "n": 1}
    assert load_json_object("-", io.StringIO(' {"from": "stdin"}\n')) == {"from": "stdin"}


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        ("{bad", "--properties: invalid JSON in the argument: Expecting property name"),
        ("[1, 2]", "--properties: expected a JSON object in the argument, got an array"),
        ('"text"', "got a string"),
        ("null", "got null"),
        ("3", "got a number"),
        ('{"x": Infinity}', "invalid JSON"),
        ("@", "needs a file name"),
    ],
)
def test_load_json_object_bad_inline(arg, words):
    assert words in usage_error(load_json_object, arg, None, option="--properties")


def test_load_json_object_bad_files_are_named(tmp_path):
    missing = tmp_path / "missing.json"
    message = usage_error(load_json_object, f"@{missing}", None, option="--context")
    assert message.startswith(f"--context: cannot read {missing}")
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": 1,\n "b": }', encoding="utf-8")
    message = usage_error(load_json_object, f"@{broken}", None, option="--config")
    assert message.startswith(f"--config: invalid JSON in {broken}")
    assert "line 2" in message
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{}")
    assert "not UTF-8" in usage_error(load_json_object, f"@{binary}", None)
    assert "cannot read" in usage_error(load_json_object, f"@{tmp_path}", None)


def test_load_json_object_from_stdin_errors():
    assert "stdin" in usage_error(load_json_object, "-", io.StringIO("[]"))
    assert "stdin" in usage_error(load_json_object, "-", io.StringIO(""))
    assert "no stdin" in usage_error(load_json_object, "-", None)


# --- parse_duration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5s", timedelta(seconds=1.5)),
        ("30", timedelta(seconds=30)),
        ("0.25", timedelta(seconds=0.25)),
        (" 2H ", timedelta(hours=2)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "s", "-5s", "5 s", "5y", "1h-30m", "abc", "1e3s", "h1"])
def test_parse_duration_rejects(text):
    message = usage_error(parse_duration, text, option="--timeout")
    assert message.startswith(f"invalid --timeout {text!r}")


def test_parse_duration_too_long():
    assert "out of range" in usage_error(parse_duration, "999999999999w")


# -- Retry-After ------------------------------------------------------------------------


def test_parse_retry_after_seconds_or_http_date():
    now = 1_700_000_000.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 3 ", now) == 3
    when = datetime.fromtimestamp(now + 90, UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), now) == 90
    past = datetime.fromtimestamp(now - 90, UTC)
    assert parse_retry_after(format_datetime(past, usegmt=True), now) == 0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0


@pytest.mark.parametrize("text", ["soon", "-5", "1.5", "", "\u00b2", "\u0663", "Wed, 99 Foo"])
def test_parse_retry_after_unreadable_is_none(text):
    # A superscript or Arabic-Indic digit passes str.isdigit(); it is not a delta.
    assert parse_retry_after(text, 1_700_000_000.0) is None


def test_parse_retry_after_defaults_to_the_current_time():
    assert 0 < parse_retry_after(format_datetime(datetime.now(UTC) + timedelta(hours=1))) <= 3600


def test_one_reader_of_retry_after_for_client_server_and_forward():
    # The client's retries, the server's delivery worker (through webhooks) and
    # debug forward all read the header with durations': the rule cannot drift.
    from boltic_cli import client, forward, webhooks

    assert client.parse_retry_after is parse_retry_after
    assert webhooks.parse_retry_after is parse_retry_after
    assert forward.parse_retry_after is parse_retry_after


# --- parse_time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T11:19:14.123Z", datetime(2026, 11, 26, 11, 19, 14, 123000, tzinfo=UTC)),
        ("2026-11-26T16:49:14+05:30", datetime(2026, 11, 26, 11, 19, 14, tzinfo=UTC)),
        ("2026-11-26T06:19:14-05:00", datetime(2026, 11, 26, 11, 19, 14, tzinfo=UTC)),
        ("2026-11-26 11:19:14z", datetime(2026, 11, 26, 11, 19, 14, tzinfo=UTC)),
        ("2026-11-26t11:19Z", datetime(2026, 11, 26, 11, 19, tzinfo=UTC)),
        ("2026-11-26T11:19:14", datetime(2026, 11, 26, 11, 19, 14, tzinfo=UTC)),
        ("2026-11-26T11:19:14.123456789Z", datetime(2026, 11, 26, 11, 19, 14, 123456, tzinfo=UTC)),
        ("2026-11-26", datetime(2026, 11, 26, tzinfo=UTC)),
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("2h", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        ("1h30m", NOW - timedelta(hours=1, minutes=30)),
    ],
)
def test_parse_time(text, expected):
    result = parse_time(text, now=NOW)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


def test_parse_time_date_as_end_of_day_is_the_next_midnight():
    assert parse_time("2026-11-26", now=NOW, end_of_day=True) == datetime(2026, 11, 27, tzinfo=UTC)
    assert parse_time("2026-12-31", now=NOW, end_of_day=True) == datetime(2027, 1, 1, tzinfo=UTC)
    # end_of_day is about dates only: an exact time or a duration means what it says.
    assert parse_time("2h", now=NOW, end_of_day=True) == NOW - timedelta(hours=2)
    assert parse_time("2026-11-26T10:00Z", now=NOW, end_of_day=True) == datetime(
        2026, 11, 26, 10, tzinfo=UTC
    )


def test_parse_time_duration_from_a_clock_in_another_zone():
    now = datetime(2026, 11, 26, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    result = parse_time("30m", now=now)
    assert result == datetime(2026, 11, 26, 11, 30, tzinfo=UTC)
    assert result.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("yesterday", "use RFC 3339"),
        ("", "use RFC 3339"),
        ("90", "use RFC 3339"),
        ("2026-13-01", "month must be in 1..12"),
        ("2026-02-30", "day is out of range"),
        ("2026-11-26T25:00Z", "hour must be in 0..23"),
        ("2026-11-26T11:19:14+5", "use RFC 3339"),
        ("2026-W48", "use RFC 3339"),
        ("20261126", "use RFC 3339"),
        ("9999999w", "out of range"),
    ],
)
def test_parse_time_rejects(text, words):
    message = usage_error(parse_time, text, now=NOW, option="--since")
    assert message.startswith(f"invalid --since {text!r}")
    assert words in message


# --- parse_where / matches -----------------------------------------------------------

EVENT = {
    "id": "evt_01",
    "sourceId": "src_01",
    "type": "purchase",
    "userId": "u_42",
    "properties": {
        "amount": 10,
        "price": 9.5,
        "ok": True,
        "name": "bob",
        "code": "10",
        "none": None,
        "plan": {"tier": "pro", "seats": 3},
        "items": [{"sku": "A1"}],
        "type": "shadowed",
    },
    "context": {"ip": "203.0.113.9", "page": {"url": "https://shop.example/cart"}},
}


@pytest.mark.parametrize(
    "where",
    [
        "amount=10",
        "amount=10.0",
        "price=9.5",
        "ok=true",
        "name=bob",
        'name="bob"',
        "code=10",
        'code="10"',
        "none=null",
        "plan.tier=pro",
        "plan.seats=3",
        "items.0.sku=A1",
        "type=purchase",
        "properties.type=shadowed",
        "userId=u_42",
        "context.ip=203.0.113.9",
        "context.page.url=https://shop.example/cart",
    ],
)
def test_where_matches(where):
    assert matches(EVENT, parse_where([where]))


@pytest.mark.parametrize(
    "where",
    [
        "amount=11",
        "amount=true",
        "ok=1",
        "ok=false",
        "name=Bob",
        'amount="10"',
        "missing=null",
        "none=",
        "plan=pro",
        "plan.tier.x=pro",
        "items.1.sku=A1",
        "type=shadowed",
        "userId=u_43",
        "context.ip=10.0.0.1",
    ],
)
def test_where_does_not_match(where):
    assert not matches(EVENT, parse_where([where]))


def test_where_all_filters_must_match():
    assert matches(EVENT, parse_where(["amount=10", "plan.tier=pro"]))
    assert not matches(EVENT, parse_where(["amount=10", "plan.tier=free"]))
    assert matches(EVENT, [])


def test_where_on_an_event_without_properties():
    assert not matches({"id": "evt_2", "type": "x"}, parse_where(["amount=10"]))
    assert matches({"id": "evt_2", "type": "x"}, parse_where(["type=x"]))


def test_where_value_with_equals_and_empty_value():
    event = {"properties": {"q": "a=b", "blank": ""}}
    assert matches(event, parse_where(["q=a=b", "blank="]))


@pytest.mark.parametrize(("item", "words"), [("amount", "key=value"), ("=3", "key is empty")])
def test_where_rejects(item, words):
    message = usage_error(parse_where, [item])
    assert repr(item) in message and words in message
