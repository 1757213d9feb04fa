"""boltic_cli.webhooks: signatures checked with the `standardwebhooks` package (never
with our own code), the outcome table, the retry schedule and Retry-After."""

from __future__ import annotations

import base64
import random
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from boltic_cli import webhooks
from boltic_cli.webhooks import Outcome, classify, retry_delay

BODY = b'{"id":"evt_01","sourceId":"src_01","type":"page_view","properties":{"t":"\\u00e9"}}'


def test_new_signing_secret_is_whsec_and_32_random_bytes():
    secret = webhooks.new_signing_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:], validate=True)) == 32
    assert webhooks.new_signing_secret() != secret
    fixed = webhooks.new_signing_secret(lambda n: bytes(range(n)))
    assert fixed == "whsec_" + base64.b64encode(bytes(range(32))).decode()


def test_headers_verify_with_standardwebhooks():
    secret = webhooks.new_signing_secret()
    now = int(time.time())
    headers = webhooks.delivery_headers(
        secret, "dlv_01", BODY, timestamp=now, user_agent="boltic-server/0.1.0"
    )
    assert headers["webhook-id"] == "dlv_01"
    assert headers["webhook-timestamp"] == str(now)
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "boltic-server/0.1.0"
    # The receiver's library, given the bytes as received, accepts it...
    assert Webhook(secret).verify(BODY, headers) == {
        "id": "evt_01",
        "sourceId": "src_01",
        "type": "page_view",
        "properties": {"t": "é"},
    }
    # ...and refuses another secret, another body, another id.
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_signing_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"01", b"02"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "dlv_02"})


def test_signature_is_hmac_of_id_timestamp_body_with_the_decoded_key():
    # The wire rule of design.md, recomputed here independently of both libraries'
    # sign(): v1,base64(HMAC-SHA256(key, "id.timestamp.body")).
    import hashlib
    import hmac

    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    sig = webhooks.sign(secret, "dlv_x", 1_700_000_000, BODY)
    digest = hmac.new(key, b"dlv_x.1700000000." + BODY, hashlib.sha256).digest()
    assert sig == "v1," + base64.b64encode(digest).decode()


def test_config_headers_are_sent_but_cannot_replace_the_signature():
    secret = webhooks.new_signing_secret()
    headers = webhooks.delivery_headers(
        secret,
        "dlv_01",
        BODY,
        timestamp=int(time.time()),
        user_agent="boltic-server/0.1.0",
        extra={
            "Authorization": "Bearer abc",
            "webhook-id": "forged",
            "Content-Type": "text/plain",
            "user-agent": "mine/1",
        },
    )
    assert headers["Authorization"] == "Bearer abc"
    assert headers["webhook-id"] == "dlv_01"
    assert headers["Content-Type"] == "application/json"
    assert headers["user-agent"] == "mine/1" and "User-Agent" not in headers
    Webhook(secret).verify(BODY, headers)


@pytest.mark.parametrize(
    "value", ["whsec_", "whsec_!!!", "abc", "", None, 5, "whsec_" + "A" * 43 + "="]
)
def test_bad_signing_secrets(value):
    ok = value == "whsec_" + "A" * 43 + "="
    assert webhooks.is_signing_secret(value) is ok
    if not ok and isinstance(value, str):
        with pytest.raises(ValueError):
            webhooks.sign(value, "dlv", 1, b"{}")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SUCCESS),
        (201, Outcome.SUCCESS),
        (204, Outcome.SUCCESS),
        (299, Outcome.SUCCESS),
        (None, Outcome.TRANSIENT),  # connection refused/reset, timeout, DNS, TLS
        (408, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (502, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (599, Outcome.TRANSIENT),
        (410, Outcome.GONE),
        (100, Outcome.REJECTED),
        (301, Outcome.REJECTED),
        (302, Outcome.REJECTED),
        (304, Outcome.REJECTED),
        (400, Outcome.REJECTED),
        (401, Outcome.REJECTED),
        (403, Outcome.REJECTED),
        (404, Outcome.REJECTED),
        (409, Outcome.REJECTED),
        (413, Outcome.REJECTED),
        (422, Outcome.REJECTED),
    ],
)
def test_classify(status, outcome):
    assert classify(status) is outcome


def test_retry_schedule_with_jitter():
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000]
    for attempts, base in enumerate(expected, start=1):
        assert retry_delay(attempts, random=lambda: 0.5) == pytest.approx(base)
        assert retry_delay(attempts, random=lambda: 0.0) == pytest.approx(base * 0.8)
        assert retry_delay(attempts, random=lambda: 0.999999) == pytest.approx(base * 1.2)
    # After the first try and seven retries the delivery has failed.
    assert retry_delay(8, random=lambda: 0.5) is None
    rng = random.Random(7)
    delays = [retry_delay(1, random=rng.random) for _ in range(1000)]
    assert 4.0 <= min(delays) < 4.1 and 5.9 < max(delays) < 6.0
    with pytest.raises(ValueError):
        retry_delay(0, random=rng.random)


def test_retry_schedule_is_a_setting_and_retry_after_wins_when_longer():
    assert retry_delay(1, schedule=(0.1, 0.2), random=lambda: 0.5) == pytest.approx(0.1)
    assert retry_delay(3, schedule=(0.1, 0.2), random=lambda: 0.5) is None
    assert retry_delay(1, schedule=(0.1, 0.2), random=lambda: 0.5, retry_after=2) == 2
    assert retry_delay(1, random=lambda: 0.5, retry_after=2) == pytest.approx(5)


def test_response_excerpt_keeps_2_kib_as_text():
    assert webhooks.response_excerpt(b"ok") == "ok"
    assert webhooks.response_excerpt(b"\xff") == "\ufffd"
    assert len(webhooks.response_excerpt(b"x" * 5000)) == 2048
    # A two-byte character cut at 2 KiB is dropped, not shown as garbage.
    assert webhooks.response_excerpt(b"x" * 2047 + "é".encode() * 10) == "x" * 2047


def test_webhooks_imports_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, boltic_cli.webhooks; "
        "print(sorted(m for m in ('httpx','typer','rich','fastapi','pydantic','standardwebhooks')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
