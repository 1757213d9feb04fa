"""What the server protects: write keys only send, bodies are capped, the token stays secret."""

from __future__ import annotations

import select
import socket
import stat
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.faults._server import ServerProcess, auth

LIMIT = 32 * 1024
SERVER_TOKEN = "security-admin-token-0123456789abcdef"


def make_source(api, name: str) -> dict:
    response = api.post("/streams/sources", json={"name": name, "type": "javascript"})
    assert response.status_code == 201, response.text
    return response.json()


def check_error(response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["code"] == status and isinstance(body["message"], str), body


# --- write keys (in-process server) -----------------------------------------------


@pytest.fixture
def two_sources(api) -> tuple[dict, dict]:
    return make_source(api, "site"), make_source(api, "other-site")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/streams/sources"),
        ("GET", "/streams/sources/{own}"),
        ("GET", "/streams/sources/{own}/debug"),
        ("GET", "/streams/sources/{other}"),
        ("DELETE", "/streams/sources/{own}"),
        ("GET", "/streams/events"),
        ("GET", "/streams/events?sourceId={own}"),
        ("GET", "/streams/destinations"),
    ],
)
def test_write_key_reads_nothing(api, two_sources, method: str, path: str) -> None:
    own, other = two_sources
    url = path.format(own=own["id"], other=other["id"])
    response = api.request(method, url, headers=auth(own["writeKey"]))
    check_error(response, 403)
    assert own["writeKey"] not in response.text
    # The attempt changed nothing: the source is still there.
    assert api.get(f"/streams/sources/{own['id']}").status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/streams/sources", {"name": "mine-now", "type": "server"}),
        (
            "/streams/destinations",
            {"name": "exfil", "type": "webhook", "config": {"url": "http://x"}},
        ),
    ],
)
def test_write_key_creates_nothing(api, two_sources, path: str, body: dict) -> None:
    own, _ = two_sources
    before = api.get(path).json()["data"]
    check_error(api.post(path, json=body, headers=auth(own["writeKey"])), 403)
    assert api.get(path).json()["data"] == before


def test_write_key_sends_only_to_its_own_source(api, two_sources) -> None:
    own, other = two_sources
    key = auth(own["writeKey"])
    accepted = api.post("/streams/events", json={"sourceId": own["id"], "type": "ok"}, headers=key)
    assert accepted.status_code == 202, accepted.text
    refused = api.post("/streams/events", json={"sourceId": other["id"], "type": "x"}, headers=key)
    check_error(refused, 403)
    stored = api.get("/streams/events", params={"sourceId": other["id"]}).json()
    assert stored["data"] == [] and stored["summary"]["totalEvents"] == 0, stored


def test_deleted_sources_write_key_is_refused_at_once(api, two_sources) -> None:
    own, _ = two_sources
    key = auth(own["writeKey"])
    body = {"sourceId": own["id"], "type": "before"}
    assert api.post("/streams/events", json=body, headers=key).status_code == 202
    assert api.delete(f"/streams/sources/{own['id']}").status_code == 204
    refused = api.post("/streams/events", json={**body, "type": "after"}, headers=key)
    check_error(refused, 401)
    assert refused.headers.get("www-authenticate", "").startswith("Bearer")


def test_unknown_and_missing_tokens_are_401(api) -> None:
    for headers in ({"Authorization": ""}, auth("wk_" + "A" * 43), auth(ADMIN_TOKEN + "x")):
        response = api.get("/streams/sources", headers=headers)
        check_error(response, 401)
        assert response.headers.get("www-authenticate", "").startswith("Bearer")
        assert ADMIN_TOKEN not in response.text


# --- a real server on a loopback port ----------------------------------------------------


@pytest.fixture
def server(tmp_path: Path):
    with ServerProcess(tmp_path / "security.db", token=SERVER_TOKEN, home=tmp_path) as running:
        yield running


