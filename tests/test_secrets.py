"""No secret (API token secret, credSecret) shows up in a repr, a log line, a list response,
a DataFrame or the store file — through a full lifecycle with real HTTP."""

from __future__ import annotations

import base64
import logging

import pytest

from mp_nb import CallbackTarget, LocalModelApi, ModelApiClient, Receiver

CRED_SECRET = "cred-SECRET-7f3a9c-pässwörd:with colon"
TOKEN_SECRET = "token-SECRET-1b2c3d4e5f"
# the secrets as they travel: in Basic headers they are base64 of "user:secret"
BASIC_FORMS = (
    base64.b64encode(f"hook-user:{CRED_SECRET}".encode()).decode(),
    base64.b64encode(f"tok-id:{TOKEN_SECRET}".encode()).decode(),
)
SECRETS = (CRED_SECRET, TOKEN_SECRET, *BASIC_FORMS)


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret leaked into {where}"
        assert secret.encode("utf-8").hex() not in text


@pytest.fixture
def world(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    api = LocalModelApi(token_secret=TOKEN_SECRET, token_id="tok-id")
    receiver = Receiver(
        cred_type="basic", cred_key="hook-user", cred_secret=CRED_SECRET, db=tmp_path / "events.sqlite3"
    )
    client = ModelApiClient(api.url, api.token_id, TOKEN_SECRET)
    yield api, receiver, client
    client.close()
    receiver.stop()
    api.stop()


def test_secrets_never_leak_through_a_full_lifecycle(world, caplog, http, tmp_path):
    api, receiver, client = world
    cb = client.add_callback(
        receiver.url + "?k=v", cred_type="basic", cred_key="hook-user", cred_secret=CRED_SECRET
    )
    assert client.ping_callback(cb.id)
    api.simulate.lifecycle(2, v2_steps=False)
    receiver.wait_for(14, timeout=20)
    api.drain()
    client.patch_callback(cb.id, cred_type="basic", cred_key="hook-user", cred_secret=CRED_SECRET)
    # a request with the right credentials to the wrong path is a rejection whose headers are kept
    http.post(
        receiver.url + "/wrong",
        json={"type": "x"},
        auth=("hook-user", CRED_SECRET),
    )

    # reprs and str()
    target = CallbackTarget.from_url(
        "https://example.com/x", cred_type="basic", cred_key="u", cred_secret=CRED_SECRET
    )
    for obj in (client, api, receiver, cb, target, target.model_dump(), receiver.store):
        assert_clean(repr(obj), f"repr of {type(obj).__name__}")
        assert_clean(str(obj), f"str of {type(obj).__name__}")
    assert_clean(client.last_graphql, "client.last_graphql")
    assert_clean(repr(client.last_operation), "client.last_operation")

    # list responses, raw and parsed
    raw = http.post(
        api.url,
        json={"query": "{ modelEventWebhookCallbacks { results { id callback { credType credKey } } } }"},
        auth=(api.token_id, TOKEN_SECRET),
    )
    assert raw.status_code == 200
    assert_clean(raw.text, "list response")
    assert_clean(repr(client.callbacks()), "parsed callbacks")

    # DataFrames, in every text form a user might print or export
    frames = {
        "events": receiver.events(include_pings=True),
        "rejections": receiver.rejections(),
        "attempts": api.attempts(),
        "callbacks": client.callbacks_frame(),
    }
    assert len(frames["events"]) == 15 and len(frames["rejections"]) == 1
    assert frames["rejections"]["headers"].iloc[0].count("<redacted>") == 1
    for name, frame in frames.items():
        assert_clean(frame.to_csv(), f"{name} DataFrame")
        assert_clean(frame.to_string(), f"{name} DataFrame repr")

    # log records of every logger that propagates
    assert_clean("\n".join(r.getMessage() for r in caplog.records), "log records")

    # the store file itself
    receiver.stop()
    for path in tmp_path.glob("events.sqlite3*"):
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"secret in {path.name}"
