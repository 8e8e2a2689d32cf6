"""Hostile and malformed requests over raw loopback sockets: each gets the right status, is
recorded with its reason, and the receiver keeps accepting valid events right after."""

from __future__ import annotations

import base64
import json
import socket
import time
from dataclasses import dataclass, field

import httpx
import pandas as pd
import pytest

from mp_nb import Receiver

USER, SECRET = "hook", "s3cret-value"
AUTH = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
MAX_BODY = 64 * 1024
MAX_HEADER = 4096
TIMEOUT = 0.5  # head and body timeouts of the receiver under test
EVENT = {"type": "processed", "modelId": "HARDENED001", "timestamp": 1663595796940,
         "data": {"success": "true"}}  # fmt: skip


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    interim: list[int] = field(default_factory=list)


def request(
    method: str = "POST",
    path: str = "/webhook",
    body: bytes = b'{"type": "uploaded", "modelId": "AAAAAAAAAAA"}',
    headers: list[tuple[str, str]] | None = None,
    *,
    auth: bool = True,
    length: bool = True,
    version: str = "HTTP/1.1",
) -> bytes:
    """Raw request bytes; ``headers`` come after Host (and Authorization when ``auth``)."""
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    if auth:
        lines.append(f"Authorization: {AUTH}")
    lines += [f"{k}: {v}" for k, v in headers or [("Content-Type", "application/json")]]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n" + trailer + b"\r\n"


