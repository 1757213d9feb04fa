"""tests/receivers.py: the loopback receiver other tests rely on records and answers
as scripted."""

from __future__ import annotations

import httpx
import pytest

from tests.receivers import Receiver, Reply, receiver_fixture, refused_url  # noqa: F401


def test_records_and_answers_from_the_script(receiver):
    receiver.script(Reply(500, body="boom"), Reply(429, headers={"Retry-After": "3"}))
    with httpx.Client() as client:
        first = client.post(receiver.url + "?a=1", content=b'{"x":1}', headers={"X-A": "b"})
        second = client.post(receiver.url, content=b"2")
        third = client.get(receiver.url)
    assert (first.status_code, first.text) == (500, "boom")
    assert (second.status_code, second.headers["retry-after"]) == (429, "3")
    assert (third.status_code, third.text) == (200, "ok")
    got = receiver.wait_for(3)
    assert [r.method for r in got] == ["POST", "POST", "GET"]
    assert got[0].target == "/hook?a=1" and got[0].path == "/hook"
    assert got[0].query == {"a": ["1"]}
    assert got[0].json() == {"x": 1} and got[0].headers["x-a"] == "b"
    assert ("X-A", "b") in got[0].raw_headers


def test_chunked_bodies_and_respond_function():
    def respond(request):
        return Reply(201, body=request.body[::-1])

    with Receiver(respond=respond) as rx:
        chunks = iter([b"ab", b"cd"])
        answer = httpx.post(rx.url, content=chunks)
        assert (answer.status_code, answer.content) == (201, b"dcba")
        assert rx.requests[0].body == b"abcd"


def test_delay_close_and_refused(receiver):
    receiver.script(Reply(delay=2), Reply(close=True))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(receiver.url, content=b"1", timeout=0.3)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(receiver.url, content=b"2")
    with pytest.raises(httpx.ConnectError):
        httpx.post(refused_url(), content=b"3")
    assert len(receiver.wait_for(2)) == 2


def test_wait_for_says_how_many_came(receiver):
    with pytest.raises(AssertionError, match="got 0 requests, expected 1"):
        receiver.wait_for(1, timeout=0.1)
