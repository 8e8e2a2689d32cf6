"""``mp-nb callbacks …`` and ``mp-nb attempts`` as a user runs them: real subprocesses
against a running local Model API, secrets only from the environment, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mp_nb import LocalModelApi, Receiver

SCRIPT = Path(sys.executable).with_name("mp-nb")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "mp_nb.cli"]
CRED_SECRET = "cli pa:ss ✓"


@pytest.fixture(scope="module")
def api():
    with LocalModelApi() as local:
        yield local


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    with Receiver(cred_type="basic", cred_key="cli", cred_secret=CRED_SECRET,
                  db=tmp_path_factory.mktemp("cli") / "events.sqlite3") as r:
        yield r


@pytest.fixture(scope="module")
def env(api):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MATTERPORT_", "MP_NB_"))}
    return {**clean, "MATTERPORT_API_URL": api.url, "MATTERPORT_TOKEN_ID": api.token_id,
            "MATTERPORT_TOKEN_SECRET": api.token_secret, "MP_NB_CRED_SECRET": CRED_SECRET}


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*COMMAND, *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def mp_nb(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = start(env, *args)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_every_subcommand_round_trip(api, env, receiver):
    added = mp_nb(env, "callbacks", "add", receiver.url + "?src=cli", "-e", "processed",
                  "--cred-type", "basic", "--cred-key", "cli", "--header", "X-Team=blue",
                  "--json")
    assert added.returncode == 0, added.stderr
    (cb,) = json.loads(added.stdout)
    cid = cb["id"]
    assert cb["eventTypes"] == ["processed"] and cb["callback"]["credKey"] == "cli"
    assert CRED_SECRET not in added.stdout

    listed = mp_nb(env, "callbacks", "list")
    header, row = listed.stdout.splitlines()
    assert header.split() == ["id", "version", "event_types", "url", "cred_type", "headers"]
    assert row.split() == [cid, "1", "processed", receiver.url + "?src=cli", "basic", "X-Team"]

    patched = mp_nb(env, "callbacks", "patch", cid, "--version", "2", "-e", "created",
                    "--json")  # --json after the action works too
    assert json.loads(patched.stdout)[0]["version"] == 2

    more = mp_nb(env, "callbacks", "--json", "add-events", cid, "processed", "deleted")
    assert json.loads(more.stdout)[0]["eventTypes"] == ["created", "processed", "deleted"]
    fewer = mp_nb(env, "callbacks", "remove-events", cid, "created")
    assert fewer.returncode == 0 and "processed, deleted" in fewer.stdout

    pinged = mp_nb(env, "callbacks", "ping", cid)
    assert (pinged.returncode, pinged.stdout.strip()) == (0, f"ping {cid}: endpoint answered 2xx")
    ping_row = receiver.events(include_pings=True).iloc[-1]
    assert ping_row["auth"] == "verified" and ping_row["webhook_version"] == 2

    header, *rows = mp_nb(env, "attempts", "--callback", cid).stdout.splitlines()
    assert header.split() == ["delivery_id", "attempt", "at", "callback_id", "event_type",
                              "model_id", "status", "latency_ms", "outcome", "error"]
    (row,) = rows
    assert row.split()[3:7] == [cid, "processed", "PING0000000", "200"]
    assert row.split()[-2:] == ["delivered", "-"]
    as_json = json.loads(mp_nb(env, "attempts", "--callback", cid, "--json").stdout)
    assert as_json[0]["url"].startswith("http://127.0.0.1:") and as_json[0]["ping"] is True

    removed = mp_nb(env, "callbacks", "remove", cid)
    assert (removed.returncode, removed.stdout.strip()) == (0, f"removed {cid}")
    assert cid not in [c.id for c in api.registry.all()]


BAD_INPUT = {
    "unknown event type": (["callbacks", "add", "http://127.0.0.1:9/x", "-e", "teleported"],
                           "event_types: 'teleported' is not a Matterport event type"),
    "bad url": (["callbacks", "add", "ftp://127.0.0.1/x"], "url: scheme must be http or https"),
    "mixed versions": (["callbacks", "add", "http://127.0.0.1:9/x", "-e", "uploaded", "-e",
                        "created"], "cannot mix webhook v1 types (uploaded)"),
    "unknown id on remove": (["callbacks", "remove", "nosuchid"],
                             "Error fetching data (no callback with id 'nosuchid')"),
    "nothing listening": (["callbacks", "--url", "http://127.0.0.1:1/api/models/graph", "list"],
                          "cannot reach http://127.0.0.1:1/api/models/graph"),
    "attempts of a non-local API": (["attempts", "--url", "RECEIVER"],
                                    "only mp_nb's local Model API has one"),
    "no token secret": (["callbacks", "list"], "set MATTERPORT_TOKEN_SECRET"),
    "wrong token secret": (["callbacks", "list"], "Invalid API token"),
    "ping that is not delivered": (["callbacks", "ping", "DEAD"], None),
    "secret on the command line": (["callbacks", "add", "http://127.0.0.1:9/x", "--cred-type",
                                    "basic", "--cred-key", "u", "--cred-secret", "in-ps"], None),
}


@pytest.fixture(scope="module")
def bad_runs(api, env, receiver):
    """Every bad-input case, run at the same time (each is an independent process)."""
    dead = api.registry.add({"eventTypes": ["processed"],
                             "callback": {"scheme": "http", "host": "127.0.0.1", "port": 1}})
    procs = {}
    for name, (args, _) in BAD_INPUT.items():
        case_env = dict(env)
        if name == "no token secret":
            del case_env["MATTERPORT_TOKEN_SECRET"]
        if name == "wrong token secret":
            case_env["MATTERPORT_TOKEN_SECRET"] = "wrong"
        args = [{"RECEIVER": receiver.url, "DEAD": dead.id}.get(a, a) for a in args]
        procs[name] = start(case_env, *args)
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("name", sorted(n for n, (_, m) in BAD_INPUT.items() if m))
def test_bad_input_is_one_clear_line_and_exit_code_1(bad_runs, name):
    code, out, err = bad_runs[name]
    assert code == 1, (out, err)
    (line,) = err.splitlines()
    assert line.startswith("mp-nb: error: ") and BAD_INPUT[name][1] in line
    assert out == ""  # nothing half-printed on stdout


def test_a_ping_that_is_not_delivered_exits_1(bad_runs):
    code, out, err = bad_runs["ping that is not delivered"]
    assert (code, err) == (1, "") and out.strip().endswith(": NOT delivered")


def test_secrets_cannot_be_given_on_the_command_line(bad_runs):
    code, out, err = bad_runs["secret on the command line"]
    assert code == 2 and "--cred-secret: secrets never go on the command line" in err
    assert "MP_NB_CRED_SECRET" in err
    assert "in-ps" not in out


def test_patch_changes_only_the_credentials_given(api, env, receiver):
    """Rotating a secret keeps the header name; a key alone changes the key."""
    cb = api.registry.add({"eventTypes": ["processed"], "callback": {
        "scheme": "http", "host": "127.0.0.1", "credType": "token", "credKey": "X-Api-Key",
        "credSecret": "old-secret"}})
    rotated = mp_nb({**env, "MP_NB_CRED_SECRET": "new-secret"}, "callbacks", "patch", cb.id,
                    "--cred-type", "token")
    assert rotated.returncode == 0, rotated.stderr
    stored = api.registry.get(cb.id)
    assert (stored.cred_key, stored.cred_secret.get_secret_value()) == ("X-Api-Key", "new-secret")
    secret_only = mp_nb({**env, "MP_NB_CRED_SECRET": "newer-secret"}, "callbacks", "patch", cb.id)
    assert secret_only.returncode == 0, secret_only.stderr
    assert api.registry.get(cb.id).cred_secret.get_secret_value() == "newer-secret"
    keyed = mp_nb({k: v for k, v in env.items() if k != "MP_NB_CRED_SECRET"}, "callbacks",
                  "patch", cb.id, "--cred-key", "X-Other-Key")
    assert keyed.returncode == 0, keyed.stderr
    assert api.registry.get(cb.id).cred_key == "X-Other-Key"
    assert "newer-secret" not in rotated.stdout + secret_only.stdout + keyed.stdout
    twice = mp_nb(env, "callbacks", "patch", cb.id, "--header", "X-A=1", "--header", "X-A=2")
    assert twice.returncode == 1 and "'X-A' given twice" in twice.stderr
    api.registry.remove(cb.id)
