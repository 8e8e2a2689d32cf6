"""The receiver: the seed's sample payloads become typed rows; bad requests are refused,
recorded and do not stop it; the store outlives the receiver."""

from __future__ import annotations

import base64
import json

import pandas as pd
import pytest

from mp_nb import Receiver, open_store, parse_event
from mp_nb.events import BundleCompleted, BundleRequested, Deleted, Inserted, Processed, Uploaded

EXPECTED_CLASS = {
    "uploaded": Uploaded,
    "processed": Processed,
    "inserted": Inserted,
    "deleted": Deleted,
    "bundle_requested": BundleRequested,
    "bundle_completed": BundleCompleted,
}


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def creds(mp_receiver):
    c = mp_receiver.credentials
    return basic(c["cred_key"], c["cred_secret"])


def test_each_seed_sample_becomes_one_typed_row(seed_payloads, http, mp_receiver, creds):
    for name, payload in seed_payloads.items():
        response = http.post(mp_receiver.url, json=payload, headers=creds)
        assert response.status_code == 200, (name, response.text)
    frame = mp_receiver.events()
    assert len(frame) == 6
    by_type = frame.set_index(frame["type"].astype(str))
    for name, payload in seed_payloads.items():
        row = by_type.loc[name]
        assert row["model_id"] == payload["modelId"]
        assert row["event_time"] == pd.Timestamp(payload["timestamp"], unit="ms", tz="UTC")
        assert row["webhook_version"] == 1 and row["auth"] == "verified"
        assert json.loads(row["payload"]) == payload
        assert isinstance(parse_event(row["payload"]), EXPECTED_CLASS[name])
    assert by_type.loc["processed", "success"] == True  # noqa: E712  (the string "true")
    assert bool(by_type.loc["bundle_completed", "success"]) is True
    assert pd.isna(by_type.loc["uploaded", "success"])
    assert by_type.loc["bundle_requested", "actor"] == "test@test.com"
    assert by_type.loc["uploaded", "actor"] == "test@test.com"
    assert by_type.loc["bundle_completed", "bundle_id"] == "bim:cad"
    assert json.loads(by_type.loc["bundle_requested", "data"]) == {"bundleOptions": {"style": "mep"}}


