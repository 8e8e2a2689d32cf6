"""Widgets for people who would rather click than type (stock ipywidgets 8, extra ``widgets``).

* :class:`CallbackForm` — register or edit a callback, checked as you type;
* :class:`CallbackManager` — every callback in a table, with Edit, Ping and Remove;
* :class:`EventFeed` — what a :class:`~mp_nb.Receiver` receives, live;
* :func:`admin` — all three in tabs.

Each view keeps its logic in a plain object (drive it from code or tests) and displays
itself when it ends a notebook cell; its layout is in ``.widget``.
"""

from .admin import AdminPanel, admin
from .feed import EventFeed
from .form import CallbackForm
from .manager import CallbackManager

__all__ = ["AdminPanel", "CallbackForm", "CallbackManager", "EventFeed", "admin"]
