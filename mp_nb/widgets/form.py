"""CallbackForm: register or edit a webhook callback without writing GraphQL or Python.

The form checks what is typed with the same rules the client applies before sending
(:func:`mp_nb.models.split_url`, :class:`mp_nb.models.CallbackTarget`), shows each problem
next to its field as soon as the field has been touched, and on submit calls
``add_callback`` or ``patch_callback``. The secret lives in a password field only until the
call has been sent; it is never echoed into any other widget.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ipywidgets as w
from pydantic import SecretStr, ValidationError
from pydantic.alias_generators import to_snake

from ..client import ModelApiClient
from ..exceptions import ApiError, ConfigurationError, MpNbError, TransportError
from ..models import (
    Callback,
    CallbackTarget,
    as_cred_type,
    check_event_types,
    check_version,
    endpoint_url,
    event_types_for,
    split_url,
)
from ._common import (
    MUTED_STYLE,
    OK_STYLE,
    Panel,
    View,
    api_error_text,
    button,
    message_html,
    validation_messages,
)

log = logging.getLogger(__name__)

__all__ = ["CallbackForm", "KeyValueRows"]

LABEL_STYLE = {"description_width": "120px"}
WIDE = w.Layout(width="460px")
#: The fields that have an error line of their own.
ERROR_FIELDS = ("url", "host", "port", "path", "event_types", "query_params",
                "additional_headers", "credentials")
#: A stand-in location, used to check the other fields while the URL itself is wrong.
_STAND_IN = {"scheme": "https", "host": "example.invalid", "port": None, "path": ""}
_KEPT = SecretStr("kept")


class KeyValueRows:
    """Editable ``key = value`` rows (query params, extra headers) with add and remove."""

    def __init__(self, name: str, *, key_placeholder: str, value_placeholder: str,
                 add_label: str, on_change: Callable[[], None] | None = None) -> None:
        self.name = name
        self.key_placeholder = key_placeholder
        self.value_placeholder = value_placeholder
        self._on_change = on_change
        self.rows: list[tuple[w.Text, w.Text, w.Button]] = []
        self.add_button = button(add_label, icon="plus")
        self.add_button.on_click(lambda _b: self.add())
        self.rows_box = w.VBox()
        self.box = w.VBox([self.rows_box, w.HBox([self.add_button])])

    def add(self, key: str = "", value: str = "") -> None:
        """Append a row (empty by default)."""
        k = w.Text(value=key, placeholder=self.key_placeholder, layout=w.Layout(width="180px"))
        v = w.Text(value=value, placeholder=self.value_placeholder, layout=w.Layout(width="220px"))
        x = button("", icon="times", tooltip="remove this row", width="36px")
        row = (k, v, x)
        x.on_click(lambda _b: self.remove(row))
        k.observe(self._changed, "value")
        v.observe(self._changed, "value")
        self.rows.append(row)
        self._layout()
        self._changed()

    def remove(self, row: tuple[w.Text, w.Text, w.Button]) -> None:
        if row in self.rows:
            self.rows.remove(row)
            for widget in row:
                widget.close()
            self._layout()
            self._changed()

    def set(self, pairs: list[tuple[str, str]]) -> None:
        """Replace every row with ``pairs``."""
        for row in list(self.rows):
            for widget in row:
                widget.close()
        self.rows = []
        for key, value in pairs:
            self.add(key, value)
        self._layout()

    def read(self) -> tuple[list[tuple[str, str]], str | None]:
        """The filled rows as pairs, and a problem if a row has a value but no key."""
        pairs = []
        for number, (k, v, _x) in enumerate(self.rows, start=1):
            key, value = k.value.strip(), v.value
            if not key and not value:
                continue
            if not key:
                return pairs, f"{self.name}: row {number} has a value but no key; fill in the key"
            pairs.append((key, value))
        return pairs, None

    def _layout(self) -> None:
        self.rows_box.children = [w.HBox(list(row)) for row in self.rows]

    def _changed(self, _change: Any = None) -> None:
        if self._on_change is not None:
            self._on_change()


@dataclass
class _Plan:
    """What a valid form sends."""

    target: CallbackTarget
    event_types: list[str]
    version: int
    send_secret: bool


class CallbackForm(View):
    """A form bound to a :class:`~mp_nb.ModelApiClient` that registers or edits one callback.

    >>> form = CallbackForm(client)              # doctest: +SKIP
    >>> form                                     # shows the form in a notebook
    >>> form.edit(callback)                      # the same form, filled in, patches on submit
    """

    def __init__(self, client: ModelApiClient, *, url: str = "", version: int = 1,
                 cred_type: str | None = None, cred_key: str | None = None) -> None:
        check_version(version)
        as_cred_type(cred_type or None)
        self.client = client
        self.editing: Callback | None = None
        self.last_result: Callback | None = None
        self.last_error: str | None = None
        self.errors: dict[str, str] = {}
        self._defaults = {"url": url, "version": version, "cred_type": cred_type or "",
                          "cred_key": cred_key or ""}
        self._touched: set[str] = set()
        self._submitted = False
        self._busy = False
        self._loading = False
        self._listeners: list[Callable[[Callback], None]] = []

        self.title = w.HTML()
        self.mode = w.ToggleButtons(
            options=[("URL", "url"), ("scheme · host · port · path", "parts")], value="url",
            style={"button_width": "auto"})
        self.url = w.Text(description="URL", placeholder="https://example.com/hooks/matterport",
                          style=LABEL_STYLE, layout=WIDE)
        self.scheme = w.Dropdown(options=["https", "http"], value="https", description="Scheme",
                                 style=LABEL_STYLE, layout=w.Layout(width="220px"))
        self.host = w.Text(description="Host", placeholder="example.com", style=LABEL_STYLE,
                           layout=WIDE)
        self.port = w.Text(description="Port", placeholder="default for the scheme",
                           style=LABEL_STYLE, layout=w.Layout(width="300px"))
        self.path = w.Text(description="Path", placeholder="hooks/matterport", style=LABEL_STYLE,
                           layout=WIDE)
        self.version = w.ToggleButtons(options=[("1 (legacy)", 1), ("2", 2)], value=version,
                                       style={"button_width": "90px"})
        self.type_boxes: dict[str, w.Checkbox] = {}
        self.types_grid = w.GridBox(layout=w.Layout(
            grid_template_columns="repeat(3, 210px)", grid_gap="0 8px"))
        self.all_types = button("all", tooltip="tick every event type")
        self.no_types = button("none", tooltip="untick every event type")
        self.query_params = KeyValueRows(
            "query params", key_placeholder="key", value_placeholder="value",
            add_label="add query param", on_change=lambda: self._changed("query_params"))
        self.headers = KeyValueRows(
            "additional headers", key_placeholder="header name", value_placeholder="value",
            add_label="add header", on_change=lambda: self._changed("additional_headers"))
        self.cred_type = w.ToggleButtons(
            options=[("none", ""), ("basic", "basic"), ("token", "token")], value="",
            style={"button_width": "90px"})
        self.cred_key = w.Text(style=LABEL_STYLE, layout=WIDE)
        self.cred_secret = w.Password(description="Secret", style=LABEL_STYLE, layout=WIDE)
        self.submit_button = button("Register", style="primary", icon="check")
        self.new_button = button("New callback", icon="plus",
                                 tooltip="stop editing and register a new callback")
        self.status = w.HTML()
        self.error_lines = {name: w.HTML() for name in ERROR_FIELDS}

        self._location_url = w.VBox([self.url, self.error_lines["url"]])
        self._location_parts = w.VBox([
            self.scheme, self.host, self.error_lines["host"], self.port, self.error_lines["port"],
            self.path, self.error_lines["path"]])
        self._headers_row = w.VBox([
            _heading("Additional headers", "sent with every delivery (documented for webhook "
                     "version 2; no credentials here, they would be listed back)"),
            self.headers.box,
            self.error_lines["additional_headers"]])
        self._cred_fields = w.VBox([self.cred_key, self.cred_secret])
        self.widget = Panel("mp_nb CallbackForm", [
            self.title,
            _heading("Callback URL"), self.mode, self._location_url, self._location_parts,
            _heading("Query parameters", "added to the URL of every delivery"),
            self.query_params.box,
            self.error_lines["query_params"],
            _heading("Webhook version"), self.version,
            w.HBox([_heading("Event types", margin="0"), self.all_types, self.no_types],
                   layout=w.Layout(align_items="center", margin="8px 0 0 0")),
            self.types_grid, self.error_lines["event_types"],
            self._headers_row,
            _heading("Credentials", "how the endpoint knows it is Matterport"),
            self.cred_type, self._cred_fields, self.error_lines["credentials"],
            w.HBox([self.submit_button, self.new_button]), self.status,
        ], owner=self, layout=w.Layout(padding="4px"))

        for field, widget in (("url", self.url), ("host", self.host), ("port", self.port),
                              ("path", self.path), ("host", self.scheme),
                              ("credentials", self.cred_key), ("credentials", self.cred_secret)):
            widget.observe(lambda _c, f=field: self._changed(f), "value")
        self.mode.observe(self._mode_changed, "value")
        self.version.observe(self._version_changed, "value")
        self.cred_type.observe(lambda _c: self._cred_type_changed(), "value")
        self.all_types.on_click(lambda _b: self._tick_all(True))
        self.no_types.on_click(lambda _b: self._tick_all(False))
        self.submit_button.on_click(lambda _b: self.submit())
        self.new_button.on_click(lambda _b: self.new())
        self.new()

    # ------------------------------------------------------------------ public API

    def on_saved(self, listener: Callable[[Callback], None]) -> None:
        """Call ``listener(callback)`` after each successful register or save."""
        self._listeners.append(listener)

    def new(self) -> None:
        """Clear the form for a new registration (the defaults given at construction)."""
        self._load(None, url=self._defaults["url"], version=self._defaults["version"],
                   event_types=None, query=[], headers=[], cred_type=self._defaults["cred_type"],
                   cred_key=self._defaults["cred_key"])

    def edit(self, callback: Callback | str) -> None:
        """Fill the form with a stored callback; submitting patches it.

        A secret left blank keeps the stored one.
        """
        if isinstance(callback, str):
            callback = self.client.get_callback(callback)
        cb = callback.callback
        base = (endpoint_url(cb.scheme, cb.host, cb.port, cb.path or "")
                if cb.scheme and cb.host else "")
        self._load(callback, url=base, version=callback.version or 1,
                   event_types=list(callback.event_types),
                   query=[(kv.key, kv.value) for kv in cb.query_params],
                   headers=[(kv.key, kv.value) for kv in cb.additional_headers],
                   cred_type=cb.cred_type or "", cred_key=cb.cred_key or "")

    @property
    def selected_types(self) -> list[str]:
        """The ticked event types, in the API's order."""
        return [t for t, box in self.type_boxes.items() if box.value]

    def validate(self) -> _Plan | None:
        """Check every field; fills ``errors`` (field → message). Returns what to send, or None."""
        errors: dict[str, str] = {}
        version = int(self.version.value)
        types = self.selected_types
        if not types:
            errors["event_types"] = ("event types: tick at least one; the API refuses a "
                                     "callback that listens to nothing")
        else:
            try:
                check_event_types(types, version)
            except ConfigurationError as exc:
                errors["event_types"] = str(exc)
        query, problem = self.query_params.read()
        if problem:
            errors["query_params"] = problem
        headers, problem = self.headers.read()
        if problem:
            errors["additional_headers"] = problem

        cred_type = self.cred_type.value or None
        send_secret = bool(self.cred_secret.value)
        creds: dict[str, Any] = {}
        if cred_type is not None:
            keep = (not send_secret and self.editing is not None
                    and self.editing.callback.cred_type is not None)
            secret = SecretStr(self.cred_secret.value) if send_secret else (_KEPT if keep else None)
            creds = {"cred_type": cred_type, "cred_key": self.cred_key.value.strip() or None,
                     "cred_secret": secret}

        location, location_errors = self._location()
        errors.update(location_errors)
        target: CallbackTarget | None = None
        where = dict(location or _STAND_IN)
        url_query = [(kv.key, kv.value) for kv in where.pop("query_params", [])]
        try:
            target = CallbackTarget(**where, query_params=url_query + query,
                                    additional_headers=headers, **creds)
        except ValidationError as exc:
            for field, message in validation_messages(exc):
                if not field:  # model-level messages start with the field they are about
                    field = message.partition(":")[0] if ":" in message else ""
                label = self._label_for(field) or "credentials"
                if location is None and label in ("url", "host", "port", "path"):
                    continue  # the location already has its own message
                errors.setdefault(label, message)
        self.errors = errors
        self._show_errors()
        if errors or target is None or location is None:
            return None
        return _Plan(target=target, event_types=types, version=version, send_secret=send_secret)

    def submit(self) -> Callback | None:
        """Validate, then register (or patch, when editing). Returns the callback, or None."""
        if self._busy:
            return None
        self._submitted = True
        plan = self.validate()
        if plan is None:
            typed = bool(self.cred_secret.value)
            # after any submit the secret leaves the page; the errors stay those of what
            # was submitted (the emptied field is not the mistake to point at)
            self._set_quietly(self.cred_secret, "")
            self.last_error = "; ".join(self.errors.values())
            again = " The secret was cleared: type it again." if typed else ""
            self.status.value = message_html(f"Nothing sent: fix the fields marked in red.{again}")
            return None
        editing = self.editing
        self._busy = True
        idle_label = self.submit_button.description
        self.submit_button.disabled = True
        self.submit_button.description = "Saving…" if editing else "Registering…"
        self.status.value = message_html("Sending…", MUTED_STYLE)
        result: Callback | None = None
        try:
            result = self._send(plan, editing)
        except ApiError as exc:
            self._api_failed(exc)
        except MpNbError as exc:
            self.last_error = str(exc)
            self.status.value = message_html(f"Not sent: {exc}")
        except Exception as exc:  # keep the form usable whatever happens
            log.exception("callback form submit failed")
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.status.value = message_html(f"Unexpected error: {self.last_error}")
        finally:
            self._set_quietly(self.cred_secret, "")
            self._busy = False
            self.submit_button.disabled = False
            self.submit_button.description = idle_label
        if result is not None:
            self.last_result, self.last_error = result, None
            if editing:
                self.edit(result)  # keep editing the stored state
            else:  # the emptied secret is not a mistake to point at
                self._touched, self._submitted, self.errors = set(), False, {}
                self._show_errors()
            verb = "Saved" if editing else "Registered"
            self.status.value = message_html(f"{verb} callback {result.id} → {result.url}", OK_STYLE)
            for listener in list(self._listeners):
                try:
                    listener(result)
                except Exception:
                    log.exception("on_saved listener failed")
        return result

    # ------------------------------------------------------------------ internals

    def _send(self, plan: _Plan, editing: Callback | None) -> Callback:
        target = plan.target
        if editing is None:
            return self.client.add_callback(target=target, event_types=plan.event_types,
                                            version=plan.version)
        extra: dict[str, Any] = {}
        if plan.send_secret and target.cred_secret is not None:
            extra["cred_secret"] = target.cred_secret
        return self.client.patch_callback(
            editing.id, url=target.url, event_types=plan.event_types, version=plan.version,
            cred_type=target.cred_type.value if target.cred_type else None,
            cred_key=target.cred_key,
            additional_headers=[(kv.key, kv.value) for kv in target.additional_headers],
            **extra)

    def _api_failed(self, exc: ApiError) -> None:
        text = api_error_text(exc)
        self.last_error = text
        lead = ("Could not reach the Model API" if isinstance(exc, TransportError)
                else "The Model API refused")
        self.status.value = message_html(f"{lead}: {text}")
        field, sep, _rest = exc.message.partition(":")
        label = self._label_for(field.strip().removeprefix("callback.")) if sep else None
        if label is not None:
            self.errors[label] = exc.message
            self._touched.add(label)
            self._show_errors()

    def _location(self) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """``scheme host port path`` (+ query params from the URL), or the errors found."""
        if self.mode.value == "url":
            try:
                fields = split_url(self.url.value)
            except ConfigurationError as exc:
                if _has_password(self.url.value):
                    # never leave a password on screen: drop user:password@ from the field
                    self._set_quietly(self.url, _without_userinfo(self.url.value))
                    return None, {"url": f"{exc} (removed from the field: enter them under "
                                          "Credentials)"}
                return None, {"url": str(exc)}
            return fields, {}
        port_text = self.port.value.strip()
        errors = {}
        if port_text and not port_text.isdigit():
            errors["port"] = (f"port: {port_text!r} is not a number; give 1-65535 or leave it "
                              "empty for the scheme's default")
        port = int(port_text) if port_text.isdigit() else None
        return {"scheme": self.scheme.value, "host": self.host.value, "port": port,
                "path": self.path.value}, errors

    def _label_for(self, field: str) -> str | None:
        field = to_snake(field)
        if field in ("scheme", "host", "port", "path"):
            if self.mode.value == "url":
                return "url"
            return "host" if field == "scheme" else field
        if field.startswith("cred") or field == "":
            return "credentials"
        if field in ("event_types", "query_params", "additional_headers"):
            return field
        return None

    def _show_errors(self) -> None:
        for name, line in self.error_lines.items():
            shown = self._submitted or name in self._touched
            line.value = message_html(self.errors.get(name, "")) if shown else ""

    def _changed(self, field: str) -> None:
        if self._loading:
            return
        self._touched.add(field)
        self.validate()

    def _set_quietly(self, widget: w.Text | w.Password, value: str) -> None:
        loading, self._loading = self._loading, True
        try:
            widget.value = value
        finally:
            self._loading = loading

    def _mode_changed(self, change: dict[str, Any]) -> None:
        """Carry the location over when switching between URL and parts."""
        loading, self._loading = self._loading, True
        try:
            if change["new"] == "parts" and self.url.value.strip():
                try:
                    fields = split_url(self.url.value)
                except ConfigurationError:
                    pass
                else:
                    self.scheme.value = fields["scheme"]
                    self.host.value = fields["host"]
                    self.port.value = "" if fields["port"] is None else str(fields["port"])
                    self.path.value = fields["path"]
            elif change["new"] == "url" and self.host.value.strip():
                port = self.port.value.strip()
                self.url.value = endpoint_url(self.scheme.value, self.host.value.strip(),
                                              int(port) if port.isdigit() else None,
                                              self.path.value)
        finally:
            self._loading = loading
        self._location_url.layout.display = "" if change["new"] == "url" else "none"
        self._location_parts.layout.display = "none" if change["new"] == "url" else ""
        if not self._loading:
            self.validate()

    def _version_changed(self, change: dict[str, Any]) -> None:
        self._build_types(int(change["new"]), keep=self.selected_types,
                          all_before=all(b.value for b in self.type_boxes.values()))
        if not self._loading:
            self.validate()

    def _build_types(self, version: int, keep: list[str] | None, all_before: bool) -> None:
        for box in self.type_boxes.values():
            box.close()
        self.type_boxes = {}
        for t in event_types_for(version):
            ticked = all_before or (keep is not None and t in keep)
            box = w.Checkbox(value=ticked, description=t, indent=False,
                             layout=w.Layout(width="auto"))
            box.observe(lambda _c: self._changed("event_types"), "value")
            self.type_boxes[t] = box
        self.types_grid.children = list(self.type_boxes.values())

    def _tick_all(self, value: bool) -> None:
        loading, self._loading = self._loading, True
        try:
            for box in self.type_boxes.values():
                box.value = value
        finally:
            self._loading = loading
        self._changed("event_types")

    def _cred_type_changed(self) -> None:
        kind = self.cred_type.value
        self._cred_fields.layout.display = "none" if not kind else ""
        if kind == "basic":
            self.cred_key.description = "User name"
            self.cred_key.placeholder = "the user name the endpoint expects"
        else:
            self.cred_key.description = "Header name"
            self.cred_key.placeholder = "optional; empty sends Authorization: Bearer <secret>"
        self._set_secret_placeholder()
        if not self._loading:
            self.validate()

    def _set_secret_placeholder(self) -> None:
        keeps = self.editing is not None and self.editing.callback.cred_type is not None
        self.cred_secret.placeholder = ("leave blank to keep the stored secret" if keeps
                                        else "never shown again after sending")

    def _load(self, editing: Callback | None, *, url: str, version: int,
              event_types: list[str] | None, query: list[tuple[str, str]],
              headers: list[tuple[str, str]], cred_type: str, cred_key: str) -> None:
        self._loading = True
        try:
            self.editing = editing
            self.mode.value = "url"
            self.url.value = url
            for widget in (self.host, self.port, self.path):
                widget.value = ""
            self.scheme.value = "https"
            self.version.value = version
            self._build_types(version, keep=event_types, all_before=event_types is None)
            self.query_params.set(query)
            self.headers.set(headers)
            self.cred_type.value = cred_type
            self.cred_key.value = cred_key
            self.cred_secret.value = ""
        finally:
            self._loading = False
        self._location_url.layout.display = ""
        self._location_parts.layout.display = "none"
        self._cred_type_changed()
        self._touched = set()
        self._submitted = False
        self.errors = {}
        self._show_errors()
        self.status.value = ""
        if editing is None:
            self.title.value = "<b>Register a callback</b>"
            self.submit_button.description = "Register"
            self.new_button.layout.display = "none"
        else:
            self.title.value = (f"<b>Edit callback</b> <code>{html.escape(editing.id)}</code> "
                                "(a blank secret keeps the stored one)")
            self.submit_button.description = "Save changes"
            self.new_button.layout.display = ""
        self._set_secret_placeholder()


def _heading(text: str, note: str = "", margin: str = "8px 0 0 0") -> w.HTML:
    hint = f' <span style="{MUTED_STYLE}">{html.escape(note)}</span>' if note else ""
    return w.HTML(f"<b>{html.escape(text)}</b>{hint}", layout=w.Layout(margin=margin))


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url.strip()).password is not None
    except ValueError:
        return False


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url.strip())
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