def test_dataframe_dtypes(seed_payloads, http, mp_receiver, creds):
    http.post(mp_receiver.url, json=seed_payloads["processed"], headers=creds)
    frame = mp_receiver.events()
    assert str(frame["received_at"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["event_time"].dtype) == "datetime64[ns, UTC]"
    assert isinstance(frame["type"].dtype, pd.CategoricalDtype)
    assert str(frame["success"].dtype) == "boolean"
    assert str(frame["webhook_version"].dtype) == "Int8"
    assert frame["received_at"].iloc[0] >= frame["event_time"].iloc[0]


def test_unknown_type_and_extra_fields_are_kept(http, mp_receiver, creds):
    payload = {
        "type": "model_teleported",
        "modelId": "AAAAAAAAAAA",
        "timestamp": 1663595798725,
        "newField": {"x": 1},
    }
    assert http.post(mp_receiver.url, json=payload, headers=creds).status_code == 200
    row = mp_receiver.events().iloc[0]
    assert row["type"] == "model_teleported"
    assert json.loads(row["payload"]) == payload
    event = parse_event(row["payload"])
    assert type(event).__name__ == "UnknownEvent" and event.model_extra["newField"] == {"x": 1}


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "missing Authorization header"),
        (basic("mp-nb-test", "wrong"), "wrong username or password"),
        (basic("someone-else", "x"), "wrong username or password"),
        ({"Authorization": "Bearer abc"}, "expected Basic credentials, got Bearer"),
        ({"Authorization": "Basic !!!"}, "malformed Basic credentials (not base64)"),
    ],
)
def test_bad_credentials_401_recorded_and_still_serving(
    seed_payloads, http, mp_receiver, creds, headers, reason
):
    response = http.post(mp_receiver.url, json=seed_payloads["uploaded"], headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": reason}
    rejections = mp_receiver.rejections()
    assert list(rejections["status"]) == [401]
    assert rejections["reason"].iloc[0] == reason
    assert len(mp_receiver.events()) == 0
    assert http.post(mp_receiver.url, json=seed_payloads["uploaded"], headers=creds).status_code == 200
    assert len(mp_receiver.events()) == 1


@pytest.mark.parametrize(
    "body, reason_start",
    [
        (b"{not json", "invalid JSON"),
        (b'["a list"]', "JSON body is a list, not an object"),
        (b"42", "JSON body is a int, not an object"),
        (b"", "invalid JSON"),
    ],
)
def test_invalid_json_400_recorded_and_still_serving(
    seed_payloads, http, mp_receiver, creds, body, reason_start
):
    response = http.post(mp_receiver.url, content=body, headers={**creds, "Content-Type": "application/json"})
    assert response.status_code == 400
    rejection = mp_receiver.rejections().iloc[0]
    assert rejection["status"] == 400 and rejection["reason"].startswith(reason_start)
    assert rejection["body_head"] == body[:256]
    assert http.post(mp_receiver.url, json=seed_payloads["deleted"], headers=creds).status_code == 200


def test_wrong_method_and_path(http, mp_receiver, creds):
    assert http.get(mp_receiver.url, headers=creds).status_code == 405
    assert http.post(mp_receiver.url + "/elsewhere", json={}, headers=creds).status_code == 404
    assert list(mp_receiver.rejections()["status"]) == [405, 404]


def test_body_over_limit_413(http, tmp_path):
    with Receiver(db=tmp_path / "s.sqlite3", max_body=100) as r:
        response = http.post(r.url, json={"type": "uploaded", "pad": "x" * 200})
        assert response.status_code == 413
        assert r.rejections()["reason"].iloc[0].startswith("body of ")


def test_token_credentials_bearer_and_named_header(seed_payloads, http, tmp_path):
    with Receiver(cred_type="token", cred_secret="t0ken", db=tmp_path / "a.sqlite3") as r:
        assert (
            http.post(r.url, json={"type": "x"}, headers={"Authorization": "Bearer t0ken"}).status_code == 200
        )
        assert (
            http.post(r.url, json={"type": "x"}, headers={"Authorization": "Bearer nope"}).status_code == 401
        )
    with Receiver(cred_type="token", cred_key="X-Api-Key", cred_secret="k3y", db=tmp_path / "b.sqlite3") as r:
        assert http.post(r.url, json={"type": "x"}, headers={"X-Api-Key": "k3y"}).status_code == 200
        response = http.post(r.url, json={"type": "x"}, headers={"X-Api-Key": "bad"})
        assert response.status_code == 401 and response.json()["error"] == "wrong token in X-Api-Key header"
        stored = json.loads(r.events()["payload"].iloc[0])
        assert stored == {"type": "x"}


def test_store_reopens_without_a_receiver(seed_payloads, http, tmp_path):
    db = tmp_path / "history.sqlite3"
    with Receiver(db=db) as r:
        for payload in seed_payloads.values():
            assert http.post(r.url, json=payload).status_code == 200
    reopened = open_store(db).events()
    assert sorted(reopened["type"].astype(str)) == sorted(seed_payloads)
    assert (reopened["auth"] == "none").all()


def test_wait_for_timeout_names_what_arrived(seed_payloads, http, mp_receiver, creds):
    from mp_nb.exceptions import WaitTimeout

    http.post(mp_receiver.url, json=seed_payloads["uploaded"], headers=creds)
    with pytest.raises(WaitTimeout, match=r"got 1; stored so far: uploaded=1"):
        mp_receiver.wait_for(2, timeout=0.3)
    assert mp_receiver.wait_for(1, types=["uploaded"], timeout=1) == 1


def test_restart_on_same_port_replaces_old_receiver(http, tmp_path):
    first = Receiver(db=tmp_path / "one.sqlite3")
    port = first.port
    second = Receiver(db=tmp_path / "two.sqlite3", port=port)  # a re-run notebook cell
    try:
        assert not first.running and second.running and second.port == port
        assert http.post(second.url, json={"type": "uploaded"}).status_code == 200
        assert len(second.events()) == 1
    finally:
        second.stop()
        first.stop()


def test_bad_arguments_name_the_field(tmp_path):
    from mp_nb import ConfigurationError

    with pytest.raises(ConfigurationError, match="cred_secret"):
        Receiver(cred_type="basic", cred_key="u", db=tmp_path / "x.sqlite3", start=False)
    with pytest.raises(ConfigurationError, match="cred_key"):
        Receiver(cred_type="basic", cred_secret="s", db=tmp_path / "x.sqlite3", start=False)
    with pytest.raises(ConfigurationError, match="host"):
        Receiver(host="0.0.0.0", db=tmp_path / "x.sqlite3", start=False)
    with pytest.raises(ConfigurationError, match="port"):
        Receiver(port=70000, db=tmp_path / "x.sqlite3", start=False)
    with pytest.raises(ValueError):
        Receiver(cred_type="hmac", cred_secret="s", db=tmp_path / "x.sqlite3", start=False)
