"""The main job, exactly as the README runs it: ``mp-nb demo``."""

from __future__ import annotations

import re
import subprocess
import sys

from mp_nb import V1_EVENT_TYPES, open_store


def test_demo_runs_the_whole_lifecycle(tmp_path):
    db = tmp_path / "demo.sqlite3"
    proc = subprocess.run(
        [sys.executable, "-m", "mp_nb", "demo", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert proc.stderr == ""
    assert "ping      endpoint answered 2xx: True" in out
    assert "21 events stored, 21 with verified credentials, 0 rejected" in out
    for etype in V1_EVENT_TYPES:
        assert re.search(rf"^{etype}\s+3\s+3\s+3$", out, re.M), f"no row for {etype}"
    assert "0 callback(s) left" in out
    # the history it points to is really there
    frame = open_store(db).events()
    assert sorted(set(frame["type"].astype(str))) == sorted(V1_EVENT_TYPES)
    assert (frame["auth"] == "verified").all() and len(frame) == 21


def test_demo_rejects_bad_arguments():
    proc = subprocess.run(
        [sys.executable, "-m", "mp_nb", "demo", "--models", "0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "must be at least 1" in proc.stderr
