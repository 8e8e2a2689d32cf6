"""The tutorial notebooks: safe to re-run, offline without an account, never showing a secret.

nbval (``pytest notebooks --nbval``) executes each notebook once and compares every output
with the committed one. This module checks what that cannot:

* every notebook runs top to bottom **twice in the same kernel** without an error, and the
  second pass shows the same results as the first (after the sanitizers nbval uses);
* with no ``MATTERPORT_*`` variables nothing tries to reach a host other than loopback: the
  kernels get proxy variables pointing at a local trap that records any connection;
* no secret the notebook created (receiver credentials, local API token secrets) appears in
  any output;
* notebook 03 analyses a store file it did not generate;
* with the account variables pointing at a local Model API, notebook 04 registers, pings and
  removes a callback end to end, and notebook 02 lists the account's callbacks and changes
  nothing.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from mp_nb import V1_EVENT_TYPES, LocalModelApi, ModelApiClient, Receiver

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SANITIZE = NOTEBOOK_DIR / "nbval_sanitize.cfg"
IGNORE_MARK = "NBVAL_IGNORE_OUTPUT"
TEXT_KEYS = ("text/plain", "text/html", "text/markdown", "application/json")

#: Appended after the doubled notebook: every secret the kernel holds, as one JSON line.
SECRETS_PROBE = """
import json as _json
from mp_nb import LocalModelApi as _LocalModelApi
_found = {v for k, v in globals().items() if k.endswith("secret") and isinstance(v, str)}
_found |= {o.token_secret for o in globals().values() if isinstance(o, _LocalModelApi)}
print(_json.dumps(sorted(_found)))
"""


def sanitizers() -> list[tuple[re.Pattern[str], str]]:
    """The regex/replace pairs of notebooks/nbval_sanitize.cfg, parsed the way nbval does."""
    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(), flags=re.M)
    return [(re.compile(rx), rep) for rx, rep in pairs]


def sanitize(text: str) -> str:
    for rx, rep in sanitizers():
        text = rx.sub(rep, text)
    return text


def cell_text(cell: Any) -> dict[str, str]:
    """A code cell's comparable outputs: streams joined by name, text-like mime data."""
    out: dict[str, str] = {}
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out[o["name"]] = out.get(o["name"], "") + o["text"]
        elif o["output_type"] in ("execute_result", "display_data"):
            for key in TEXT_KEYS:
                if key in o["data"]:
                    value = o["data"][key]
                    value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                    out[key] = out.get(key, "") + value
        elif o["output_type"] == "error":
            out["error"] = f"{o['ename']}: {o['evalue']}"
    return out


