"""Replay: stored events go out again byte for byte (checked by a second real receiver), the
curl command does the same from a shell without showing the secret, and traffic stays local."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

import httpx
import pytest

from mp_nb import ConfigurationError, Receiver
from mp_nb.replay import SECRET_ENV, curl_command, replay

ODD_JSON = (b'{"type":  "processed",\n "modelId": "R\\u00e9PLAY0001", "timestamp": 1663595796940,'
            b' "data": {"success":"true"},  "note": "caf\xc3\xa9 \xe2\x82\xac"}\n')  # fmt: skip
BINARY = bytes(range(256)) + b"'\"%\\$`"


@pytest.fixture
def source(tmp_path):
    with Receiver(cred_type="basic", cred_key="hook", cred_secret="src-secret",
                  db=tmp_path / "source.sqlite3") as r:  # fmt: skip
        auth = {"Authorization": "Basic " + base64.b64encode(b"hook:src-secret").decode()}
        with httpx.Client(trust_env=False, timeout=5) as http:
            for body, ctype in ((ODD_JSON, "application/json; charset=utf-8"),
                                (BINARY, "application/octet-stream"),
                                (b'{"type": "uploaded", "modelId": "OTHER000001"}', None)):
                headers = {**auth, **({"Content-Type": ctype} if ctype else {})}
                assert http.post(r.url, content=body, headers=headers).status_code == 200
        yield r


@pytest.fixture
def target(tmp_path):
    with Receiver(cred_type="token", cred_key="X-Hook-Token", cred_secret="tgt-secret",
                  db=tmp_path / "target.sqlite3") as r:  # fmt: skip
        yield r


def test_replay_reproduces_bytes_and_content_type(source, target):
    frame = source.events()
    result = replay(source, frame, target.url, cred_type="token", cred_key="X-Hook-Token",
                    cred_secret="tgt-secret")  # fmt: skip
    assert result["ok"].all() and list(result["status"]) == [200, 200, 200]
    originals = source.store.get(frame["id"])
    copies = target.store.get(range(1, 4))
    assert [c.body for c in copies] == [o.body for o in originals]
    assert copies[0].body == ODD_JSON and copies[1].body == BINARY
    assert [c.content_type for c in copies] == [o.content_type for o in originals]
    assert copies[2].content_type is None
    assert target.events()["auth"].eq("verified").all()


def test_replay_filtered_frame_and_single_id(source, target):
    processed = source.events(types="processed")
    assert len(processed) == 1
    result = replay(source.store, processed, target.url, cred_type="token",
                    cred_key="X-Hook-Token", cred_secret="tgt-secret")  # fmt: skip
    assert list(result["id"]) == list(processed["id"])
    assert target.store.raw_body(1) == ODD_JSON
    wrong = replay(source.db_path, 2, target.url)  # a path works too; no credentials → 401
    assert list(wrong["status"]) == [401] and not wrong["ok"].any()
    assert target.rejections()["reason"].iloc[-1] == "missing X-Hook-Token header"


def test_replay_into_the_same_receiver_is_flagged_duplicate(source):
    first = int(source.events(types="processed")["id"].iloc[0])
    result = replay(source, first, source.url, cred_type="basic", cred_key="hook",
                    cred_secret="src-secret")  # fmt: skip
    assert result["ok"].all()
    events = source.events()
    copy = events.iloc[-1]
    assert bool(copy["duplicate"]) and copy["duplicate_of"] == first


@pytest.mark.parametrize("url", ["http://192.0.2.10/hook", "https://example.com/hook",
                                 "http://10.0.0.1:8080/x"])  # fmt: skip
def test_non_loopback_targets_are_refused(source, url):
    with pytest.raises(ConfigurationError, match="not a loopback address"):
        replay(source, 1, url)
    with pytest.raises(ConfigurationError, match="allow_remote=True"):
        curl_command(source, 1, url)


def test_bad_event_arguments_name_the_field(source, target):
    with pytest.raises(ConfigurationError, match="no event with id 999"):
        replay(source, [999], target.url)
    with pytest.raises(ConfigurationError, match="events:"):
        replay(source, "abc", target.url)
    with pytest.raises(ConfigurationError, match="url:"):
        replay(source, 1, "ftp://127.0.0.1/x")
    with pytest.raises(ConfigurationError, match=r"events: give an event id.*got '12'"):
        replay(source, "12", target.url)  # not events 1 and 2
    with pytest.raises(ConfigurationError, match="cred_type: 'oauth' is not a credential type"):
        replay(source, 1, target.url, cred_type="oauth", cred_secret="x")
    with pytest.raises(ConfigurationError, match="given without cred_type"):
        replay(source, 1, target.url, cred_key="hook")
    with pytest.raises(ConfigurationError, match="given without cred_type"):
        curl_command(source, 1, target.url, cred_key="hook")


def test_a_frame_from_another_store_is_refused_not_misread(source, target):
    with httpx.Client(trust_env=False, timeout=5) as http:
        http.post(target.url, json={"type": "deleted", "modelId": "FROM_TARGET"},
                  headers={"X-Hook-Token": "tgt-secret"})
    with pytest.raises(ConfigurationError, match="this DataFrame comes from another store"):
        replay(source, target.events(), target.url)


def test_replay_takes_the_ids_pandas_hands_out(source, target):
    creds = {"cred_type": "token", "cred_key": "X-Hook-Token", "cred_secret": "tgt-secret"}
    frame = source.events()
    one = frame["id"].iloc[0]  # a numpy integer
    result = replay(source, one, target.url, **creds)
    assert result["id"].tolist() == [int(one)] and result["ok"].all()
    again = replay(source, frame["id"], target.url, **creds)
    assert again["id"].tolist() == frame["id"].tolist() and again["ok"].all()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
@pytest.mark.parametrize("event_id", [1, 2, 3], ids=["odd-json", "binary", "no-content-type"])
def test_curl_command_sends_the_same_bytes_and_hides_the_secret(source, tmp_path, event_id):
    with Receiver(cred_type="basic", cred_key="curl user", cred_secret="curl-$ecret",
                  db=tmp_path / "curl.sqlite3") as sink:  # fmt: skip
        command = curl_command(source, event_id, sink.url, cred_type="basic",
                               cred_key="curl user", cred_secret="curl-$ecret")  # fmt: skip
        assert "curl-$ecret" not in command and f"${SECRET_ENV}" in command
        env = {**os.environ, SECRET_ENV: "curl-$ecret", "NO_PROXY": "*"}
        done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert b'"ok": true' in done.stdout
        stored = sink.store.event(1)
        original = source.store.event(event_id)
        assert stored.body == original.body
        assert stored.content_type == original.content_type


def test_curl_command_for_token_header_uses_the_env_variable(source, target):
    command = curl_command(source, 1, target.url, cred_type="token", cred_key="X-Hook-Token",
                           cred_secret="tgt-secret")  # fmt: skip
    assert "tgt-secret" not in command
    assert f'"X-Hook-Token: ""${SECRET_ENV}"' in command
    bearer = curl_command(source, 1, target.url, cred_type="token")
    assert f'"Authorization: Bearer ${SECRET_ENV}"' in bearer