def open_post(url: str, headers: dict[str, str]) -> socket.socket:
    """A raw connection with the request line and headers of a POST /streams/events sent."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = [f"POST {parts.path}/streams/events HTTP/1.1", f"Host: {parts.netloc}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    return sock


def read_answer_then_close(sock: socket.socket, wait: float = 4.0) -> tuple[bytes, bool]:
    """What the server answered, and whether it then closed the connection.

    ``wait`` stays under uvicorn's 5 s keep-alive timeout, so a close seen here is
    the server refusing the rest of the body, not an idle connection timing out.
    """
    received = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


@pytest.mark.e2e
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_oversized_body_refused_without_reading_it_all(server: ServerProcess, framing: str):
    # The body is sent in part and never finished: a server that waited for all of it
    # before answering would never answer, so an answer proves it stopped reading.
    declared = 50 * 1024 * 1024
    headers = {"Authorization": f"Bearer {SERVER_TOKEN}", "Content-Type": "application/json"}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(declared)
    sock = open_post(server.url, headers)
    with sock:
        piece = b"x" * 4096
        sent = 0
        try:
            while sent < 2 * LIMIT:
                if framing == "chunked":
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may cut us off as soon as it has seen enough
        answer, closed = read_answer_then_close(sock)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:500]
    assert b'"code":413' in answer.replace(b" ", b""), answer[:500]
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nconnection: close" in head, f"413 without Connection: close: {answer!r}"
    assert closed, f"the connection stayed open with an unread body on it: {answer!r}"
    assert sent < declared
    # The server is still healthy afterwards.
    import httpx

    check = httpx.get(server.url + "/streams/sources", headers=auth(SERVER_TOKEN))
    assert check.status_code == 200, check.text


@pytest.mark.e2e
def test_body_just_under_the_limit_is_accepted(server: ServerProcess) -> None:
    import httpx

    client = httpx.Client(base_url=server.url, headers=auth(SERVER_TOKEN), timeout=10)
    with client:
        source = client.post("/streams/sources", json={"name": "big", "type": "server"}).json()
        head, tail = f'{{"sourceId":"{source["id"]}","type":"t","properties":{{"p":"', '"}}'
        body = head + "y" * (LIMIT - len(head) - len(tail)) + tail
        assert len(body) == LIMIT
        headers = {"Content-Type": "application/json"}
        accepted = client.post("/streams/events", content=body, headers=headers)
        assert accepted.status_code == 202, accepted.text[:300]
        over = client.post("/streams/events", content=body[:-2] + 'y"}}', headers=headers)
        check_error(over, 413)


@pytest.mark.e2e
def test_admin_token_never_in_server_log(tmp_path: Path) -> None:
    import httpx

    with ServerProcess(tmp_path / "log.db", token=SERVER_TOKEN, home=tmp_path) as server:
        client = httpx.Client(base_url=server.url, timeout=10)
        with client:
            good, bad = auth(SERVER_TOKEN), auth(SERVER_TOKEN[:-1] + "X")
            source = client.post(
                "/streams/sources", json={"name": "log", "type": "server"}, headers=good
            ).json()
            assert client.get("/streams/sources", headers=good).status_code == 200
            assert client.get("/streams/sources", headers=bad).status_code == 401
            assert client.get("/streams/nowhere", headers=good).status_code == 404
            assert client.post("/streams/events", content=b"{", headers=good).status_code == 400
            sent = client.post(
                "/streams/events",
                json={"sourceId": source["id"], "type": "t", "properties": {"x": SERVER_TOKEN}},
                headers=auth(source["writeKey"]),
            )
            assert sent.status_code == 202
    log = server.stderr_text()
    assert log.strip(), "the server logged nothing at all (is stderr the log?)"
    assert SERVER_TOKEN not in log
    assert SERVER_TOKEN[:-1] not in log
    assert SERVER_TOKEN not in "".join(server.stdout_lines)


@pytest.mark.e2e
def test_generated_admin_token_file_is_private_and_not_logged(tmp_path: Path) -> None:
    import httpx

    with ServerProcess(tmp_path / "gen.db", token=None, home=tmp_path) as server:
        token_file = tmp_path / "data" / "admin-token"
        assert token_file.exists(), sorted(p.name for p in tmp_path.rglob("*"))
        token = token_file.read_text().strip()
        assert len(token) >= 32
        response = httpx.get(server.url + "/streams/sources", headers=auth(token))
        assert response.status_code == 200, response.text
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) & 0o077 == 0
    assert token not in server.stderr_text()
    assert token not in "".join(server.stdout_lines)

    # The next server started without --token reuses the same token.
    with ServerProcess(tmp_path / "gen.db", token=None, home=tmp_path) as again:
        assert token_file.read_text().strip() == token
        assert httpx.get(again.url + "/streams/sources", headers=auth(token)).status_code == 200
