"""admin(): the registration form, the callback table and the live feed, in one set of tabs."""

from __future__ import annotations

import ipywidgets as w

from ..client import ModelApiClient
from ..models import Callback
from ..receiver import Receiver
from ._common import View
from .feed import EventFeed
from .form import CallbackForm
from .manager import CallbackManager

__all__ = ["AdminPanel", "admin"]

TITLES = ("Register", "Callbacks", "Events")


class _Tabs(w.Tab):
    """A Tab with a fixed repr (see :class:`~mp_nb.widgets._common.Panel`)."""

    def __repr__(self) -> str:
        return "<mp_nb admin: " + " | ".join(self.titles) + ">"


class AdminPanel(View):
    """The three views in tabs; Edit in the table switches to the form, a save refreshes it."""

    def __init__(self, client: ModelApiClient, receiver: Receiver | None = None, *,
                 last: int = 20, interval: float = 0.3) -> None:
        url, cred_type, cred_key = "", None, None
        if receiver is not None:  # start the form on the receiver (never with its secret)
            url = receiver.url
            cred_type = receiver.cred_type.value if receiver.cred_type else None
            cred_key = receiver.cred_key
        self.form = CallbackForm(client, url=url, cred_type=cred_type, cred_key=cred_key)
        self.manager = CallbackManager(client, form=self.form, on_edit=self._show_form)
        self.feed = EventFeed(receiver, last=last, interval=interval) if receiver else None
        children = [self.form.widget, self.manager.widget]
        if self.feed is not None:
            children.append(self.feed.widget)
        self.tabs = _Tabs(children=children, titles=TITLES[: len(children)])
        self.tabs.owner = self
        self.widget = self.tabs

    def _show_form(self, _callback: Callback) -> None:
        self.tabs.selected_index = 0

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()
        super().close()


def admin(client: ModelApiClient, receiver: Receiver | None = None, *, last: int = 20,
          interval: float = 0.3) -> AdminPanel:
    """Everything in one call: ``Register`` (form), ``Callbacks`` (table), ``Events`` (feed).

    >>> mp_nb.widgets.admin(client, receiver)      # doctest: +SKIP
    """
    return AdminPanel(client, receiver, last=last, interval=interval)
