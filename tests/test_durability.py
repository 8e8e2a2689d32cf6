"""Nothing acknowledged is lost: a receiver process is SIGKILLed at random moments while
events stream in, and every event that got a 200 is in the store afterwards."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from mp_nb import open_store

CHILD = """
import sys, time
from mp_nb import Receiver
r = Receiver(cred_type="basic", cred_key="k", cred_secret="s", db=sys.argv[1],
             synchronous=sys.argv[2])
print(r.port, flush=True)
while True:
    time.sleep(3600)
"""
AUTH = {"Authorization": "Basic " + base64.b64encode(b"k:s").decode()}
SENDERS = 8


def _start(db: str, synchronous: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, db, synchronous], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    line = child.stdout.readline() if child.stdout else ""
    if not line.strip().isdigit():
        child.kill()
        raise AssertionError(f"receiver process did not start: {child.stderr.read() if child.stderr else ''}")
    return child, int(line)


def _stream(port: int, round_no: int, sender: int, acked: list[str], stop: threading.Event) -> None:
    """Post events until the connection dies; remember each one answered 200."""
    url = f"http://127.0.0.1:{port}/webhook"
    with httpx.Client(trust_env=False, timeout=5) as http:
        seq = 0
        while not stop.is_set():
            model = f"R{round_no}S{sender}N{seq}"
            body = {"type": "processed", "modelId": model, "timestamp": 1663595796940 + seq,
                    "data": {"success": "true"}}  # fmt: skip
            try:
                response = http.post(url, content=json.dumps(body), headers=AUTH)
            except httpx.HTTPError:
                return
            if response.status_code == 200:
                acked.append(model)
            seq += 1


@pytest.mark.slow
def test_every_acknowledged_event_survives_sigkill(tmp_path):
    db = str(tmp_path / "killed.sqlite3")
    rng = random.Random(20261203)
    all_acked: list[str] = []
    for round_no in range(6):
        synchronous = "FULL" if round_no % 3 == 2 else "NORMAL"
        child, port = _start(db, synchronous)
        acked: list[str] = []
        stop = threading.Event()
        threads = [threading.Thread(target=_stream, args=(port, round_no, i, acked, stop))
                   for i in range(SENDERS)]  # fmt: skip
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 20
            while len(acked) < 20 and time.monotonic() < deadline:  # streaming for real
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))  # then a random moment
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
            if child.poll() is None:
                child.kill()
            for stream in (child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
        assert child.returncode == -signal.SIGKILL
        assert len(acked) >= 20, f"round {round_no}: only {len(acked)} events acknowledged"
        all_acked += acked
        stored = set(open_store(db).events(types="processed")["model_id"])
        lost = [m for m in acked if m not in stored]
        assert not lost, f"round {round_no} ({synchronous}): {len(lost)} acknowledged events lost"
    final = open_store(db).events()
    assert set(all_acked) <= set(final["model_id"])
    assert final["id"].is_monotonic_increasing and final["id"].is_unique