def exchange(port: int, *steps: bytes | float, expect: int = 1, shut: bool = False,
             wait: float = 5.0) -> tuple[list[Response], bool]:  # fmt: skip
    """Send ``steps`` (bytes, or seconds to pause), read ``expect`` final responses.

    Returns the responses and whether the server closed the connection.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    buf = b""
    closed = False
    try:
        for step in steps:
            if isinstance(step, float):
                time.sleep(step)
            else:
                try:
                    sock.sendall(step)
                except OSError:  # the server already refused and closed
                    break
        if shut:
            sock.shutdown(socket.SHUT_WR)
        responses: list[Response] = []
        interim: list[int] = []
        while len(responses) < expect or (shut and not closed):
            parsed = _parse(buf)
            if parsed is not None:
                response, buf = parsed
                if 100 <= response.status < 200:
                    interim.append(response.status)
                else:
                    response.interim = interim
                    responses.append(response)
                    interim = []
                continue
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                closed = True
                break
            buf += data
        if not closed and expect and responses:
            sock.settimeout(0.05)
            try:
                closed = sock.recv(1) == b""
            except (TimeoutError, ConnectionResetError, OSError):
                closed = False
        return responses, closed
    finally:
        sock.close()


def _parse(buf: bytes) -> tuple[Response, bytes] | None:
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if 100 <= status < 200:
        return Response(status, headers, b""), rest
    n = int(headers.get("content-length", "0"))
    if len(rest) < n:
        return None
    return Response(status, headers, rest[:n]), rest[n:]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory):
    r = Receiver(cred_type="basic", cred_key=USER, cred_secret=SECRET,
                 db=tmp_path_factory.mktemp("hardening") / "events.sqlite3", max_body=MAX_BODY,
                 max_header=MAX_HEADER, head_timeout=TIMEOUT, body_timeout=TIMEOUT)  # fmt: skip
    yield r
    r.stop()


def newest_rejection(receiver: Receiver, after: int) -> dict:
    """The first rejection recorded after ``after`` rows (waits for its commit)."""
    deadline = time.monotonic() + 5
    while receiver.store.rejection_count() <= after and time.monotonic() < deadline:
        receiver.store.wait_for_commit(receiver.store.generation, 0.2)
    frame = receiver.rejections()
    assert len(frame) == after + 1, f"expected one new rejection, have {len(frame) - after}"
    return frame.iloc[-1].to_dict()


def valid_event_is_accepted(receiver: Receiver) -> None:
    before = receiver.count()
    responses, _ = exchange(receiver.port, request(body=json.dumps(EVENT).encode()))
    assert responses and responses[0].status == 200, responses
    assert receiver.count() == before + 1


DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 4000 + b"1" + b"}" * 4000
HUGE_INT = b'{"type": "uploaded", "n": ' + b"9" * 5000 + b"}"
JSON_CT = [("Content-Type", "application/json")]

# (id, raw request steps, expected status or None for "no answer", reason fragment)
REFUSED: list[tuple[str, tuple[bytes | float, ...], int | None, str]] = [
    ("wrong path", (request(path="/nope"),), 404, "no endpoint at /nope"),
    ("wrong path case", (request(path="/WEBHOOK"),), 404, "no endpoint at /WEBHOOK"),
    ("path prefix", (request(path="/webhook/extra"),), 404, "no endpoint at /webhook/extra"),
    ("GET", (request("GET", body=b""),), 405, "method GET not allowed"),
    ("PUT", (request("PUT"),), 405, "method PUT not allowed"),
    ("DELETE", (request("DELETE", body=b""),), 405, "method DELETE not allowed"),
    ("PATCH", (request("PATCH"),), 405, "method PATCH not allowed"),
    ("no credentials", (request(auth=False),), 401, "missing Authorization header"),
    ("wrong password", (request(auth=False, headers=[
        ("Authorization", "Basic " + base64.b64encode(b"hook:nope").decode()), *JSON_CT]),),
     401, "wrong username or password"),
    ("wrong user", (request(auth=False, headers=[
        ("Authorization", "Basic " + base64.b64encode(f"x:{SECRET}".encode()).decode()),
        *JSON_CT]),), 401, "wrong username or password"),
    ("bearer for basic", (request(auth=False, headers=[("Authorization", "Bearer abc"),
                                                        *JSON_CT]),), 401, "expected Basic"),
    ("not base64", (request(auth=False, headers=[("Authorization", "Basic %%%"), *JSON_CT]),),
     401, "not base64"),
    ("no colon", (request(auth=False, headers=[
        ("Authorization", "Basic " + base64.b64encode(b"hooks3cret").decode()), *JSON_CT]),),
     401, "no ':'"),
    ("two Authorization headers", (request(headers=[("Authorization", "Basic eDp5"),
                                                     *JSON_CT]),), 401, "more than one"),
    ("declared body over limit", (request(body=b"x" * (MAX_BODY + 1)),), 413,
     f"body of {MAX_BODY + 1} bytes is over"),
    ("chunked body over limit", (request(body=chunked(b"{" + b" " * MAX_BODY, b"}"),
                                         headers=[*JSON_CT, ("Transfer-Encoding", "chunked")],
                                         length=False),), 413, "body over the"),
    ("image content type", (request(headers=[("Content-Type", "image/png")]),), 415,
     "Content-Type 'image/png' not readable"),
    ("multipart", (request(headers=[("Content-Type", "multipart/form-data; boundary=x")]),),
     415, "not readable"),
    ("gzip encoding", (request(headers=[*JSON_CT, ("Content-Encoding", "gzip")]),), 415,
     "Content-Encoding 'gzip' not supported"),
    ("latin-1 charset", (request(headers=[("Content-Type",
                                           "application/json; charset=iso-8859-1")]),),
     415, "charset 'iso-8859-1' not supported"),
    ("invalid JSON", (request(body=b"{not json"),), 400, "invalid JSON"),
    ("JSON array", (request(body=b'["a"]'),), 400, "JSON body is a list, not an object"),
    ("JSON number", (request(body=b"42"),), 400, "JSON body is a int"),
    ("JSON string", (request(body=b'"hi"'),), 400, "JSON body is a str"),
    ("JSON null", (request(body=b"null"),), 400, "JSON body is a NoneType"),
    ("empty body", (request(body=b""),), 400, "invalid JSON"),
    ("trailing garbage", (request(body=b'{"type": "x"} extra'),), 400, "invalid JSON: Extra"),
    ("deep array nesting", (request(body=DEEP),), 400, "invalid JSON: nested too deeply"),
    ("deep object nesting", (request(body=DEEP_OBJECT),), 400, "nested too deeply"),
    ("NaN literal", (request(body=b'{"type": NaN}'),), 400, "NaN is not JSON"),
    ("Infinity literal", (request(body=b'{"x": -Infinity}'),), 400, "-Infinity is not JSON"),
    ("huge integer", (request(body=HUGE_INT),), 400, "invalid JSON"),
    ("invalid UTF-8", (request(body=b'{"type": "\xff\xfe"}'),), 400, "body is not UTF-8"),
    ("UTF-16 JSON", (request(body='{"type": "x"}'.encode("utf-16")),), 400,
     "body is not UTF-8"),
    ("overlong UTF-8", (request(body=b'{"type": "\xc0\xaf"}'),), 400, "body is not UTF-8"),
    ("UTF-8 BOM", (request(body=b'\xef\xbb\xbf{"type": "x"}'),), 400, "invalid JSON"),
    ("slow body", (request(body=b'{"type": "uploaded", "padding": "xxxxxxxx"}')[:-20],), 408,
     "body not complete within"),
    ("slow head", (b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n",), 408,
     "request head not complete within"),
    ("trickled head", tuple(x for ch in request()[:40] for x in (bytes([ch]), 0.02)), 408,
     "request head not complete within"),
    ("huge header", (request(headers=[*JSON_CT, ("X-Big", "a" * (MAX_HEADER + 10))]),), 431,
     f"request headers over the {MAX_HEADER}-byte limit"),
    ("many headers", (request(headers=[*JSON_CT] + [(f"X-H{i}", "v" * 8) for i in range(400)]),),
     431, "request headers over"),
    ("huge URL", (request(path="/webhook?" + "q" * (MAX_HEADER + 10)),), 414,
     "request target over"),
    ("TLS handshake bytes", (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,),
     400, "malformed HTTP request"),
    ("space in header name", (request(headers=[*JSON_CT, ("Bad Header", "x")]),), 400,
     "malformed HTTP request"),
    ("NUL in header value", (request(headers=[*JSON_CT, ("X-Null", "a\x00b")]),), 400,
     "malformed HTTP request"),
    ("unknown method", (request("FROB"),), 400, "malformed HTTP request"),
    ("bad Content-Length", (request(headers=[*JSON_CT, ("Content-Length", "abc")],
                                    length=False),), 400, "malformed HTTP request"),
    ("Content-Length and chunked", (request(body=chunked(b"{}"), headers=[
        *JSON_CT, ("Transfer-Encoding", "chunked"), ("Content-Length", "7")], length=False),),
     400, "malformed HTTP request"),
    ("bad chunk size", (request(body=b"zz\r\n{}\r\n0\r\n\r\n", headers=[
        *JSON_CT, ("Transfer-Encoding", "chunked")], length=False),), 400,
     "malformed HTTP request"),
    ("expect-100 over limit", (request(body=b"", headers=[
        *JSON_CT, ("Expect", "100-continue"), ("Content-Length", str(MAX_BODY * 4))],
        length=False),), 413, "over the"),
    ("expect-100 without credentials", (request(auth=False, body=b"", headers=[
        *JSON_CT, ("Expect", "100-continue"), ("Content-Length", "20")], length=False),),
     401, "missing Authorization header"),
]


@pytest.mark.parametrize("steps, status, reason", [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])  # fmt: skip
def test_refused_request_is_answered_recorded_and_harmless(receiver, steps, status, reason):
    before = receiver.store.rejection_count()
    responses, _ = exchange(receiver.port, *steps)
    assert responses, "no answer"
    assert responses[0].status == status, responses[0]
    assert responses[0].interim == [], "refused without asking for the body (no 100 Continue)"
    assert reason in responses[0].body.decode("utf-8", "replace")
    recorded = newest_rejection(receiver, before)
    assert recorded["status"] == status and reason in recorded["reason"], recorded
    assert SECRET not in recorded["headers"] and AUTH not in recorded["headers"]
    valid_event_is_accepted(receiver)


def test_bytes_that_are_not_http_record_no_method(receiver):
    before = receiver.store.rejection_count()
    exchange(receiver.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40)
    recorded = newest_rejection(receiver, before)
    assert recorded["status"] == 400 and pd.isna(recorded["method"]), recorded
    exchange(receiver.port, request(headers=[*JSON_CT, ("Bad Header", "x")]))
    assert newest_rejection(receiver, before + 1)["method"] == "POST"  # read before the error


def test_at_least_forty_distinct_hostile_requests():
    assert len({c[0] for c in REFUSED}) >= 40 and len({c[1] for c in REFUSED}) == len(REFUSED)


def test_rejection_keeps_reason_redacted_headers_and_body_head(receiver):
    before = receiver.store.rejection_count()
    exchange(receiver.port, request(body=b"[1, 2, 3]" + b" " * 400,
                                    headers=[*JSON_CT, ("X-Trace", "t-1")]))  # fmt: skip
    row = newest_rejection(receiver, before)
    headers = json.loads(row["headers"])
    assert headers["authorization"] == "<redacted>" and headers["x-trace"] == "t-1"
    assert row["body_head"] == (b"[1, 2, 3]" + b" " * 400)[:256] and row["body_size"] == 409
    assert row["method"] == "POST" and row["path"] == "/webhook"


def test_truncated_body_is_recorded_not_stored(receiver):
    before_events = receiver.count()
    before = receiver.store.rejection_count()
    raw = request(body=json.dumps({**EVENT, "modelId": "TRUNCATED01"}).encode())
    responses, closed = exchange(receiver.port, raw[:-15], shut=True, expect=0)
    assert responses == [] and closed
    row = newest_rejection(receiver, before)
    assert row["status"] == 400 and row["reason"].startswith("truncated body")
    assert row["body_head"] == raw[raw.index(b"\r\n\r\n") + 4 : -15]
    assert receiver.count() == before_events
    valid_event_is_accepted(receiver)


def test_idle_connection_is_closed_without_a_record(receiver):
    before = receiver.store.rejection_count()
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=TIMEOUT * 10) as sock:
        assert sock.recv(1024) == b""  # closed by the server, nothing said
    assert receiver.store.rejection_count() == before


def _accepted(receiver: Receiver, responses: list[Response]) -> int:
    assert responses and responses[-1].status == 200, responses
    return json.loads(responses[-1].body)["id"]


def test_chunked_body_is_decoded_and_stored_exactly(receiver):
    body = json.dumps({**EVENT, "modelId": "CHUNKED0001"}).encode()
    raw = request(body=chunked(body[:10], body[10:30], body[30:], trailer=b"X-T: 1\r\n"),
                  headers=[*JSON_CT, ("Transfer-Encoding", "chunked")], length=False)
    event_id = _accepted(receiver, exchange(receiver.port, raw[:60], 0.05, raw[60:])[0])
    assert receiver.store.raw_body(event_id) == body


def test_expect_100_continue_gets_interim_then_200(receiver):
    body = json.dumps({**EVENT, "modelId": "CONTINUE001"}).encode()
    head = request(body=b"", headers=[*JSON_CT, ("Expect", "100-continue"),
                                      ("Content-Length", str(len(body)))], length=False)
    sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=5)
    with sock:
        sock.sendall(head)
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        response = _parse(sock.recv(4096))
    assert response is not None and response[0].status == 200
    assert receiver.store.raw_body(json.loads(response[0].body)["id"]) == body


def test_raw_bodies_are_stored_not_dropped(receiver):
    blob = bytes(range(256))
    event_id = _accepted(receiver, exchange(receiver.port, request(
        body=blob, headers=[("Content-Type", "application/octet-stream")]))[0])
    assert receiver.store.raw_body(event_id) == blob
    text_id = _accepted(receiver, exchange(receiver.port, request(
        body=b"caf\xe9 not utf-8", headers=[("Content-Type", "text/plain")]))[0])
    assert receiver.store.raw_body(text_id) == b"caf\xe9 not utf-8"
    stored = receiver.store.event(text_id)
    assert stored.type is None and stored.payload is None


def test_unpaired_surrogate_is_valid_json_and_stored(receiver):
    body = b'{"type": "uploaded", "modelId": "\\ud800BAD"}'
    event_id = _accepted(receiver, exchange(receiver.port, request(body=body))[0])
    assert receiver.store.raw_body(event_id) == body
    row = receiver.events().set_index("id").loc[event_id]
    assert row["model_id"] == "\\ud800BAD"


def test_query_string_http10_and_pipelining(receiver):
    event_id = _accepted(receiver, exchange(receiver.port, request(path="/webhook?a=b&c=d"))[0])
    assert receiver.store.event(event_id).headers["host"] == "127.0.0.1"
    assert _accepted(receiver, exchange(receiver.port, request(version="HTTP/1.0"))[0])
    before = receiver.store.rejection_count()
    responses, _ = exchange(receiver.port, request(auth=False) + request(), expect=2)
    assert [r.status for r in responses] == [401, 200]
    assert newest_rejection(receiver, before)["status"] == 401


def test_slow_sender_does_not_block_others(receiver):
    """While one sender stalls mid-body, another request on another connection completes."""
    before = receiver.store.rejection_count()
    slow = socket.create_connection(("127.0.0.1", receiver.port), timeout=5)
    with slow:
        slow.sendall(request(body=json.dumps(EVENT).encode())[:-10])
        with httpx.Client(trust_env=False, timeout=5) as http:
            response = http.post(receiver.url, json={**EVENT, "modelId": "FASTSENDER1"},
                                 headers={"Authorization": AUTH})  # fmt: skip
        assert response.status_code == 200
        assert receiver.store.rejection_count() == before  # the slow one is still pending
        answer = _parse(slow.recv(4096))
    assert answer is not None and answer[0].status == 408
    assert newest_rejection(receiver, before)["reason"].startswith("body not complete")
