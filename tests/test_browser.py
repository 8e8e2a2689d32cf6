"""End to end in a real browser: JupyterLab on 127.0.0.1, headless Debian Chromium, a
generated notebook that starts the local Model API, a receiver and the admin tabs.

A person's path: run all cells, fill the registration form (a wrong URL first), register,
find the callback in the table, ping it, watch events arrive in the feed, remove the
callback after confirming. Screenshots of the form, the table and the feed go to
``test-artifacts/``. Nothing is downloaded and nothing leaves this machine: the browser is
``/usr/bin/chromium`` and JupyterLab's news and update checks are off.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    # belt and braces: no host name resolves, so the page can only reach 127.0.0.1
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
NOTEBOOK = "widgets_e2e.ipynb"
WAIT_MS = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                       "(apt-get install chromium); browsers are never downloaded"),
]

CELLS = [
    # 1: the parts, all on loopback; the receiver's secret comes from the environment
    "import os\n"
    "from mp_nb import LocalModelApi, ModelApiClient, Receiver\n"
    "from mp_nb.widgets import admin\n"
    "api = LocalModelApi(seed=7)\n"
    "client = ModelApiClient(api.url, api.token_id, api.token_secret)\n"
    'receiver = Receiver(cred_type="basic", cred_key="hook",\n'
    '                    cred_secret=os.environ["MP_NB_E2E_SECRET"])',
    # 2: the admin tabs
    "panel = admin(client, receiver, interval=0.2)\npanel",
    # 3: model events for the feed (re-run once a callback is registered); shows the total
    "api.simulate.lifecycle(2)\napi.drain()\nreceiver.count()",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A JupyterLab server on 127.0.0.1 with a fixed token, private dirs and no network."""
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, root / NOTEBOOK)
    token = secrets.token_hex(16)
    secret = "e2e-" + secrets.token_urlsafe(12)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                 "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        path = tmp_path / name.lower()
        path.mkdir()
        env[name] = str(path)
    # no news prompt, no update check: nothing asks to reach the network
    settings = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env.update(MP_NB_E2E_SECRET=secret, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    log = (tmp_path / "jupyterlab.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
         ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(trust_env=False, timeout=5) as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("JupyterLab exited:\n" + _tail(tmp_path / "jupyterlab.log"))
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{base}/api/status", params={"token": token}).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n"
                                       + _tail(tmp_path / "jupyterlab.log"))
                time.sleep(0.2)
        yield {"base": base, "token": token, "secret": secret,
               "log": str(tmp_path / "jupyterlab.log")}
    finally:
        kernels = _children(proc.pid)  # kernels run in sessions of their own
        with contextlib.suppress(httpx.HTTPError), httpx.Client(trust_env=False, timeout=5) as h:
            h.post(f"{base}/api/shutdown", headers={"Authorization": f"token {token}"})
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the server's own process group
        proc.wait(timeout=10)
        for pid in kernels:  # normally already shut down by the server
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:]


def test_admin_tabs_in_jupyterlab(lab: dict[str, str]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    secret = lab["secret"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            _drive(page, lab, secret)
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / "widgets-failure.png"), full_page=True)
            print("JupyterLab log tail:\n" + _tail(Path(lab["log"])))
            raise
        finally:
            browser.close()


