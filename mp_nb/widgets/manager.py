"""CallbackManager: every registered callback in a table, with Edit, Ping and Remove per row.

Listing follows every page of ``modelEventWebhookCallbacks`` (through
:meth:`~mp_nb.ModelApiClient.iter_callbacks`) and reports progress while it loads. Remove
asks for confirmation first; Edit opens a :class:`~mp_nb.widgets.CallbackForm` filled in.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as w

from ..client import ModelApiClient
from ..exceptions import ApiError, MpNbError
from ..models import Callback
from ._common import (
    MUTED_STYLE,
    OK_STYLE,
    Panel,
    View,
    api_error_text,
    button,
    message_html,
)
from .form import CallbackForm

log = logging.getLogger(__name__)

__all__ = ["CallbackManager", "CallbackRow"]

COLUMNS = ("id", "version", "event types", "URL", "")
GRID_COLUMNS = "max-content max-content minmax(140px, 1fr) minmax(180px, 1.4fr) max-content"
CELL = '<div style="line-height:1.35;padding:3px 0">{}</div>'


@dataclass
class CallbackRow:
    """The widgets of one table row."""

    callback: Callback
    edit_button: w.Button
    ping_button: w.Button
    remove_button: w.Button
    result: w.HTML
    cells: list[w.Widget]

    @property
    def buttons(self) -> tuple[w.Button, w.Button, w.Button]:
        return (self.edit_button, self.ping_button, self.remove_button)


class CallbackManager(View):
    """A table of every callback, bound to a :class:`~mp_nb.ModelApiClient`.

    ``form`` is the :class:`CallbackForm` that Edit fills in; without one the manager makes
    its own and shows it below the table. ``on_edit(callback)`` runs after the form is
    filled (the admin tabs use it to switch to the form).
    """

    def __init__(self, client: ModelApiClient, *, form: CallbackForm | None = None,
                 on_edit: Callable[[Callback], None] | None = None, rows_per_page: int = 25,
                 load: bool = True) -> None:
        self.client = client
        self.callbacks: list[Callback] = []
        self.rows: list[CallbackRow] = []
        self.page = 0
        self.rows_per_page = max(1, rows_per_page)
        self.pending_removal: Callback | None = None
        self.last_ping: tuple[str, bool] | None = None
        self.last_error: str | None = None
        self._results: dict[str, str] = {}
        self.on_edit = on_edit
        self._owns_form = form is None
        self.form = form if form is not None else CallbackForm(client)
        self.form.on_saved(lambda _cb: self.refresh())
        self._loading = False

        self.refresh_button = button("Refresh", icon="refresh", tooltip="list every callback again")
        self.status = w.HTML()
        self.table = w.GridBox(layout=w.Layout(grid_template_columns=GRID_COLUMNS,
                                               grid_gap="2px 10px", align_items="center"))
        self.prev_button = button("", icon="chevron-left", tooltip="previous page", width="36px")
        self.next_button = button("", icon="chevron-right", tooltip="next page", width="36px")
        self.page_label = w.Label()
        self.pager = w.HBox([self.prev_button, self.page_label, self.next_button])
        self.confirm_text = w.HTML()
        self.confirm_button = button("Remove", style="danger", icon="trash")
        self.cancel_button = button("Cancel")
        self.confirm_bar = w.HBox([self.confirm_text, self.confirm_button, self.cancel_button],
                                  layout=w.Layout(display="none", align_items="center"))
        self.message = w.HTML()
        self._header = [w.HTML(f"<b>{name}</b>") for name in COLUMNS]
        self._empty = w.HTML(message_html("No callbacks registered.", MUTED_STYLE))
        self.edit_area = w.VBox([self.form.widget] if self._owns_form else [],
                                layout=w.Layout(display="none"))
        self.widget = Panel("mp_nb CallbackManager", [
            w.HBox([self.refresh_button, self.status], layout=w.Layout(align_items="center")),
            self.table, self.pager, self.confirm_bar, self.message, self.edit_area,
        ], owner=self, layout=w.Layout(padding="4px"))

        self.refresh_button.on_click(lambda _b: self.refresh())
        self.prev_button.on_click(lambda _b: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _b: self.show_page(self.page + 1))
        self.confirm_button.on_click(lambda _b: self.confirm_remove())
        self.cancel_button.on_click(lambda _b: self.cancel_remove())
        self._render()
        if load:
            self.refresh()

    # ------------------------------------------------------------------ public API

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.callbacks) // self.rows_per_page))

    def refresh(self) -> None:
        """List every callback again (all pages), showing progress while it loads."""
        if self._loading:
            return
        self._loading = True
        self.refresh_button.disabled = True
        self.status.value = message_html("Loading callbacks…", MUTED_STYLE)
        loaded: list[Callback] = []
        try:
            for cb in self.client.iter_callbacks():
                loaded.append(cb)
                if len(loaded) % self.client.page_size == 0:
                    self.status.value = message_html(
                        f"Loading callbacks… {len(loaded)} so far", MUTED_STYLE)
        except MpNbError as exc:
            text = api_error_text(exc) if isinstance(exc, ApiError) else str(exc)
            self.last_error = text
            self.status.value = message_html(f"Could not list callbacks: {text}")
            return
        finally:
            self._loading = False
            self.refresh_button.disabled = False
        self.callbacks = loaded
        self.last_error = None
        if self.pending_removal is not None and self.pending_removal.id not in self.ids:
            self.cancel_remove()
        self.page = min(self.page, self.pages - 1)
        self._render()
        n = len(loaded)
        self.status.value = message_html(f"{n} callback{'s' if n != 1 else ''}", MUTED_STYLE)

    @property
    def ids(self) -> list[str]:
        """The ids of every listed callback, in the API's order."""
        return [cb.id for cb in self.callbacks]

    def show_page(self, page: int) -> None:
        """Show another page of the table (``rows_per_page`` rows each)."""
        page = min(max(0, page), self.pages - 1)
        if page != self.page:
            self.page = page
            self._render()

    def row_for(self, callback_id: str) -> CallbackRow:
        """The row of a callback, turning to its page if needed."""
        index = self.ids.index(callback_id)
        self.show_page(index // self.rows_per_page)
        return next(r for r in self.rows if r.callback.id == callback_id)

    def edit(self, callback_id: str) -> None:
        """Open the form filled in with this callback."""
        cb = self._find(callback_id)
        self.form.edit(cb)
        if self._owns_form:
            self.edit_area.layout.display = ""
        if self.on_edit is not None:
            self.on_edit(cb)

    def ping(self, callback_id: str) -> bool | None:
        """Ask the API to deliver a test event; shows and returns whether it got a 2xx."""
        row = next((r for r in self.rows if r.callback.id == callback_id), None)
        buttons = row.buttons if row is not None else ()
        for b in buttons:
            b.disabled = True
        self._set_result(callback_id, message_html("pinging…", MUTED_STYLE), row)
        try:
            delivered = self.client.ping_callback(callback_id)
        except ApiError as exc:
            self._failed(f"Ping {callback_id} failed: {api_error_text(exc)}")
            self._set_result(callback_id, message_html("error"), row)
            return None
        finally:
            for b in buttons:
                b.disabled = False
        self.last_ping = (callback_id, delivered)
        if delivered:
            text, style = "delivered (2xx)", OK_STYLE
            line = f"Ping {callback_id}: the endpoint answered 2xx."
        else:
            text, style = "not delivered", "color:#b00020"
            line = (f"Ping {callback_id}: the endpoint did not answer 2xx (unreachable, "
                    "refused, or rejected the credentials).")
        self._set_result(callback_id, message_html(text, style), row)
        self.message.value = message_html(line, style)
        return delivered

    def ask_remove(self, callback_id: str) -> None:
        """Show the confirmation bar for removing this callback (nothing is removed yet)."""
        cb = self._find(callback_id)
        self.pending_removal = cb
        self.confirm_text.value = (
            f"Remove callback <code>{html.escape(cb.id)}</code> → {html.escape(cb.url or '')}? "
            "Deliveries to it stop at once.")
        self.confirm_bar.layout.display = ""

    def confirm_remove(self) -> bool:
        """Remove the callback waiting for confirmation; returns whether the API removed it."""
        cb = self.pending_removal
        if cb is None:
            return False
        self.confirm_button.disabled = True
        try:
            removed = self.client.remove_callback(cb.id)
        except ApiError as exc:
            self._failed(f"Remove {cb.id} failed: {api_error_text(exc)}")
            removed = False
        else:
            self.last_error = None
            self.message.value = message_html(
                f"Removed callback {cb.id}." if removed else f"The API did not remove {cb.id}.",
                OK_STYLE if removed else "color:#b00020")
        finally:
            self.confirm_button.disabled = False
            self.cancel_remove()
        if self.form.editing is not None and self.form.editing.id == cb.id and removed:
            self.form.new()
        failure = self.last_error
        self.refresh()
        self.last_error = self.last_error or failure  # the list reloaded; the removal still failed
        return removed

    def cancel_remove(self) -> None:
        """Hide the confirmation bar; nothing is removed."""
        self.pending_removal = None
        self.confirm_text.value = ""
        self.confirm_bar.layout.display = "none"

    # ------------------------------------------------------------------ internals

    def _find(self, callback_id: str) -> Callback:
        for cb in self.callbacks:
            if cb.id == callback_id:
                return cb
        raise KeyError(f"callback_id: {callback_id!r} is not in the table; press Refresh")

    def _failed(self, text: str) -> None:
        self.last_error = text
        self.message.value = message_html(text)

    def _set_result(self, callback_id: str, value: str, row: CallbackRow | None) -> None:
        """A row's last ping result; kept across redraws and pages."""
        self._results[callback_id] = value
        if row is not None:
            row.result.value = value

    def _render(self) -> None:
        for row in self.rows:
            for cell in row.cells:
                cell.close()
        start = self.page * self.rows_per_page
        shown = self.callbacks[start: start + self.rows_per_page]
        self.rows = [self._row(cb) for cb in shown]
        cells: list[w.Widget] = self._header + [c for r in self.rows for c in r.cells]
        self.table.children = cells if shown else [*cells, self._empty]
        many = self.pages > 1
        self.pager.layout.display = "" if many else "none"
        self.page_label.value = f"page {self.page + 1} of {self.pages}"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.pages - 1

    def _row(self, cb: Callback) -> CallbackRow:
        edit = button("Edit", icon="pencil", tooltip="open this callback in the form")
        ping = button("Ping", icon="paper-plane", tooltip="deliver a test event now")
        remove = button("Remove", icon="trash", style="danger", tooltip="asks first")
        edit.on_click(lambda _b: self.edit(cb.id))
        ping.on_click(lambda _b: self.ping(cb.id))
        remove.on_click(lambda _b: self.ask_remove(cb.id))
        result = w.HTML(self._results.get(cb.id, ""))
        cells: list[w.Widget] = [
            w.HTML(f"<code>{html.escape(cb.id)}</code>"),
            w.Label(str(cb.version or 1)),
            w.HTML(CELL.format(html.escape(", ".join(cb.event_types)))),
            w.HTML(CELL.format(f'<span style="word-break:break-all">{html.escape(cb.url or "")}</span>')),
            w.VBox([w.HBox([edit, ping, remove]), result]),
        ]
        return CallbackRow(cb, edit, ping, remove, result, cells)
