"""A store that stops accepting writes: 503 with an Error body, never a 202, then recovery.

CI runs as root, so file modes cannot make the database read-only. Instead the
server's file-size limit (RLIMIT_FSIZE) is lowered to 0 from outside with
prlimit: every write() to a regular file then fails with EFBIG (SIGXFSZ is
ignored in the child, as CPython does by default), exactly like a full disk
from SQLite's point of view. Raising the limit again must bring 202s back.
"""

from __future__ import annotations

import resource
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.faults._server import ServerProcess, all_event_ids, auth

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="prlimit on another process is Linux-only"
    ),
]

TOKEN = "unwritable-admin-token-0123456789abcdef"
# Sends while the store is broken; each must be refused.
BROKEN_SENDS = 20
# The first write after the limit is lifted may still meet a connection the server
# is reopening; recovery must come within this many tries.
RECOVERY_TRIES = 50


def ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def set_file_size_limit(pid: int, soft: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


def event(source_id: str, n: int) -> dict:
    return {"sourceId": source_id, "type": "disk_test", "properties": {"n": n, "pad": "x" * 2000}}


def check_503(response) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body.get("code") == 503 and isinstance(body.get("message"), str), body
    assert isinstance(body.get("details", ""), str), body


def test_unwritable_store_answers_503_and_recovers(tmp_path: Path, record_property) -> None:
    import httpx

    with ServerProcess(
        tmp_path / "disk.db", token=TOKEN, home=tmp_path, preexec_fn=ignore_sigxfsz
    ) as server:
        client = httpx.Client(base_url=server.url, headers=auth(TOKEN), timeout=30)
        with client:
            created = client.post("/streams/sources", json={"name": "disk", "type": "server"})
            assert created.status_code == 201, created.text
            source_id = created.json()["id"]
            acknowledged = []
            for n in range(10):
                response = client.post("/streams/events", json=event(source_id, n))
                assert response.status_code == 202, response.text
                acknowledged.append(response.json()["eventId"])

            set_file_size_limit(server.pid, 0)
            refused = []
            for n in range(BROKEN_SENDS):
                response = client.post("/streams/events", json=event(source_id, 100 + n))
                refused.append(response.status_code)
                check_503(response)
            # A source is a write too.
            check_503(client.post("/streams/sources", json={"name": "x", "type": "server"}))

            set_file_size_limit(server.pid, resource.RLIM_INFINITY)
            recovered_after = None
            for attempt in range(RECOVERY_TRIES):
                response = client.post("/streams/events", json=event(source_id, 200 + attempt))
                if response.status_code == 202:
                    acknowledged.append(response.json()["eventId"])
                    recovered_after = attempt
                    break
                check_503(response)
                time.sleep(0.1)
            assert recovered_after is not None, (
                f"still no 202 after {RECOVERY_TRIES} tries; stderr:\n{server.stderr_text()}"
            )
            for n in range(10):
                response = client.post("/streams/events", json=event(source_id, 300 + n))
                assert response.status_code == 202, response.text
                acknowledged.append(response.json()["eventId"])

            stored = set(all_event_ids(client, source_id))
        stderr = server.stderr_text()

    lost = set(acknowledged) - stored
    record_property("acknowledged", len(acknowledged))
    record_property("lost", len(lost))
    record_property("refused_while_unwritable", len(refused))
    print(
        f"\nunwritable store: {len(acknowledged)} acknowledged, {len(lost)} lost, "
        f"{len(refused)} refused with 503, recovered after {recovered_after} failed tries"
    )
    assert not lost, sorted(lost)
    # Refused events must not have been stored behind the 503.
    assert len(stored) == len(acknowledged), (len(stored), len(acknowledged))
    assert TOKEN not in stderr