def _wait_for_connected_kernel(lab: dict[str, str]) -> None:
    """Until the page's kernel is started, idle and connected (a cell run before is lost)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    with httpx.Client(trust_env=False, timeout=5) as http:
        while time.monotonic() < deadline:
            kernels = http.get(f"{lab['base']}/api/kernels",
                               headers={"Authorization": f"token {lab['token']}"}).json()
            if any(k["execution_state"] == "idle" and k["connections"] >= 1 for k in kernels):
                return
            time.sleep(0.2)
    raise AssertionError("the notebook's kernel never became idle and connected")


def _drive(page: Page, lab: dict[str, str], secret: str) -> None:
    expect.set_options(timeout=WAIT_MS)
    page.goto(f"{lab['base']}/lab/tree/{NOTEBOOK}?token={lab['token']}")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    _wait_for_connected_kernel(lab)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1)

    # Run > Run All Cells, as a person would
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    tabs = page.locator(".widget-tab").first
    tabs.wait_for()
    register = tabs.locator("button", has_text="Register")
    register.wait_for()

    # The form starts on the receiver's URL and user name; the secret is never pre-filled.
    url_input = tabs.locator(".widget-text", has_text="URL").locator("input").first
    receiver_url = url_input.input_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/webhook", receiver_url), receiver_url
    password = tabs.locator("input[type=password]")
    assert password.input_value() == ""

    # A wrong URL is explained next to the field while typing, then fixed.
    url_input.fill("https://someone:pw@example.com/hook")
    expect(tabs).to_contain_text("contains credentials")
    expect(url_input).to_have_value("https://example.com/hook")
    tabs.screenshot(path=str(ARTIFACTS / "widgets-form-error.png"))
    url_input.fill(receiver_url)
    expect(tabs).not_to_contain_text("contains credentials")

    password.fill(secret)
    tabs.locator("button", has_text="add query param").click()
    row = tabs.locator("input[placeholder='key']").last
    row.fill("team")
    tabs.locator("input[placeholder='value']").last.fill("docs")
    register.click()
    status = tabs.locator(".widget-html", has_text="Registered callback")
    status.wait_for()
    callback_id = re.search(r"Registered callback (\w+)", status.inner_text()).group(1)
    assert password.input_value() == ""
    tabs.screenshot(path=str(ARTIFACTS / "widgets-form.png"))

    # The table lists it; Ping delivers to the receiver.
    tabs.locator(".lm-TabBar-tab", has_text="Callbacks").click()
    table_id = tabs.locator("code", has_text=callback_id)
    table_id.wait_for()
    expect(tabs).to_contain_text(receiver_url + "?team=docs")
    tabs.locator("button", has_text="Ping").click()
    expect(tabs).to_contain_text("delivered (2xx)")
    expect(tabs).to_contain_text("the endpoint answered 2xx")
    tabs.screenshot(path=str(ARTIFACTS / "widgets-table.png"))

    # Events: the ping shows at once; re-running the simulator cell delivers a lifecycle.
    tabs.locator(".lm-TabBar-tab", has_text="Events").click()
    summary = tabs.locator(".widget-html", has_text="rejected")
    expect(summary).to_have_text("0 events · 1 ping · 0 rejected")
    simulate = page.locator(".jp-Cell").nth(2)
    simulate.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(simulate.locator(".jp-InputPrompt")).to_have_text("[4]:")
    delivered = int(simulate.locator(".jp-OutputArea-output").inner_text().strip())
    assert delivered > 0
    expect(summary).to_have_text(f"{delivered} events · 1 ping · 0 rejected")
    last_events = tabs.locator(".widget-html", has_text="received (UTC)")
    expect(last_events.locator("tr")).to_have_count(1 + min(20, delivered + 1))
    expect(tabs.locator(".widget-html", has_text="Events per type").locator("..")).to_contain_text(
        "bundle_completed")
    tabs.scroll_into_view_if_needed()
    tabs.screenshot(path=str(ARTIFACTS / "widgets-feed.png"))

    # Remove asks first, then the table is empty.
    tabs.locator(".lm-TabBar-tab", has_text="Callbacks").click()
    tabs.locator("button", has_text="Remove").first.click()
    confirm = tabs.locator(".widget-hbox", has_text="Deliveries to it stop at once").last
    expect(confirm).to_be_visible()
    expect(tabs.locator("code", has_text=callback_id).first).to_be_visible()
    confirm.locator("button", has_text="Remove").click()
    expect(tabs).to_contain_text(f"Removed callback {callback_id}.")
    expect(tabs).to_contain_text("No callbacks registered.")

    # The secret is nowhere in the page.
    assert secret not in page.content()
