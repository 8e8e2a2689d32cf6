"""Delivery like a real platform: retries with backoff on non-2xx, timeouts and refused
connections, per-callback queues, credentials and extra headers on every attempt, the
attempt log (Python, JSON route, client), pings — and the generated history it delivers."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import statistics
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pandas as pd
import pytest

from mp_nb import ConfigurationError, LocalModelApi, ModelApiClient, Receiver, RetryPolicy
from mp_nb.credentials import CredType
from mp_nb.exceptions import ApiError, AuthenticationError
from mp_nb.local_api import Simulator
from mp_nb.local_api.delivery import ATTEMPT_COLUMNS, delivery_headers
from mp_nb.local_api.registry import StoredCallback
from mp_nb.local_api.simulator import iter_types

FAST = RetryPolicy(max_attempts=4, backoff=0.02, backoff_factor=2.0, timeout=2.0)


class Endpoint:
    """A tiny loopback HTTP endpoint that answers from a script: each entry is a status
    code, or ("sleep", seconds, status). After the script it answers 200. It records every
    request and counts the bodies it accepted (answered 2xx)."""

    def __init__(self, script=(), *, gate: threading.Event | None = None) -> None:
        self.script = list(script)
        self.gate = gate
        self.requests: list[dict] = []
        self.accepted: list[bytes] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.lock:
                    step = outer.script.pop(0) if outer.script else 200
                    outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                           "body": body, "at": time.monotonic()})
                if outer.gate is not None:
                    outer.gate.wait(10)
                if isinstance(step, tuple):
                    time.sleep(step[1])
                    step = step[2]
                if 200 <= step < 300:
                    with outer.lock:
                        outer.accepted.append(body)
                try:
                    self.send_response(step)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up (timeout) and closed the connection
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints():
    made: list[Endpoint] = []

    def make(script=(), **kwargs):
        made.append(Endpoint(script, **kwargs))
        return made[-1]

    yield make
    for e in made:
        e.close()


@pytest.fixture
def api():
    with LocalModelApi(retry=FAST) as local:
        yield local


@pytest.fixture
def client(api):
    with ModelApiClient(api.url, api.token_id, api.token_secret, backoff=0.0) as c:
        yield c


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- retries


def test_fails_twice_then_succeeds_three_attempts_with_growing_delays(api, client, endpoints):
    flaky = endpoints([500, 503])
    cb = client.add_callback(flaky.url + "?team=a", ["processed"], cred_type="basic",
                             cred_key="hook", cred_secret="s3cret",
                             additional_headers={"X-Team": "blue"})
    model = api.simulate.upload()
    api.simulate.process(model)
    assert api.drain(10)
    log = api.attempts()
    assert list(log.columns) == list(ATTEMPT_COLUMNS)
    assert list(log["attempt"]) == [1, 2, 3] and log["delivery_id"].nunique() == 1
    assert list(log["status"]) == [500, 503, 200]
    assert list(log["outcome"].astype(str)) == ["retrying", "retrying", "delivered"]
    assert list(log["error"].fillna("")) == ["HTTP 500", "HTTP 503", ""]
    assert (log["callback_id"] == cb.id).all() and (log["model_id"] == model).all()
    assert (log["event_type"].astype(str) == "processed").all()
    delays = list(log["delay_s"])
    assert delays == [FAST.delay_before(n) for n in (1, 2, 3)]
    assert delays[0] == 0 < delays[1] < delays[2]
    assert (log["latency_ms"] > 0).all()
    # each retry really waited at least its backoff
    started = [r["at"] for r in flaky.requests]
    assert all(b - a >= d for a, b, d in zip(started[:-1], started[1:], delays[1:], strict=True))
    # the event arrived once; every attempt carried the same body, credential, header, query
    assert len(flaky.accepted) == 1 and json.loads(flaky.accepted[0])["modelId"] == model
    assert len({r["body"] for r in flaky.requests}) == 1
    basic = "Basic " + base64.b64encode(b"hook:s3cret").decode()
    for request in flaky.requests:
        assert request["path"] == "/hook?team=a"
        assert request["headers"]["Authorization"] == basic
        assert request["headers"]["X-Team"] == "blue"
        assert request["headers"]["Content-Type"] == "application/json"


def test_gives_up_after_max_attempts(api, client, endpoints):
    down = endpoints([500] * 10)
    client.add_callback(down.url, ["uploaded"])
    api.simulate.upload()
    assert api.drain(10)
    log = api.attempts()
    assert list(log["attempt"]) == [1, 2, 3, 4] == list(range(1, FAST.max_attempts + 1))
    assert list(log["outcome"].astype(str)) == ["retrying"] * 3 + ["failed"]
    assert len(down.requests) == 4 and down.accepted == []


def test_a_timeout_is_a_failed_attempt_and_is_retried(endpoints):
    slow_once = endpoints([("sleep", 1.0, 200)])
    with LocalModelApi(retry=RetryPolicy(max_attempts=3, backoff=0.01, timeout=0.2)) as api, \
            ModelApiClient(api.url, api.token_id, api.token_secret) as client:
        client.add_callback(slow_once.url, ["uploaded"])
        api.simulate.upload()
        assert api.drain(10)
        log = api.attempts()
    assert list(log["attempt"]) == [1, 2]
    assert pd.isna(log["status"].iloc[0]) and "timed out after 0.2 s" in log["error"].iloc[0]
    assert log["latency_ms"].iloc[0] >= 200
    assert list(log["outcome"].astype(str)) == ["retrying", "delivered"]


def test_a_refused_connection_is_retried_and_logged(api, client):
    client.add_callback(f"http://127.0.0.1:{closed_port()}/gone", ["uploaded"])
    api.simulate.upload()
    assert api.drain(10)
    log = api.attempts()
    assert len(log) == FAST.max_attempts and log["status"].isna().all()
    assert log["error"].str.startswith("connection failed").all()
    assert log["outcome"].astype(str).iloc[-1] == "failed"


def test_a_remote_host_is_refused_without_retries_and_nothing_leaves(api, client):
    client.add_callback("https://hooks.example.com/mp", ["uploaded"])
    api.simulate.upload()
    assert api.drain(10)
    log = api.attempts()
    assert list(log["outcome"].astype(str)) == ["refused"] and log["latency_ms"].isna().all()
    assert "allow_remote_delivery=True" in log["error"].iloc[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"max_attempts": 0}, "max_attempts"), ({"timeout": 0}, "timeout"),
    ({"backoff": -1}, "backoff"), ({"backoff_factor": 0.5}, "backoff_factor"),
])
def test_retry_policy_rejects_nonsense(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        RetryPolicy(**kwargs)


# ---------------------------------------------------------------------- queues and order


def test_a_stuck_endpoint_does_not_hold_up_another_callback(api, client, endpoints, mp_receiver):
    gate = threading.Event()
    stuck = endpoints(gate=gate)
    client.add_callback(stuck.url, ["uploaded", "inserted"])
    client.add_callback(mp_receiver.url, ["uploaded", "inserted"], **mp_receiver.credentials)
    api.simulate.upload()
    api.simulate.upload()
    # the stuck endpoint has not answered anything yet, the receiver already has everything
    mp_receiver.wait_for(4, timeout=10)
    assert stuck.accepted == [] and len(stuck.requests) <= 1
    gate.set()
    assert api.drain(10)
    assert len(stuck.accepted) == 4


def test_a_callback_sees_its_events_in_emitted_order(api, client, mp_receiver):
    client.add_callback(mp_receiver.url, **mp_receiver.credentials)
    models = api.simulate.lifecycle(3, v2_steps=False)
    mp_receiver.wait_for(21, timeout=10)
    frame = mp_receiver.events()
    per_model = ["uploaded", "inserted", "processed", "updated", "bundle_requested",
                 "bundle_completed", "deleted"]  # the order lifecycle() documents
    assert list(frame["type"].astype(str)) == per_model * 3
    assert list(frame["model_id"]) == [m for m in models for _ in per_model]


# ---------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    "cred_type, cred_key, secret",
    [
        ("basic", "hook", "pa:ss:word"),
        ("basic", "hook user", "with spaces and ümläuts ✓"),
        ("basic", "ユーザー", "пароль: 秘密"),
        ("token", None, "tok-en_123.~+/="),
        ("token", "X-Api-Key", "abc def"),
    ],
)
def test_both_credential_kinds_are_verified_end_to_end(api, client, tmp_path, cred_type,
                                                       cred_key, secret):
    creds = {"cred_type": cred_type, "cred_key": cred_key, "cred_secret": secret}
    with Receiver(db=tmp_path / "events.sqlite3", **creds) as receiver:
        cb = client.add_callback(receiver.url, ["uploaded"], **creds)
        assert client.ping_callback(cb.id) is True
        api.simulate.upload()
        receiver.wait_for(1, timeout=10)
        frame = receiver.events(include_pings=True)
        assert list(frame["auth"].astype(str)) == ["verified", "verified"]
        assert len(receiver.rejections()) == 0
        # and a receiver expecting another secret refuses the same delivery
        client.patch_callback(cb.id, cred_type=cred_type, cred_key=cred_key,
                              cred_secret=secret + "x")
        assert client.ping_callback(cb.id) is False
        assert receiver.rejections()["status"].tolist() == [401]
        assert secret not in receiver.rejections()["headers"].iloc[0]


def test_token_credentials_travel_as_bearer_or_as_the_named_header(api, client, endpoints):
    target = endpoints()
    bearer = client.add_callback(target.url, ["uploaded"], cred_type="token", cred_secret="t1")
    named = client.add_callback(target.url, ["uploaded"], cred_type="token",
                                cred_key="X-Hook-Token", cred_secret="t2")
    assert client.ping_callback(bearer.id) and client.ping_callback(named.id)
    first, second = (r["headers"] for r in target.requests)
    assert first["Authorization"] == "Bearer t1" and "X-Hook-Token" not in first
    assert second["X-Hook-Token"] == "t2" and "Authorization" not in second


def test_additional_headers_never_override_the_credential_header():
    # The registry refuses such callbacks; this is the second line of defence.
    stored = StoredCallback(
        id="x", event_types=["uploaded"], version=1, scheme="http", host="127.0.0.1",
        port=9, path="", additional_headers=[("Authorization", "Bearer forged"),
                                             ("content-type", "text/plain"), ("X-Ok", "1")],
        cred_type=CredType.basic, cred_key="u", cred_secret="p")
    headers = delivery_headers(stored)
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert headers["Content-Type"] == "application/json" and headers["X-Ok"] == "1"
    assert "content-type" not in headers


# ---------------------------------------------------------------------- ping


def test_ping_is_one_attempt_and_reports_a_2xx(api, client, endpoints):
    ok, failing, moved = endpoints([204]), endpoints([500, 500]), endpoints([302])
    good = client.add_callback(ok.url, ["uploaded"])
    bad = client.add_callback(failing.url, ["uploaded"])
    redirect = client.add_callback(moved.url, ["uploaded"])
    gone = client.add_callback(f"http://127.0.0.1:{closed_port()}/x", ["uploaded"])
    assert client.ping_callback(good.id) is True
    assert client.ping_callback(bad.id) is False
    assert client.ping_callback(redirect.id) is False  # redirects are not followed
    assert client.ping_callback(gone.id) is False
    assert len(failing.requests) == 1  # no retries for a ping
    log = api.attempts()
    assert list(log["status"].fillna(-1)) == [204, 500, 302, -1]
    assert log["ping"].all() and (log["model_id"] == "PING0000000").all()
    payload = json.loads(ok.requests[0]["body"])
    assert payload["ping"] is True and payload["type"] == "uploaded"


# ---------------------------------------------------------------------- the attempt log


def test_the_attempt_log_over_http_matches_python(api, client, endpoints):
    target = endpoints([500])
    client.add_callback(target.url, ["uploaded"])
    api.simulate.upload()
    assert api.drain(10)
    attempts_url = api.url.replace("/api/models/graph", "/_local/attempts")
    with httpx.Client(trust_env=False) as http:
        assert http.get(attempts_url).status_code == 401
        assert http.post(attempts_url, auth=(api.token_id, api.token_secret)).status_code == 405
        rows = http.get(attempts_url, auth=(api.token_id, api.token_secret)).json()["attempts"]
        bearer = http.get(attempts_url,
                          headers={"Authorization": f"Bearer {api.access_token}"}).json()
    assert [(r["attempt"], r["status"], r["outcome"]) for r in rows] == [
        (1, 500, "retrying"), (2, 200, "delivered")]
    assert bearer["attempts"] == rows
    assert rows[0]["at"].endswith("Z") and set(rows[0]) == set(ATTEMPT_COLUMNS)
    pd.testing.assert_frame_equal(client.local_attempts(), api.attempts())


def test_local_attempts_errors_are_clear(api):
    expired = api.access_token
    api.expire_access_token()
    with ModelApiClient(api.url, access_token=expired) as old, \
            pytest.raises(AuthenticationError) as info:
        old.local_attempts()
    assert info.value.code == "invalid_grant" and info.value.status == 400
    with Receiver() as not_an_api, ModelApiClient(not_an_api.url, "id", "secret") as client, \
            pytest.raises(ApiError, match="only mp_nb's local Model API has one"):
        client.local_attempts()


# ---------------------------------------------------------------------- generated history


START = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday


def generate(seed, **kwargs):
    sim = Simulator(lambda occ: None, seed=seed)
    return sim.history(start=START, **kwargs)


def test_history_is_seeded_and_reproducible():
    def signature(occurrences):
        return [(o.model_id, o.at, o.v1 and o.v1[0], o.v2 and o.v2[0]) for o in occurrences]

    assert signature(generate(11, n_models=50)) == signature(generate(11, n_models=50))
    assert signature(generate(11, n_models=50)) != signature(generate(12, n_models=50))


@pytest.mark.parametrize("rate", [0.08, 0.3])
def test_observed_failure_rate_matches_the_seeded_one(rate):
    n = 600
    processed = [o.v2[1] for o in generate(5, n_models=n, failure_rate=rate)
                 if o.v2 and o.v2[0] == "processed"]
    assert len(processed) == n
    observed = sum(b["status"] == "failed" for b in processed) / n
    tolerance = 3.5 * (rate * (1 - rate) / n) ** 0.5
    assert abs(observed - rate) <= tolerance, (observed, rate)


def test_history_is_believable():
    occurrences = generate(3, n_models=400, days=28)
    times = [o.at for o in occurrences]
    assert times == sorted(times) and times[0] >= START and times[-1] <= START + timedelta(28)
    by_model: dict[str, list] = {}
    for o in occurrences:
        by_model.setdefault(o.model_id, []).append(o)
    uploads = [o.at for o in occurrences if o.v2 and o.v2[0] == "created"]
    assert len(uploads) == 400
    assert sum(t.weekday() < 5 for t in uploads) / len(uploads) > 0.8  # quiet weekends
    assert all(7 <= t.hour <= 20 for t in uploads)
    hours_to_process = []
    for steps in by_model.values():
        kinds = [o.v2[0] for o in steps if o.v2]
        if kinds[0] == "transferred_in":
            continue
        assert kinds[:2] == ["created", "processed"]
        hours_to_process.append((steps[2].at - steps[0].at) / timedelta(hours=1))
        if steps[2].v2[1]["status"] == "succeeded":
            assert "activation_state_changed" in kinds  # activation follows processing
            assert kinds.index("activation_state_changed") > kinds.index("processed")
        bundles = [o.v2[1]["status"] for o in steps if o.v2 and o.v2[0] == "bundle_updated"]
        assert bundles in ([], ["requested"], ["requested", "delivered"],
                           ["requested", "failed"])
        for end in ("transferred_out", "deleted"):
            if end in kinds and "restored" not in kinds:
                assert kinds[-1] == end  # nothing happens to a model after it left
    assert 2 <= statistics.median(hours_to_process) <= 4.5
    counts = Counter(iter_types(occurrences, 2))
    assert counts["bundle_updated"] > 100 and counts["deleted"] >= 5
    assert counts["transferred_out"] >= 1 and counts["transferred_in"] >= 1


def test_history_reaches_callbacks_of_both_versions(api, client, mp_receiver):
    client.add_callback(mp_receiver.url, version=1, **mp_receiver.credentials)
    client.add_callback(mp_receiver.url, version=2, **mp_receiver.credentials)
    occurrences = api.simulate.history(n_models=60, days=14)
    expected = sum(1 for _ in iter_types(occurrences, 1)) + sum(1 for _ in iter_types(
        occurrences, 2))
    assert api.drain(30)
    assert mp_receiver.count() == expected
    frame = mp_receiver.events()
    assert frame["model_id"].nunique() == len({o.model_id for o in occurrences})
    assert (api.attempts()["outcome"].astype(str) == "delivered").all()


@pytest.mark.parametrize("kwargs, message", [
    ({"failure_rate": 1.5}, "failure_rate"), ({"n_models": -1}, "n_models"),
    ({"days": 0}, "days"), ({"delete_rate": -0.1}, "delete_rate"),
])
def test_history_rejects_impossible_settings(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        generate(1, **kwargs)
