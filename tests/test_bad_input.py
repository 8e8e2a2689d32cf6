"""Bad input found by trying to break mp_nb as a new user would: each gets a clear error that
names the field, and nothing already stored is touched."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from mp_nb import ConfigurationError, ModelApiClient, Receiver, open_store
from mp_nb.exceptions import InvalidRequestError


@pytest.mark.parametrize("header", ["Content-Type", "content-length", "Host"])
def test_a_token_cannot_travel_in_a_framing_header(mp_client, mp_receiver, tmp_path, header):
    with pytest.raises(ConfigurationError, match=f"cred_key: '{header}' is set by the delivery"):
        mp_client.add_callback(
            mp_receiver.url, ["uploaded"], cred_type="token", cred_key=header, cred_secret="TOPSECRETTOKEN"
        )
    with pytest.raises(ConfigurationError, match="cred_key"):
        Receiver(cred_type="token", cred_key=header, cred_secret="x", db=tmp_path / "r.sqlite3", start=False)
    # and the API itself refuses it, whatever the client
    query = (
        "mutation { addModelEventWebhookCallback(input: {eventTypes: [uploaded], callback: "
        f'{{scheme: "http", host: "127.0.0.1", credType: token, credKey: "{header}", '
        'credSecret: "TOPSECRETTOKEN"}}) { id } }'
    )
    with pytest.raises(InvalidRequestError, match="credKey"):
        mp_client.execute(query)
    assert mp_client.callbacks() == []


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"cred_type": "bearer", "cred_secret": "x"}, "'bearer' is not a credential type"),
        ({"cred_type": "token", "cred_secret": 12345}, "cred_secret: must be a string"),
    ],
)
def test_receiver_credential_arguments(tmp_path, bad, message):
    with pytest.raises(ConfigurationError, match=message):
        Receiver(db=tmp_path / "r.sqlite3", start=False, **bad)


def test_open_store_never_modifies_another_database(tmp_path):
    other = tmp_path / "app.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(ConfigurationError, match="SQLite database of something else"):
        open_store(other)
    with pytest.raises(ConfigurationError, match=r"db: .*something else"):
        Receiver(db=other, start=False)
    assert other.read_bytes() == before
    text = tmp_path / "notes.db"
    text.write_text("not a database at all " * 20)
    with pytest.raises(ConfigurationError, match="not a SQLite database"):
        open_store(text)
    (tmp_path / "empty.db").touch()
    with pytest.raises(ConfigurationError, match="no store at"):
        open_store(tmp_path / "empty.db")
    with pytest.raises(ConfigurationError, match="expected a file path"):
        open_store(None)  # type: ignore[arg-type]


def test_client_refuses_credentials_in_its_url():
    with pytest.raises(ConfigurationError, match="url: contains credentials") as info:
        ModelApiClient("http://id:SECRETX@127.0.0.1:1/api/models/graph", "a", "b")
    assert "SECRETX" not in str(info.value)
    with pytest.raises(ConfigurationError, match="token_secret: must be a string"):
        ModelApiClient("http://127.0.0.1:1/api/models/graph", "a", 12345)  # type: ignore[arg-type]


def test_wait_for_checks_its_arguments(mp_receiver):
    with pytest.raises(ConfigurationError, match="n: must be a count"):
        mp_receiver.wait_for(-1)
    with pytest.raises(ConfigurationError, match="'uplodaed' not a Matterport event type"):
        mp_receiver.wait_for(1, types="uplodaed", timeout=0.1)


def test_page_size_zero_is_refused_not_replaced(mp_client):
    with pytest.raises(InvalidRequestError, match="pageSize: 0"):
        mp_client.callbacks(page_size=0)


def test_version_must_be_an_integer(mp_client):
    with pytest.raises(ConfigurationError, match="got '2'"):
        mp_client.add_callback("http://127.0.0.1:9/x", ["created"], version="2")  # type: ignore[arg-type]


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mp_nb", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_cli_argument_errors_read_well(tmp_path):
    proc = run_cli("demo", "--models", "abc")
    assert proc.returncode == 2 and "invalid positive integer value: 'abc'" in proc.stderr
    proc = run_cli("receive", "--port", "x")
    assert proc.returncode == 2 and "invalid port number value" in proc.stderr
    proc = run_cli("local-api", "--every", "0", "--simulate", "1")
    assert proc.returncode == 2 and "--every: must be at least 0.1 seconds" in proc.stderr
    proc = run_cli("local-api", "--simulate", "-1")
    assert proc.returncode == 2 and "--simulate: must be 0 or more" in proc.stderr
    proc = run_cli("receive", "--cred-type", "basic", "--cred-secret", "hunter2")
    assert proc.returncode == 2 and "secrets never go on the command line" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout


def test_cli_unwritable_output_is_one_line(tmp_path):
    with Receiver(db=tmp_path / "s.sqlite3"):
        pass
    proc = run_cli(
        "events",
        "--db",
        str(tmp_path / "s.sqlite3"),
        "--format",
        "csv",
        "--output",
        str(tmp_path / "missing-dir" / "out.csv"),
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("mp-nb: error:") and "Traceback" not in proc.stderr
    assert "No such file or directory" in proc.stderr


def test_demo_on_an_existing_store_reports_only_its_own_run(tmp_path):
    db = tmp_path / "demo.sqlite3"
    first = run_cli("demo", "--db", str(db))
    second = run_cli("demo", "--db", str(db))
    for proc in (first, second):
        assert proc.returncode == 0, proc.stderr
        assert "21 events stored, 21 with verified credentials, 0 rejected" in proc.stdout
    assert len(open_store(db).events()) == 42


def test_mp_nb_receive_shows_refused_requests(tmp_path):
    import os

    import httpx

    env = {**os.environ, "MP_NB_CRED_SECRET": "right-secret", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "mp_nb",
        "receive",
        "--db",
        str(tmp_path / "r.sqlite3"),
        "--cred-type",
        "basic",
        "--cred-key",
        "hook",
        "--count",
        "1",
    ]
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[2]
        with httpx.Client(trust_env=False, timeout=10) as http:
            assert http.post(url, json={"type": "uploaded"}, auth=("hook", "wrong")).status_code == 401
            assert (
                proc.stdout.readline()
                .rstrip()
                .endswith("refused 401 POST /webhook: wrong username or password")
            )
            assert http.post(url, json={"type": "uploaded"}, auth=("hook", "right-secret")).status_code == 200
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "uploaded" in out and "right-secret" not in out + err


@pytest.mark.parametrize("secret", [["S3CRETLIST"], 12345, {"s": "S3CRETDICT"}, b"S3CRETBYTES"])
def test_patch_refuses_a_non_string_secret_without_echoing_it(mp_client, mp_receiver, secret):
    cb = mp_client.add_callback(mp_receiver.url, ["uploaded"])
    with pytest.raises(ConfigurationError, match="cred_secret: must be a string") as caught:
        mp_client.patch_callback(cb.id, cred_type="token", cred_secret=secret)
    assert "S3CRET" not in str(caught.value) and "12345" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="cred_secret: empty; leave it out"):
        mp_client.patch_callback(cb.id, cred_secret="")
    with pytest.raises(ConfigurationError, match="cred_type: 'oauth' is not a credential type"):
        mp_client.patch_callback(cb.id, cred_type="oauth")
    assert mp_client.get_callback(cb.id).callback.cred_type is None  # nothing was changed
    mp_client.remove_callback(cb.id)


def test_callback_target_errors_never_show_the_secret():
    from pydantic import ValidationError

    from mp_nb import CallbackTarget

    with pytest.raises(ValidationError) as caught:
        CallbackTarget(path="x", cred_type="basic", cred_key="me", cred_secret="S3CRETVALUE")  # type: ignore[call-arg]
    assert "host" in str(caught.value) and "S3CRETVALUE" not in str(caught.value)


def test_credentials_never_travel_in_additional_headers(mp_client, mp_receiver):
    for name in ("Authorization", "proxy-authorization"):
        with pytest.raises(ConfigurationError, match="carries credentials, and extra headers are listed"):
            mp_client.add_callback(mp_receiver.url, ["uploaded"], additional_headers={name: "Basic bWU6YWJj"})
    cb = mp_client.add_callback(mp_receiver.url, ["uploaded"], additional_headers={"X-Team": "a"})
    with pytest.raises(ConfigurationError, match="'Authorization' carries credentials"):
        mp_client.patch_callback(cb.id, additional_headers={"Authorization": "Bearer x"})
    expected = r"additional_headers: expected a dict or \(key, value\) pairs, got int"
    with pytest.raises(ConfigurationError, match=expected):
        mp_client.add_callback(mp_receiver.url, ["uploaded"], additional_headers=42)
    assert [kv.key for kv in mp_client.get_callback(cb.id).callback.additional_headers] == ["X-Team"]
    mp_client.remove_callback(cb.id)


def test_not_found_names_the_id(mp_client):
    from mp_nb import NotFoundError

    for call in (mp_client.remove_callback, mp_client.ping_callback, mp_client.get_callback):
        with pytest.raises(NotFoundError) as caught:
            call("nosuchid")
        assert caught.value.message == "Error fetching data"  # the API's own words, unchanged
        assert "no callback with id 'nosuchid'" in str(caught.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"path": None}, "path: give the URL path to listen on"),
        ({"path": "/x?a=1"}, "give query params separately"),
        ({"path": "/x y"}, "percent-encode it"),
        ({"port": "0"}, "port: must be an integer, got '0'"),
        ({"max_body": "1MB"}, "max_body: must be a number of bytes, at least 1; got '1MB'"),
        ({"max_age": "1d"}, "max_age: must be a positive number of seconds or a timedelta, got '1d'"),
        ({"max_rows": 2.5}, "max_rows: must be an integer"),
        ({"head_timeout": "x"}, "head_timeout: must be a positive number"),
        ({"host": "not a host"}, "host: host 'not a host' must be a bare host name"),
        ({"cred_type": "basic", "cred_key": 7, "cred_secret": "x"}, "cred_key: must be a string"),
    ],
)
def test_receiver_arguments_are_checked_by_name(tmp_path, kwargs, message):
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        Receiver(db=tmp_path / "r.sqlite3", start=False, **kwargs)


def test_history_filters_and_handlers_catch_type_typos(mp_receiver):
    with pytest.raises(ConfigurationError, match="'uplodaed' is neither a Matterport event type nor a type"):
        mp_receiver.events(types="uplodaed")
    with pytest.raises(ConfigurationError, match="'nope' is neither a Matterport event type"):
        mp_receiver.on("nope", print)
    with pytest.raises(ConfigurationError, match="types: give a string or a list of strings, got 5"):
        mp_receiver.events(types=5)
    with pytest.raises(ConfigurationError, match="model_id: give a string or a list of strings, got 123"):
        mp_receiver.events(model_id=123)
    with pytest.raises(ConfigurationError, match="timeout: must be a number of seconds"):
        mp_receiver.wait_for(1, timeout="x")
    assert len(mp_receiver.events(types=["uploaded", "processed"])) == 0  # known types are fine


def test_a_type_the_platform_added_later_is_accepted_once_stored(tmp_path):
    import httpx

    with Receiver(db=tmp_path / "r.sqlite3") as receiver, httpx.Client(trust_env=False) as http:
        assert http.post(receiver.url, json={"type": "model_archived", "modelId": "M1"}).status_code == 200
        receiver.on("model_archived", lambda event: None)
        assert receiver.events(types="model_archived")["model_id"].tolist() == ["M1"]


def test_wait_for_on_a_stopped_receiver_says_so_at_once(tmp_path):
    import time

    from mp_nb.exceptions import ReceiverError

    receiver = Receiver(db=tmp_path / "r.sqlite3")
    receiver.stop()
    started = time.monotonic()
    with pytest.raises(ReceiverError, match="is stopped: 0 of 1 events arrived; start it again"):
        receiver.wait_for(1, timeout=30)
    assert time.monotonic() - started < 10  # not the whole timeout
    assert receiver.wait_for(0, timeout=30) == 0


def test_mp_nb_receive_never_prints_control_characters(tmp_path):
    import os

    import httpx

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mp_nb", "receive", "--db", str(tmp_path / "r.sqlite3"), "--count", "2"]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[2]
        with httpx.Client(trust_env=False, timeout=10) as http:
            assert http.post(url.replace("/webhook", "/%0aFAKE%1b[31m")).status_code == 404
            forged = {"type": "uploaded\nFAKE refused 401", "modelId": "\u001b[31mRED"}
            assert http.post(url, json=forged).status_code == 200
            assert http.post(url, json={}).status_code == 200
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.splitlines()  # the banner line was read above
    assert len(lines) == 3, out
    assert "\x1b" not in out and not any(line.startswith("FAKE") for line in lines)
    assert "refused 404 POST /\\nFAKE\\x1b[31m" in lines[0]
    assert "uploaded\\nFAKE refused 401" in lines[1] and "\\x1b[31mRED" in lines[1]
    assert "(no type)" in lines[2]


def test_query_param_without_a_value_is_refused_not_sent_as_none(mp_client, mp_receiver):
    with pytest.raises(ConfigurationError, match="query_params: 'a' has no value"):
        mp_client.add_callback(mp_receiver.url, ["uploaded"], query_params={"a": None})
    assert mp_client.callbacks() == []


def test_a_huge_json_number_is_refused_in_plain_words(tmp_path):
    import httpx

    with Receiver(db=tmp_path / "r.sqlite3") as receiver, httpx.Client(trust_env=False) as http:
        answer = http.post(receiver.url, content=b'{"n": ' + b"9" * 5000 + b"}")
        assert answer.status_code == 400
        assert "a number with more than 4300 digits" in answer.json()["error"]
        assert "sys." not in answer.text
        assert http.post(receiver.url, json={"type": "uploaded"}).status_code == 200


def test_store_and_simulator_arguments_are_checked(tmp_path, mp_local_api):
    with pytest.raises(ConfigurationError, match="db: cannot create the folder /proc/nope"):
        Receiver(db="/proc/nope/x.sqlite3", start=False)
    receiver = Receiver(db=tmp_path / "r.sqlite3", start=False)
    with pytest.raises(ConfigurationError, match="model_id: give a model id"):
        receiver.timeline(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="n_models: must be a count of models"):
        mp_local_api.simulate.lifecycle(-1)


def test_a_percent_encoded_receiver_path_accepts_its_own_url(tmp_path):
    import httpx

    with Receiver("/hooks%20x", db=tmp_path / "r.sqlite3") as receiver, httpx.Client(trust_env=False) as http:
        assert receiver.url.endswith("/hooks%20x")
        assert http.post(receiver.url, json={"type": "uploaded"}).status_code == 200
        assert http.post(receiver.url.replace("%20x", "y"), json={"type": "uploaded"}).status_code == 404


def test_more_arguments_are_checked_by_name(mp_client, mp_receiver, tmp_path):
    from mp_nb import LocalModelApi
    from mp_nb.exceptions import ReceiverError

    for call, message in [
        (lambda: mp_client.add_callback(123, ["uploaded"]), "url: must be a string"),
        (lambda: mp_client.remove_callback(5), "callback_id: must be a string"),
        (lambda: mp_client.get_callback(""), "callback_id: empty"),
        (lambda: mp_client.add_callback(mp_receiver.url, ["uploaded"], version=True), "got True"),
        (lambda: mp_client.callbacks(page_size="5"), "page_size: must be an integer 1-1000"),
        (lambda: mp_client.add_callback("127.0.0.1:9/hooks", ["uploaded"]), "start the URL with http"),
        (lambda: mp_client.add_callback(mp_receiver.url, ["uploaded"],
                                        additional_headers={"X-A": "1", "x-a": "2"}), "given twice"),
        (lambda: LocalModelApi(port="8765"), "port: must be an integer, got '8765'"),
        (lambda: mp_receiver.wait_until_ready("M", timeout="x"), "timeout: must be a number"),
        (lambda: mp_receiver.when_ready(5), "fn: give a function"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            call()
    stopped = Receiver(db=tmp_path / "s.sqlite3")
    stopped.stop()
    with pytest.raises(ReceiverError, match="is stopped: model M is not ready yet"):
        stopped.wait_until_ready("M", timeout=30)


def test_a_handler_that_exits_is_recorded_and_the_worker_goes_on(tmp_path):
    import httpx

    seen = []
    with Receiver(db=tmp_path / "r.sqlite3") as receiver, httpx.Client(trust_env=False) as http:
        receiver.on("uploaded", lambda event: sys.exit(3))
        receiver.on("processed", lambda event: seen.append(event.id))
        http.post(receiver.url, json={"type": "uploaded"})
        http.post(receiver.url, json={"type": "processed"})
        receiver.wait_for(2)
        import time

        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [2]
        errors = receiver.handler_errors()
        assert errors["error"].tolist() == ["SystemExit: 3"]


def test_mp_nb_events_escapes_control_characters_and_picks_the_format_by_suffix(tmp_path):
    import httpx

    db = tmp_path / "r.sqlite3"
    with Receiver(db=db) as receiver, httpx.Client(trust_env=False) as http:
        http.post(receiver.url, json={"type": "up\u001b[2Jloaded", "modelId": "\u001b[31mX"})
    table = run_cli("events", "--db", str(db))
    assert table.returncode == 0 and "\x1b" not in table.stdout and "\\x1b[31mX" in table.stdout
    out = tmp_path / "events.parquet"
    assert run_cli("events", "--db", str(db), "-o", str(out)).returncode == 0
    import pandas as pd

    assert pd.read_parquet(out)["model_id"].tolist() == ["\x1b[31mX"]  # the data itself is kept
    mixed = run_cli("events", "--db", str(db), "--rejections", "--type", "uploaded")
    assert mixed.returncode == 1 and "apply to events only" in mixed.stderr
