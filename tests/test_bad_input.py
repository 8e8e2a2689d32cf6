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