class ProxyTrap:
    """A TCP listener posing as the HTTP(S) proxy; records the first line of every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    head = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError:
                    head = "(no request line)"
                self.requests.append(head)
                try:
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.port}"
        names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
        env = {n: url for n in names} | {n.lower(): url for n in names}
        no_proxy = "127.0.0.1,localhost,::1"
        return env | {"NO_PROXY": no_proxy, "no_proxy": no_proxy}

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def proxy_trap() -> Iterator[ProxyTrap]:
    trap = ProxyTrap()
    try:
        yield trap
    finally:
        trap.close()


def offline_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any Matterport account, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATTERPORT_")}
    env.update(extra or {})
    return env


def execute(cells: list[Any], metadata: Any, env: dict[str, str]) -> list[Any]:
    """Run ``cells`` in one fresh kernel (cwd notebooks/); returns them with outputs.

    nbclient raises ``CellExecutionError`` on the first cell that fails.
    """
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(metadata))
    nb.cells = cells
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute(env=env)
    return nb.cells


def code_cells(path: Path) -> tuple[Any, list[Any]]:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in cells:
        cell.outputs = []
        cell.execution_count = None
    return nb.metadata, cells


def test_every_notebook_is_covered() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert names[:1] == ["01-quickstart.ipynb"]
    assert {"02-callback-admin.ipynb", "03-event-history.ipynb", "04-real-account.ipynb"} <= set(names)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        unrun = [c.source[:40] for c in nb.cells if c.cell_type == "code" and c.execution_count is None]
        assert not unrun, f"{path.name} is committed with cells that never ran: {unrun}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runs_twice_in_one_kernel_offline_without_leaking_secrets(path: Path, proxy_trap: ProxyTrap) -> None:
    metadata, cells = code_cells(path)
    doubled = [copy.deepcopy(c) for c in cells] + [copy.deepcopy(c) for c in cells]
    probe = nbformat.v4.new_code_cell(SECRETS_PROBE)
    ran = execute([*doubled, probe], metadata, offline_env(proxy_trap.env()))

    first, second, probe_out = ran[: len(cells)], ran[len(cells): 2 * len(cells)], ran[-1]
    for a, b in zip(first, second, strict=True):
        if IGNORE_MARK in a.source:
            continue
        assert {k: sanitize(v) for k, v in cell_text(b).items()} == \
            {k: sanitize(v) for k, v in cell_text(a).items()}, f"re-run differs:\n{a.source}"

    assert proxy_trap.requests == [], f"{path.name} tried to leave this machine: {proxy_trap.requests}"

    found = json.loads(cell_text(probe_out)["stdout"])
    assert found, f"{path.name} holds no secret to check for"
    shown = "\n".join(v for cell in ran[:-1] for v in cell_text(cell).values())
    for secret in found:
        assert secret not in shown, f"{path.name} shows a secret in its output"


@pytest.mark.slow
def test_real_account_cells_against_a_local_model_api(proxy_trap: ProxyTrap) -> None:
    """Notebook 04 with account variables set, the API being the local one: the whole
    account path (list, reachability probe, register, ping, remove) runs and cleans up."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with LocalModelApi() as api:
        env = offline_env(proxy_trap.env() | {
            "MATTERPORT_TOKEN_ID": api.token_id, "MATTERPORT_TOKEN_SECRET": api.token_secret,
            "MATTERPORT_API_URL": api.url, "MP_NB_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "MP_NB_RECEIVER_PORT": str(port), "MP_NB_REGISTER": "1",
        })
        metadata, cells = code_cells(NOTEBOOK_DIR / "04-real-account.ipynb")
        ran = execute(cells, metadata, env)
        text = "\n".join(cell_text(c).get("stdout", "") for c in ran)
        assert "skipped" not in text
        assert "account credentials: found" in text
        assert "reached this receiver: True" in text
        assert "ping answered 2xx: True" in text
        assert "removed: True" in text
        assert len(api.registry) == 0
        pings = api.attempts().query("outcome == 'delivered'")
        assert len(pings) == 1 and pings["url"].iloc[0].startswith(f"http://127.0.0.1:{port}/")
        assert api.token_secret not in text
    assert proxy_trap.requests == []


@pytest.mark.slow
def test_history_notebook_reads_any_store_file(tmp_path: Path, proxy_trap: ProxyTrap) -> None:
    """Notebook 03 on a store it did not generate (v1 events only, from a receiver):
    generation and ground-truth checks are skipped, every analysis cell still runs."""
    store = tmp_path / "v1-history.sqlite3"
    with LocalModelApi(seed=5) as api, Receiver(db=store) as receiver, \
            ModelApiClient(api.url, api.token_id, api.token_secret) as client:
        client.add_callback(receiver.url, list(V1_EVENT_TYPES))
        api.simulate.history(n_models=30, days=7)
        assert api.drain(60)
        stored = receiver.count()
    metadata, cells = code_cells(NOTEBOOK_DIR / "03-event-history.ipynb")
    ran = execute(cells, metadata, offline_env(proxy_trap.env() | {"MP_NB_STORE": str(store)}))
    text = "\n".join(cell_text(c).get("stdout", "") for c in ran)
    assert f"{stored} events ({stored} unique v1 events) about 30 models" in text
    assert "30 uploads, 30 processed" in text
    assert "OK:" not in text  # the simulator checks only apply to generated history
    assert store.exists()     # a user's store is never deleted
    assert proxy_trap.requests == []


@pytest.mark.slow
def test_admin_widgets_on_an_account_list_it_and_change_nothing(proxy_trap: ProxyTrap) -> None:
    """Notebook 02 with account variables set: the widgets work on the account's callbacks,
    the scripted local demo (register, ping, simulate, remove) is skipped."""
    with LocalModelApi() as api, ModelApiClient(api.url, api.token_id, api.token_secret) as client:
        existing = client.add_callback("http://127.0.0.1:9/hooks/theirs", ["processed"])
        env = offline_env(proxy_trap.env() | {
            "MATTERPORT_TOKEN_ID": api.token_id, "MATTERPORT_TOKEN_SECRET": api.token_secret,
            "MATTERPORT_API_URL": api.url,
        })
        metadata, cells = code_cells(NOTEBOOK_DIR / "02-callback-admin.ipynb")
        ran = execute(cells, metadata, env)
        text = "\n".join(cell_text(c).get("stdout", "") for c in ran)
        assert f"Model API: {api.url}" in text
        assert "1 callback(s) listed" in text
        assert text.count("skipped on a real account") == 5
        assert [cb.id for cb in client.callbacks()] == [existing.id]
        assert len(api.attempts()) == 0  # nothing was pinged or delivered
    assert proxy_trap.requests == []
