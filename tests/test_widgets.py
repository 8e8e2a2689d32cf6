"""The widgets, driven as a person would but without a browser: values are set, buttons are
clicked with ``.click()``, and every call goes to the real local Model API; deliveries land
in a real receiver over loopback HTTP."""

from __future__ import annotations

import base64
import html
import json
import secrets
import threading
import time
from typing import Any

import httpx
import ipywidgets as w
import pytest
from ipywidgets.widgets.widget import _instances

from mp_nb import V1_EVENT_TYPES, V2_EVENT_TYPES, ModelApiClient, Receiver
from mp_nb.widgets import CallbackForm, CallbackManager, EventFeed, admin
from mp_nb.widgets._common import iter_widgets

# ---------------------------------------------------------------------- helpers


def live_state_text() -> str:
    """The synced state of every open widget in the process, as one JSON string."""
    states = []
    for widget in list(_instances.values()):
        try:
            states.append(widget.get_state())
        except Exception:  # a widget closed while we walked
            continue
    return json.dumps(states, default=str)


def visible_text(root: w.Widget) -> str:
    """Every value, description, placeholder, tooltip and title below ``root``."""
    parts = []
    for widget in iter_widgets(root):
        for name in ("value", "description", "placeholder", "tooltip", "titles", "options",
                     "_options_labels"):
            if widget.has_trait(name):
                parts.append(str(getattr(widget, name)))
    return "\n".join(parts)


def text(widget: w.HTML) -> str:
    """What an HTML widget reads as (entities decoded)."""
    return html.unescape(widget.value)


def err(form: CallbackForm, field: str) -> str:
    return text(form.error_lines[field])


def shown_errors(form: CallbackForm) -> dict[str, str]:
    return {name: text(line) for name, line in form.error_lines.items() if line.value}


