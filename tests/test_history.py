"""History over real loopback HTTP: duplicates flagged, out-of-order arrivals marked, per-model
state by event time, filters, incremental refresh, export, retention, handlers, readiness,
the ``mp-nb receive`` / ``mp-nb events`` commands, and public-exposure rules."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import httpx
import pandas as pd
import pytest

from mp_nb import ConfigurationError, Receiver, WaitTimeout, open_store

USER, SECRET = "hist", "hist-secret"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()}
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def v1(etype: str, model: str, minutes: float, **extra) -> dict:
    ms = int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)
    return {"type": etype, "modelId": model, "timestamp": ms, **extra}


def v2(etype: str, model: str, minutes: float, body: dict) -> dict:
    at = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return {"modelId": model, "version": 1, "webhookId": "wh1", "timestamp": at,
            "type": etype, "body": body}  # fmt: skip


def state(prev: str, cur: str) -> dict:
    return {"previous": {"state": prev}, "current": {"state": cur}}


@pytest.fixture
def receiver(tmp_path):
    with Receiver(cred_type="basic", cred_key=USER, cred_secret=SECRET,
                  db=tmp_path / "history.sqlite3") as r:  # fmt: skip
        yield r


@pytest.fixture
def post(receiver):
    with httpx.Client(trust_env=False, timeout=10) as http:

        def send(payload: dict | bytes) -> int:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            response = http.post(receiver.url, content=body,
                                 headers={**AUTH, "Content-Type": "application/json"})  # fmt: skip
            assert response.status_code == 200, response.text
            return response.json()["id"]

        yield send


def test_duplicate_deliveries_are_flagged_never_dropped(receiver, post):
    body = json.dumps(v1("processed", "DUP00000001", 1, data={"success": "true"})).encode()
    first = post(body)
    post(v1("uploaded", "DUP00000001", 0))
    second, third = post(body), post(body)
    frame = receiver.events()
    assert len(frame) == 4
    assert frame["duplicate"].tolist() == [False, False, True, True]
    assert frame["duplicate_of"].tolist()[2:] == [first, first]
    assert frame["duplicate_of"].isna().tolist()[:2] == [True, True]
    assert receiver.store.raw_body(second) == receiver.store.raw_body(third) == body
    assert receiver.models().set_index("model_id").loc["DUP00000001", "duplicates"] == 2


def test_duplicates_are_found_across_writers_and_after_retention(receiver, post, tmp_path):
    """The writer finds first copies in memory: rows another writer added and rows retention
    deleted must still give the right answer."""
    body_a = json.dumps(v1("uploaded", "XWRITER0001", 0)).encode()
    body_b = json.dumps(v1("uploaded", "XWRITER0002", 0)).encode()
    first_a = post(body_a)
    other = Receiver(cred_type="basic", cred_key=USER, cred_secret=SECRET, db=receiver.db_path)
    with other, httpx.Client(trust_env=False, timeout=10) as http:
        sent = http.post(other.url, content=body_a, headers=AUTH).json()["id"]
        first_b = http.post(other.url, content=body_b, headers=AUTH).json()["id"]
    assert sent == first_a + 1 and first_b == first_a + 2
    copy_b = post(body_b)  # first written by the other receiver
    frame = receiver.events().set_index("id")
    assert frame.loc[sent, "duplicate_of"] == first_a
    assert frame.loc[copy_b, "duplicate_of"] == first_b
    receiver.store.set_retention(max_rows=2)  # drops both first copies
    post(v1("uploaded", "XWRITER0003", 0))
    _settled(receiver, lambda f: len(f) == 2)
    again_b = post(body_b)
    assert receiver.events().set_index("id").loc[again_b, "duplicate_of"] == copy_b
    receiver.store.set_retention(max_rows=1)
    post(v1("uploaded", "XWRITER0004", 0))
    _settled(receiver, lambda f: len(f) == 1)
    fresh_a = post(body_a)  # every earlier copy is gone: a first copy again
    assert pd.isna(receiver.events().set_index("id").loc[fresh_a, "duplicate_of"])


def test_out_of_order_arrivals_are_marked_per_model(receiver, post):
    post(v1("updated", "ORDER000001", 10))
    late = post(v1("processed", "ORDER000001", 5, data={"success": "true"}))
    post(v1("uploaded", "OTHER000001", 1))  # earlier than model ORDER's, but another model
    post(v1("updated", "ORDER000001", 10))  # equal time: not out of order (also a duplicate)
    post(v1("deleted", "ORDER000001", 20))
    frame = receiver.events()
    assert frame["out_of_order"].tolist() == [False, True, False, False, False]
    line = receiver.timeline("ORDER000001")
    assert line["id"].tolist()[0] == late  # event-time order, not arrival order
    assert line["event_time"].is_monotonic_increasing
    assert (line["lag"] > pd.Timedelta(0)).all()
    assert line["out_of_order"].tolist() == [True, False, False, False]


def test_out_of_order_compares_one_webhook_version_at_a_time(receiver, post):
    """A v1 and a v2 callback deliver through separate queues: a v1 event that arrives after
    a later v2 event of the same model is not late."""
    post(v2("processed", "MIXED000001", 10, {"status": "succeeded", "error": ""}))
    post(v1("inserted", "MIXED000001", 5))
    post(v1("uploaded", "MIXED000001", 4))  # late against the v1 insert before it
    post(v2("created", "MIXED000001", 3, {"type": "processing"}))  # late against v2 processed
    assert receiver.events()["out_of_order"].tolist() == [False, False, True, True]


def test_models_show_latest_state_by_event_time(receiver, post):
    post(v2("created", "READY000001", 0, {"type": "processing"}))
    post(v2("processed", "READY000001", 5, {"status": "succeeded", "error": ""}))
    post(v2("activation_state_changed", "READY000001", 9, state("pending", "active")))
    post(v2("activation_state_changed", "READY000001", 7, state("inactive", "pending")))  # late
    post(v2("visibility_changed", "READY000001", 8, {"previous": {"accessVisibility": "private"},
                                                      "current": {"accessVisibility": "public"}}))
    post(v2("processed", "FAILED00001", 5, {"status": "failed", "error": "alignment"}))
    post(v2("activation_state_changed", "FAILED00001", 6, state("pending", "active")))
    post(v1("processed", "GONE0000001", 1, data={"success": "true"}))
    post(v2("activation_state_changed", "GONE0000001", 2, state("pending", "active")))
    post(v2("deleted", "GONE0000001", 3, {}))
    models = receiver.models().set_index("model_id")
    ready = models.loc["READY000001"]
    assert ready["activation_state"] == "active" and ready["visibility"] == "public"
    assert bool(ready["processed"]) and bool(ready["ready"]) and ready["out_of_order"] == 2
    assert ready["events"] == 5 and ready["last_type"] == "activation_state_changed"
    assert not bool(models.loc["FAILED00001", "ready"])
    assert not bool(models.loc["FAILED00001", "processed"])
    gone = models.loc["GONE0000001"]
    assert bool(gone["deleted"]) and not bool(gone["ready"])
    assert receiver.store.model_state("NEVERSEEN01")["events"] == 0
    states = receiver.timeline("READY000001")["state"].tolist()
    assert states[2:] == ["pending", "public", "active"]


def test_filters_by_type_model_time_and_pings(receiver, post):
    post(v1("uploaded", "FILTER00001", 0))
    post(v1("processed", "FILTER00001", 30, data={"success": "true"}))
    post(v1("uploaded", "FILTER00002", 60))
    post({"type": "processed", "modelId": "PING0000000", "ping": True, "timestamp": 0})
    assert len(receiver.events()) == 3 and len(receiver.events(include_pings=True)) == 4
    assert receiver.events(types="uploaded")["model_id"].tolist() == ["FILTER00001",
                                                                      "FILTER00002"]
    assert len(receiver.events(types=["uploaded", "processed"], model_id="FILTER00001")) == 2
    by_event = receiver.events(since=T0 + timedelta(minutes=15), by="event_time")
    assert by_event["model_id"].tolist() == ["FILTER00001", "FILTER00002"]
    window = receiver.events(since="2026-11-02T09:10:00", until=T0 + timedelta(minutes=45),
                             by="event_time")  # fmt: skip
    assert window["type"].astype(str).tolist() == ["processed"]
    assert len(receiver.events(since=timedelta(minutes=5))) == 3  # received just now
    assert len(receiver.events(until=timedelta(minutes=5))) == 0
    with pytest.raises(ConfigurationError, match="since"):
        receiver.events(since="not a time")
    with pytest.raises(ConfigurationError, match="by"):
        receiver.events(by="remote")


def test_incremental_refresh_keeps_frames_independent(receiver, post):
    post(v1("uploaded", "INCR0000001", 0))
    first = receiver.events()
    first.loc[0, "model_id"] = "CHANGED"  # a user edits their copy
    post(v1("bundle_requested", "INCR0000001", 1, bundleId="bim:cad"))
    second = receiver.events()
    assert len(first) == 1 and len(second) == 2
    assert second["model_id"].tolist() == ["INCR0000001", "INCR0000001"]
    assert "bundle_requested" in second["type"].cat.categories
    assert str(second["received_at"].dtype) == "datetime64[ns, UTC]"
    assert second["id"].tolist() == sorted(second["id"])
    reopened = open_store(receiver.db_path).events()
    pd.testing.assert_frame_equal(reopened, receiver.events())


def test_export_parquet_csv_json(receiver, post, tmp_path):
    for i in range(5):
        post(v1("processed" if i % 2 else "uploaded", f"EXPORT{i:05d}", i))
    parquet = receiver.export(tmp_path / "out" / "events.parquet")
    back = pd.read_parquet(parquet)
    assert back["id"].tolist() == receiver.events()["id"].tolist()
    assert back["type"].astype(str).tolist() == receiver.events()["type"].astype(str).tolist()
    assert back["received_at"].dt.tz is not None
    csv = receiver.store.export(tmp_path / "events.csv", types="processed")
    assert len(pd.read_csv(csv)) == 2
    lines = receiver.export(tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["model_id"] for line in lines] == [f"EXPORT{i:05d}" for i in range(5)]
    with pytest.raises(ConfigurationError, match="format"):
        receiver.export(tmp_path / "events.xlsx")


def _settled(receiver: Receiver, check) -> pd.DataFrame:
    """events() once ``check(frame)`` holds: retention runs on the writer after the ack."""
    deadline = datetime.now() + timedelta(seconds=10)
    while True:
        generation = receiver.store.generation
        frame = receiver.events()
        if check(frame) or datetime.now() > deadline:
            return frame
        receiver.store.wait_for_commit(generation, 0.5)


def test_retention_keeps_newest_rows(receiver, post):
    for i in range(12):
        post(v1("uploaded", f"KEEP{i:07d}", i))
    before = receiver.events()  # cached; retention must show through the cache
    assert len(before) == 12
    receiver.store.set_retention(max_rows=5)  # applies from the writer's next batch
    post(v1("uploaded", "KEEP0000012", 12))
    kept = _settled(receiver, lambda f: len(f) == 5)
    assert kept["model_id"].tolist() == [f"KEEP{i:07d}" for i in range(8, 13)]
    receiver.store.set_retention(max_age=timedelta(milliseconds=1))
    post(v1("uploaded", "KEEP0000013", 13))
    newest = _settled(receiver, lambda f: len(f) == 1)
    assert newest["model_id"].tolist() == ["KEEP0000013"]  # never the newest
    post(v1("uploaded", "KEEP0000014", 14))
    assert receiver.events()["id"].iloc[-1] > kept["id"].iloc[-1]  # ids are never reused
    with pytest.raises(ConfigurationError, match="max_rows"):
        receiver.store.set_retention(max_rows=0)


def test_retention_catches_up_when_deliveries_stop(tmp_path):
    """A burst faster than the once-a-second retention pass still ends at max_rows, with no
    later delivery to trigger it."""
    with Receiver(cred_type="basic", cred_key=USER, cred_secret=SECRET, db=tmp_path / "r.sqlite3",
                  max_rows=3) as r, httpx.Client(trust_env=False, timeout=10) as http:  # fmt: skip
        for i in range(12):
            assert http.post(r.url, json=v1("uploaded", f"BURST{i:06d}", i), headers=AUTH).status_code == 200
        kept = _settled(r, lambda f: len(f) == 3)
        assert kept["model_id"].tolist() == [f"BURST{i:06d}" for i in (9, 10, 11)]


def test_handlers_run_after_commit_without_delaying_acks(receiver, post):
    release = threading.Event()
    seen: list[tuple[str, int, str]] = []
    done = threading.Event()

    def slow(event):
        release.wait(10)
        seen.append(("slow", event.id, event.type))

    def typed(event):
        seen.append(("typed", event.id, type(event.event).__name__))
        if event.model_id == "HANDLER0003":
            done.set()

    def broken(event):
        raise ValueError(f"cannot handle {event.model_id}")

    receiver.on("processed", slow)
    receiver.on("*", broken)
    receiver.on("processed", typed)
    body = json.dumps(v1("processed", "HANDLER0001", 1, data={"success": "true"})).encode()
    first = post(body)  # answered while `slow` is still blocked on its first event
    assert receiver.events()["id"].tolist() == [first]
    post(body)  # a duplicate: handlers skip it by default
    post(v1("uploaded", "HANDLER0002", 2))
    post(v1("processed", "HANDLER0003", 3, data={"success": "true"}))
    assert seen == []
    release.set()
    assert done.wait(10)
    assert [s[:2] for s in seen] == [("slow", 1), ("typed", 1), ("slow", 4), ("typed", 4)]
    assert seen[1][2] == "Processed"
    errors = receiver.handler_errors()
    assert errors["event_id"].tolist() == [1, 3, 4]
    assert errors["handler"].str.endswith("broken").all()
    assert errors["error"].iloc[0] == "ValueError: cannot handle HANDLER0001"
    post(v1("updated", "HANDLER0004", 4))
    assert receiver.count() == 5


def test_when_ready_and_wait_until_ready(receiver, mp_local_api, mp_client):
    mp_client.add_callback(receiver.url, ["processed", "activation_state_changed"], version=2,
                           cred_type="basic", cred_key=USER, cred_secret=SECRET)  # fmt: skip
    ready: list[str] = []
    called = threading.Event()

    def on_ready(model_id: str) -> None:
        ready.append(model_id)
        called.set()

    receiver.when_ready(on_ready)
    sim = mp_local_api.simulate
    good = sim.upload()
    sim.process(good)
    state = receiver.wait_until_ready(good, timeout=20)
    assert state["processed"] is True and state["activation_state"] == "active"
    assert called.wait(10) and ready == [good]
    bad = sim.upload()
    sim.process(bad, success=False)
    mp_local_api.drain(10)
    with pytest.raises(WaitTimeout, match=rf"model {bad} not ready .*processed=False"):
        receiver.wait_until_ready(bad, timeout=0.3)
    sim.process(good)  # processed again: already fired, not called twice
    mp_local_api.drain(10)
    receiver.wait_for(5, timeout=10)
    assert ready == [good]
    assert receiver.handler_errors().empty


def test_mp_nb_receive_prints_one_line_per_event(tmp_path):
    db = tmp_path / "cli.sqlite3"
    env = {**os.environ, "MP_NB_CRED_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mp_nb.cli", "receive", "--port", "0", "--db", str(db),
           "--cred-type", "basic", "--cred-key", USER, "--count", "3"]  # fmt: skip
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, stdin=subprocess.DEVNULL) as proc:  # fmt: skip
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("receiving on http://127.0.0.1:"), banner
        url = banner.split()[2]
        assert SECRET not in banner
        with httpx.Client(trust_env=False, timeout=10) as http:
            for payload in (v1("uploaded", "CLI00000001", 0), v1("uploaded", "CLI00000001", 0),
                            v1("processed", "CLI00000001", 1, data={"success": "true"})):
                assert http.post(url, json=payload, headers=AUTH).status_code == 200
            assert http.post(url, json=payload).status_code == 401
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [line for line in out.strip().splitlines() if " refused " not in line]
    assert len(lines) == 3
    assert "uploaded" in lines[0] and "duplicate-of=1" in lines[1]
    assert "processed" in lines[2] and "success=True" in lines[2]
    assert SECRET not in out + err
    for fmt, check in (("csv", lambda text: len(pd.read_csv(__import__("io").StringIO(text)))),
                       ("json", lambda text: len(text.strip().splitlines()))):
        done = subprocess.run([sys.executable, "-m", "mp_nb.cli", "events", "--db", str(db),
                               "--format", fmt], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert check(done.stdout) == 3


def test_public_binding_needs_credentials(tmp_path):
    with pytest.raises(ConfigurationError, match="host"):
        Receiver(host="0.0.0.0", db=tmp_path / "open.sqlite3", start=False)
    with Receiver(host="0.0.0.0", cred_type="token", cred_secret="pub-token",
                  db=tmp_path / "public.sqlite3") as r:  # fmt: skip
        local = f"http://127.0.0.1:{r.port}/webhook"
        with httpx.Client(trust_env=False, timeout=5) as http:
            assert http.post(local, json={"type": "x"}).status_code == 401
            ok = http.post(local, json={"type": "x"},
                           headers={"Authorization": "Bearer pub-token"})  # fmt: skip
            assert ok.status_code == 200


def test_rerun_on_same_port_replaces_and_threads_never_print(tmp_path, capfd):
    first = Receiver(db=tmp_path / "a.sqlite3")
    first.on("*", lambda event: 1 / 0)
    second = None
    try:
        with httpx.Client(trust_env=False, timeout=5) as http:
            assert http.post(first.url, json={"type": "uploaded"}).status_code == 200
            assert http.post(first.url, content=b"{bad").status_code == 400
            second = Receiver(db=tmp_path / "b.sqlite3", port=first.port)
            assert not first.running and second.url == first.url
            assert http.post(second.url, json={"type": "processed"}).status_code == 200
        assert open_store(first.db_path).events()["type"].astype(str).tolist() == ["uploaded"]
        assert second.events()["type"].astype(str).tolist() == ["processed"]
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert len(first.handler_errors()) == 1
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_stop_then_start_keeps_the_url_registered_callbacks_use(tmp_path, caplog):
    receiver = Receiver(db=tmp_path / "r.sqlite3")
    url = receiver.url
    try:
        receiver.stop()
        receiver.start()
        assert receiver.url == url
        with httpx.Client(trust_env=False, timeout=5) as http:
            assert http.post(url, json={"type": "uploaded"}).status_code == 200
        receiver.stop()
        squatter = Receiver(db=tmp_path / "s.sqlite3", port=receiver.port)  # takes the port
        try:
            with caplog.at_level("WARNING", logger="mp_nb"):
                receiver.start()
            assert receiver.url != url and "was taken meanwhile" in caplog.text
        finally:
            squatter.stop()
    finally:
        receiver.stop()


def test_tunnel_refuses_before_any_network(tmp_path, monkeypatch):
    from mp_nb.tunnel import open_tunnel

    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    with Receiver(db=tmp_path / "open.sqlite3") as open_receiver, pytest.raises(
        ConfigurationError, match="needs credentials"
    ):
        open_tunnel(open_receiver)
    with Receiver(cred_type="token", cred_secret="t", db=tmp_path / "t.sqlite3") as guarded, \
            pytest.raises(ConfigurationError, match=r"mp_nb\[tunnel\]|authtoken"):
        open_tunnel(guarded)


def test_frame_files_reopen_fast_and_never_disagree_with_the_store(tmp_path, monkeypatch):
    """The Arrow files beside a store give the same frame as SQLite, and are dropped when
    the store changed behind their back (rows deleted by hand, a new file at the same path)."""
    import sqlite3

    from mp_nb import store as store_module
    from mp_nb.store import Delivery, EventStore

    monkeypatch.setattr(store_module, "FRAME_FILE_ROWS", 8)
    db = tmp_path / "framed.sqlite3"
    writer = EventStore(db)
    for i in range(30):
        payload = v1("processed" if i % 3 else "uploaded", f"FRAME{i % 4:06d}", i,
                     data={"success": "true"})  # fmt: skip
        writer.add_event(Delivery(body=json.dumps(payload).encode(), headers={},
                                  payload=payload))  # fmt: skip
    first = writer.events()
    files = {f.name for f in (tmp_path / "framed.sqlite3.frames").glob("rows-*.arrow")}
    assert files == {"rows-1-8.arrow", "rows-9-16.arrow", "rows-17-24.arrow"}

    def fresh() -> pd.DataFrame:
        return EventStore(db).events()

    def truth() -> pd.DataFrame:
        return EventStore(db, frame_files=False).events()

    pd.testing.assert_frame_equal(fresh(), first)
    pd.testing.assert_frame_equal(fresh(), truth())
    with sqlite3.connect(db) as conn:  # someone deletes rows by hand
        conn.execute("DELETE FROM events WHERE id IN (3, 12)")
    reopened = fresh()
    assert 3 not in set(reopened["id"]) and len(reopened) == 28
    pd.testing.assert_frame_equal(reopened, truth())
    writer.set_retention(max_rows=10)  # the oldest rows go: the files below them too
    writer.add_event(Delivery(body=b'{"type": "uploaded"}', headers={},
                              payload={"type": "uploaded"}))  # fmt: skip
    deadline = datetime.now() + timedelta(seconds=10)
    while len(truth()) != 10 and datetime.now() < deadline:
        writer.wait_for_commit(writer.generation, 0.5)
    pd.testing.assert_frame_equal(fresh(), truth())
    writer.close()
    db.unlink()  # a new store at the same path
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"framed.sqlite3{suffix}").unlink(missing_ok=True)
    other = EventStore(db)
    for i in range(20):
        other.add_event(Delivery(body=b'{"type": "deleted", "n": %d}' % i, headers={},
                                 payload={"type": "deleted", "n": i}))  # fmt: skip
    assert fresh()["type"].astype(str).tolist() == ["deleted"] * 20


KERNEL_CELLS = [
    # a start cell, run twice on the same port (a re-run notebook cell)
    "from mp_nb import Receiver\nimport httpx, threading, time\n"
    "r = Receiver(port=PORT)\nr = Receiver(port=PORT)\nprint('serving', r.running)",
    # deliveries arrive while wait_for blocks: it shows progress, the threads print nothing
    "def later():\n    time.sleep(0.3)\n    for i in range(3):\n"
    "        httpx.post(r.url, json={'type': 'uploaded', 'n': i}, trust_env=False)\n"
    "    httpx.post(r.url, content=b'{bad', trust_env=False)\n"
    "threading.Thread(target=later).start()\n"
    "r.wait_for(3, timeout=30)",
    "r.wait_for(10, types='processed', timeout=0.5)",
    "r.stop()",
]


@pytest.mark.slow
def test_in_a_kernel_progress_timeout_rerun_and_silence():
    import socket

    from jupyter_client.manager import start_new_kernel

    with socket.socket() as s:  # a free port for the start cell
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        outputs = []
        for cell in KERNEL_CELLS:
            msgs: list[dict] = []
            kc.execute_interactive(cell.replace("PORT", str(port)), timeout=60,
                                   output_hook=msgs.append)  # fmt: skip
            outputs.append(msgs)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    def texts(msgs: list[dict], kind: str) -> list[str]:
        out = []
        for m in msgs:
            if m["msg_type"] == kind:
                content = m["content"]
                out.append(content.get("text") or content.get("data", {}).get("text/plain", ""))
        return out

    assert texts(outputs[0], "stream") == ["serving True\n"]
    shown = texts(outputs[1], "display_data") + texts(outputs[1], "update_display_data")
    assert shown[0] == "'received 0/3 events'" and shown[-1] == "'received 3/3 events'"
    assert texts(outputs[1], "stream") == []  # nothing printed from the server threads
    errors = [m["content"] for m in outputs[2] if m["msg_type"] == "error"]
    assert errors and errors[0]["ename"] == "WaitTimeout"
    assert "got 0; stored so far: uploaded=3; rejected requests: 1" in errors[0]["evalue"]
    assert all(m["msg_type"] != "stream" for m in outputs[2] + outputs[3])