def basic_header(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def make_client(mp_local_api):
    """Clients for the local API with other settings; closed after the test."""
    made: list[ModelApiClient] = []

    def make(secret: str | None = None, **kwargs: Any) -> ModelApiClient:
        client = ModelApiClient(mp_local_api.url, mp_local_api.token_id,
                                secret or mp_local_api.token_secret, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def form(mp_client: ModelApiClient) -> CallbackForm:
    f = CallbackForm(mp_client)
    yield f
    f.close()


def fill_basic(form: CallbackForm, receiver: Receiver, secret: str | None = None) -> None:
    creds = receiver.credentials
    form.url.value = receiver.url
    form.cred_type.value = "basic"
    form.cred_key.value = creds["cred_key"]
    form.cred_secret.value = secret if secret is not None else creds["cred_secret"]


# ---------------------------------------------------------------------- validation


def test_a_fresh_form_shows_no_errors_until_touched_or_submitted(form, mp_local_api):
    assert shown_errors(form) == {}
    assert form.submit() is None
    assert "url: empty" in err(form, "url")
    assert "Nothing sent" in text(form.status)
    assert len(mp_local_api.registry) == 0


@pytest.mark.parametrize(("url", "expected"), [
    ("", "url: empty"),
    ("ftp://example.com/hook", "scheme must be http or https"),
    ("https:///hook", "url: no host"),
    ("https://example.com:70000/hook", "port out of range 1-65535"),
    ("https://example.com/hook#frag", "fragments"),
])
def test_url_problems_show_next_to_the_url_while_typing(form, mp_local_api, url, expected):
    form.url.value = "https://example.com/ok"  # touch the field first
    form.url.value = url
    assert expected in err(form, "url")
    assert set(shown_errors(form)) == {"url"}
    assert form.submit() is None
    assert len(mp_local_api.registry) == 0


def test_a_url_with_credentials_is_refused_and_its_password_leaves_the_field(form):
    form.url.value = "https://hook-user:Pa55word-9@example.com/hook"
    assert "contains credentials" in err(form, "url")
    assert "Pa55word-9" not in form.url.value
    assert form.url.value == "https://example.com/hook"
    assert "Pa55word-9" not in visible_text(form.widget)


def test_parts_mode_checks_host_and_port(form, mp_local_api):
    form.mode.value = "parts"
    form.host.value = "x"
    form.host.value = ""
    assert "host is empty" in err(form, "host")
    form.host.value = "example.com"
    assert err(form, "host") == ""
    for port, expected in (("70000", "less than or equal to 65535"),
                           ("0", "greater than or equal to 1"),
                           ("http", "not a number")):
        form.port.value = port
        assert expected in err(form, "port"), port
        assert form.submit() is None
    form.host.value = "bad host"
    assert "bare host name" in err(form, "host")
    assert len(mp_local_api.registry) == 0


def test_switching_between_url_and_parts_carries_the_location(form):
    form.url.value = "http://example.com:8080/hooks/mp"
    form.mode.value = "parts"
    assert (form.scheme.value, form.host.value, form.port.value, form.path.value) == (
        "http", "example.com", "8080", "hooks/mp")
    form.path.value = "other"
    form.mode.value = "url"
    assert form.url.value == "http://example.com:8080/other"


def test_no_event_types(form):
    form.url.value = "https://example.com/hook"
    form.no_types.click()
    assert form.selected_types == []
    assert "tick at least one" in err(form, "event_types")
    form.all_types.click()
    assert form.selected_types == list(V1_EVENT_TYPES)
    assert err(form, "event_types") == ""


def test_version_switch_shows_the_matching_types_and_keeps_headers(form):
    assert list(form.type_boxes) == list(V1_EVENT_TYPES)
    form.headers.add("X-Team", "a")
    form.type_boxes["uploaded"].value = False  # not everything ticked: keep the overlap only
    form.version.value = 2
    assert list(form.type_boxes) == list(V2_EVENT_TYPES)
    assert form.selected_types == ["processed", "deleted"]
    form.version.value = 1
    assert form.selected_types == ["processed", "deleted"]
    assert form._headers_row.layout.display in (None, "")  # shown: delivered for v1 as well
    assert form.headers.read() == ([("X-Team", "a")], None)


def test_editing_a_v1_callback_keeps_its_headers(form, mp_client, mp_receiver):
    cb = mp_client.add_callback(mp_receiver.url, ["processed"], additional_headers={"X-Team": "a"})
    form.edit(cb.id)
    assert form.submit() is not None
    stored = mp_client.get_callback(cb.id).callback.additional_headers
    assert [(kv.key, kv.value) for kv in stored] == [("X-Team", "a")]


def test_a_refused_submit_keeps_pointing_at_the_real_mistake(form, mp_local_api):
    form.url.value = "http://127.0.0.1:9/h"
    form.cred_type.value = "basic"
    form.cred_key.value = "a:b"
    form.cred_secret.value = "s3cret-typed"
    assert form.submit() is None
    assert "may not contain ':'" in err(form, "credentials")
    assert "needs a non-empty" not in form.last_error
    assert form.cred_secret.value == "" and "type it again" in text(form.status)
    assert len(mp_local_api.registry) == 0


@pytest.mark.parametrize(("kind", "key", "secret", "expected"), [
    ("basic", "", "s", "needs cred_key (the user name)"),
    ("basic", "user", "", "needs a non-empty cred_secret"),
    ("token", "", "", "needs a non-empty cred_secret"),
    ("basic", "us:er", "s", "may not contain ':'"),
])
def test_credential_problems(form, kind, key, secret, expected):
    form.url.value = "https://example.com/hook"
    form.cred_type.value = kind
    form.cred_key.value = key + "x"
    form.cred_key.value = key
    form.cred_secret.value = secret
    assert expected in err(form, "credentials")


def test_rows_with_a_value_but_no_key(form):
    form.url.value = "https://example.com/hook"
    form.query_params.add("", "orphan")
    assert "query params: row 1 has a value but no key" in err(form, "query_params")
    form.version.value = 2
    form.headers.add("X-Ok", "1")
    form.headers.add("", "v")
    assert "additional headers: row 2" in err(form, "additional_headers")
    form.headers.remove(form.headers.rows[1])
    form.query_params.rows[0][0].value = "k"
    assert shown_errors(form) == {}


# ---------------------------------------------------------------------- submitting


def test_register_sends_everything_and_clears_the_secret(form, mp_local_api, mp_receiver):
    fill_basic(form, mp_receiver)
    form.url.value = mp_receiver.url + "?team=a"
    form.query_params.add("env", "test")
    form.version.value = 2
    form.headers.add("X-Team", "blue")
    form.no_types.click()
    form.type_boxes["processed"].value = True
    disabled_while_sending: list[bool] = []
    form.submit_button.observe(lambda c: disabled_while_sending.append(c["new"]), "disabled")

    cb = form.submit()

    assert cb is not None and cb.id in text(form.status) and "Registered" in text(form.status)
    assert disabled_while_sending == [True, False]
    stored = mp_local_api.registry.get(cb.id)
    assert stored.version == 2 and stored.event_types == ["processed"]
    assert stored.query_params == [("team", "a"), ("env", "test")]
    assert stored.additional_headers == [("X-Team", "blue")]
    assert stored.cred_secret.get_secret_value() == mp_receiver.credentials["cred_secret"]
    assert form.cred_secret.value == ""
    assert mp_local_api.simulate and form.client.ping_callback(cb.id) is True


def test_an_api_error_is_shown_with_its_message_and_code(mp_local_api, make_client):
    form = CallbackForm(make_client("not-the-secret"))
    form.url.value = "http://127.0.0.1:9/hook"
    form.cred_type.value = "token"
    form.cred_secret.value = "tok-" + secrets.token_hex(8)
    assert form.submit() is None
    status = text(form.status)
    assert "The Model API refused: Invalid API token" in status
    assert "request.unauthenticated" in status and "HTTP 401" in status
    assert form.last_error is not None and "Invalid API token" in form.last_error
    assert form.cred_secret.value == ""
    assert not form.submit_button.disabled
    assert len(mp_local_api.registry) == 0
    form.close()


def test_a_bad_header_name_is_shown_next_to_the_headers(form, mp_local_api):
    form.url.value = "http://127.0.0.1:9/hook"
    form.version.value = 2
    form.headers.add("bad header", "x")
    assert form.submit() is None
    assert "not a valid header name" in err(form, "additional_headers")
    assert len(mp_local_api.registry) == 0


def test_edit_patches_and_a_blank_secret_keeps_the_stored_one(form, mp_client, mp_local_api,
                                                               mp_receiver):
    cb = mp_client.add_callback(mp_receiver.url, ["uploaded"], query_params={"a": "1"},
                                **mp_receiver.credentials)
    form.edit(cb)
    assert form.editing is not None and form.editing.id == cb.id
    assert form.url.value == mp_receiver.url
    assert [(k.value, v.value) for k, v, _x in form.query_params.rows] == [("a", "1")]
    assert (form.cred_type.value, form.cred_key.value, form.cred_secret.value) == (
        "basic", "mp-nb-test", "")
    assert "keep the stored secret" in form.cred_secret.placeholder
    assert form.submit_button.description == "Save changes"
    form.type_boxes["processed"].value = True

    saved = form.submit()

    assert saved is not None and saved.id == cb.id and "Saved" in text(form.status)
    assert mp_local_api.registry.get(cb.id).event_types == ["uploaded", "processed"]
    assert mp_client.ping_callback(cb.id) is True  # the receiver still accepts: secret kept
    form.cred_secret.value = "a-new-wrong-secret"
    assert form.submit() is not None
    assert mp_client.ping_callback(cb.id) is False  # the typed secret did replace it
    assert form.cred_secret.value == ""


def test_editing_a_callback_removed_meanwhile_shows_the_api_error(form, mp_client, mp_local_api):
    cb = mp_client.add_callback("http://127.0.0.1:9/hook", ["uploaded"])
    form.edit(cb)
    mp_client.remove_callback(cb.id)
    assert form.submit() is None
    assert "Error fetching data" in text(form.status) and "not.found" in text(form.status)
    form.new_button.click()
    assert form.editing is None and form.submit_button.description == "Register"


def test_a_secret_never_shows_in_any_widget_after_submit(mp_client, mp_local_api, mp_receiver):
    panel = admin(mp_client, mp_receiver)
    try:
        secret = mp_receiver.credentials["cred_secret"]
        form = panel.form
        assert form.url.value == mp_receiver.url and form.cred_key.value == "mp-nb-test"
        assert secret not in live_state_text()  # the receiver's secret is not pre-filled
        form.cred_secret.value = secret
        cb = form.submit()
        assert cb is not None
        panel.manager.row_for(cb.id).ping_button.click()
        panel.manager.row_for(cb.id).edit_button.click()
        form.cred_secret.value = secret
        form.headers.add("", "")  # v1: hidden rows are ignored
        assert form.submit() is not None
        # an API error path too
        form.version.value = 2
        form.headers.add("bad header", "x")
        form.cred_secret.value = secret
        assert form.submit() is None
        panel.feed.refresh()
        assert secret not in visible_text(panel.widget)
        assert secret not in live_state_text()
        assert secret not in form.client.last_graphql
    finally:
        panel.close()


# ---------------------------------------------------------------------- manager


def test_manager_lists_every_page_with_progress(make_client):
    client = make_client(page_size=5)
    ids = [client.add_callback(f"http://127.0.0.1:9/h{i}", ["uploaded"]).id for i in range(23)]
    manager = CallbackManager(client, load=False, rows_per_page=10)
    seen: list[str] = []
    manager.status.observe(lambda c: seen.append(c["new"]), "value")
    manager.refresh_button.click()
    assert manager.ids == ids
    assert any("so far" in s for s in seen)
    assert "23 callbacks" in text(manager.status)
    assert manager.pages == 3 and len(manager.rows) == 10
    row = manager.row_for(ids[-1])
    assert manager.page == 2 and row.callback.url == "http://127.0.0.1:9/h22"
    manager.prev_button.click()
    assert manager.page == 1
    manager.close()


def test_manager_ping_edit_and_remove_with_confirmation(mp_client, mp_local_api, mp_receiver):
    good = mp_client.add_callback(mp_receiver.url, ["uploaded"], **mp_receiver.credentials)
    dead = mp_client.add_callback("http://127.0.0.1:9/nobody", ["uploaded"])
    manager = CallbackManager(mp_client)
    assert set(manager.ids) == {good.id, dead.id}

    manager.row_for(good.id).ping_button.click()
    assert manager.last_ping == (good.id, True)
    assert "delivered" in manager.row_for(good.id).result.value
    mp_receiver.wait_for(1, include_pings=True)
    manager.row_for(dead.id).ping_button.click()
    assert manager.last_ping == (dead.id, False) and "did not answer 2xx" in text(manager.message)

    manager.row_for(good.id).edit_button.click()
    assert manager.form.editing.id == good.id and manager.edit_area.layout.display == ""
    assert manager.form.url.value == mp_receiver.url

    manager.row_for(dead.id).remove_button.click()
    assert manager.pending_removal.id == dead.id and manager.confirm_bar.layout.display == ""
    manager.cancel_button.click()
    assert dead.id in [cb.id for cb in mp_client.callbacks()]
    manager.row_for(dead.id).remove_button.click()
    manager.confirm_button.click()
    assert [cb.id for cb in mp_client.callbacks()] == [good.id]
    assert manager.ids == [good.id] and "Removed" in text(manager.message)
    assert manager.confirm_bar.layout.display == "none"

    mp_client.remove_callback(good.id)  # gone behind the table's back
    manager.row_for(good.id).remove_button.click()
    manager.confirm_button.click()
    assert "Error fetching data" in text(manager.message)
    assert "Error fetching data" in manager.last_error  # kept through the refresh after it
    assert manager.ids == []
    manager.close()


def test_saving_the_form_refreshes_the_manager(mp_client):
    manager = CallbackManager(mp_client)
    assert manager.ids == []
    manager.form.url.value = "http://127.0.0.1:9/new"
    cb = manager.form.submit()
    assert manager.ids == [cb.id]
    manager.close()


def test_manager_shows_a_listing_error(make_client):
    manager = CallbackManager(make_client("wrong-secret", retries=0))
    assert "Could not list callbacks" in text(manager.status)
    assert "Invalid API token" in text(manager.status)
    assert not manager.refresh_button.disabled
    manager.close()


# ---------------------------------------------------------------------- feed


def post_events(url: str, headers: dict[str, str], n: int, errors: list[BaseException]) -> None:
    """POST ``n`` v1 events, cycling through the v1 types (run on a thread)."""
    try:
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            for i in range(n):
                payload = {"type": V1_EVENT_TYPES[i % len(V1_EVENT_TYPES)],
                           "modelId": f"model{i:05d}", "timestamp": 1663595798725 + i}
                response = http.post(url, json=payload, headers=headers)
                response.raise_for_status()
    except BaseException as exc:
        errors.append(exc)


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_feed_follows_1000_events_from_a_thread_without_printing(mp_receiver, capfd):
    creds = mp_receiver.credentials
    feed = EventFeed(mp_receiver, last=20, interval=0.2)
    thread_errors: list[BaseException] = []
    hook_errors: list[Any] = []
    old_hook = threading.excepthook
    threading.excepthook = hook_errors.append
    try:
        started = time.monotonic()
        sender = threading.Thread(target=post_events, args=(
            mp_receiver.url, basic_header(creds["cred_key"], creds["cred_secret"]), 1000,
            thread_errors))
        sender.start()
        sender.join(120)
        mp_receiver.wait_for(1000)
        wait_until(lambda: feed.total == 1000)
    finally:
        threading.excepthook = old_hook
        feed.close()
    elapsed = time.monotonic() - started  # no redraw can happen after close()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert thread_errors == [] and hook_errors == [] and feed.error is None
    expected = {t: len(range(i, 1000, len(V1_EVENT_TYPES))) for i, t in enumerate(V1_EVENT_TYPES)}
    assert feed.counts == expected
    assert "<b>1,000</b> events" in feed.summary.value
    assert [r["model_id"] for r in feed.recent] == [f"model{i:05d}" for i in range(999, 979, -1)]
    assert "model00999" in feed.events_html.value
    # throttled: at most one redraw per interval, plus the first draw and the final one
    assert 2 <= feed.renders <= elapsed / feed.interval + 2
    assert not feed.running


def test_feed_shows_rejections_status_and_history(mp_receiver, http):
    creds = mp_receiver.credentials
    good = basic_header(creds["cred_key"], creds["cred_secret"])
    http.post(mp_receiver.url, json={"type": "uploaded", "modelId": "before"}, headers=good)
    feed = EventFeed(mp_receiver, last=3, interval=0.05)
    try:
        assert feed.total == 1 and feed.recent[0]["model_id"] == "before"
        assert "listening" in feed.header.value and mp_receiver.url in feed.header.value
        http.post(mp_receiver.url, json={"type": "uploaded"}, headers=basic_header("x", "y"))
        wait_until(lambda: feed.rejected == 1)
        assert feed.last_rejection.startswith("HTTP 401")
        assert "1</b> rejected" in feed.summary.value and "HTTP 401" in feed.summary.value
        for i in range(4):
            http.post(mp_receiver.url, json={"type": "processed", "modelId": f"m{i}"},
                      headers=good)
        wait_until(lambda: feed.total == 5)
        assert [r["model_id"] for r in feed.recent] == ["m3", "m2", "m1"]
        mp_receiver.stop()
        wait_until(lambda: "stopped" in feed.header.value)
    finally:
        feed.close()
    assert not feed.running


def test_feed_rejects_bad_arguments(mp_receiver):
    from mp_nb.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="last"):
        EventFeed(mp_receiver, last=0)
    with pytest.raises(ConfigurationError, match="interval"):
        EventFeed(mp_receiver, interval=0)


# ---------------------------------------------------------------------- display


def test_reprs_are_deterministic(tmp_path, make_client):
    plains = []
    for port_offset in range(2):
        client = make_client()
        receiver = Receiver(db=tmp_path / f"r{port_offset}.sqlite3")
        try:
            panel = admin(client, receiver)
            views = (panel, panel.form, panel.manager, panel.feed)
            bundle = [v._repr_mimebundle_()["text/plain"] for v in views]
            assert all("application/vnd.jupyter.widget-view+json" in v._repr_mimebundle_()
                       for v in views)
            plains.append([*bundle, repr(panel.widget), repr(panel.feed.widget)])
            panel.close()
        finally:
            receiver.stop()
    assert plains[0] == plains[1]
    assert plains[0][0] == "<mp_nb admin: Register | Callbacks | Events>"
    assert not any(ch.isdigit() for text in plains[0] for ch in text)
