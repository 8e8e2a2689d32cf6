"""EventFeed: what a :class:`~mp_nb.Receiver` is receiving, live, without blocking the kernel.

Deliveries are committed on the store's writer thread; the feed learns about them through
``store.on_commit`` (which only remembers the new ids, so the writer is never slowed) and a
small timer thread of its own redraws at most once per ``interval`` seconds. Redrawing only
assigns widget traits: nothing is printed and no ``with out:`` block is entered from a
thread, so no output ever lands in another cell.
"""

from __future__ import annotations

import html
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..exceptions import ConfigurationError
from ..receiver import Receiver
from ._common import MUTED_STYLE, OK_STYLE, Panel, View, message_html

log = logging.getLogger(__name__)

__all__ = ["EventFeed"]

TABLE_STYLE = "border-collapse:collapse;font-size:12px"
CELL_STYLE = "padding:1px 8px;text-align:left;border-bottom:1px solid #eee"


class EventFeed(View):
    """A live view of a receiver: URL and status, counts per type, the last events, rejections.

    >>> feed = EventFeed(receiver, last=20, interval=0.3)   # doctest: +SKIP
    >>> feed                                                # shows it; it keeps updating
    """

    def __init__(self, receiver: Receiver, last: int = 20, interval: float = 0.3, *,
                 start: bool = True) -> None:
        if not isinstance(last, int) or last < 1:
            raise ConfigurationError(f"last: {last!r}; show at least 1 event")
        if not interval > 0:
            raise ConfigurationError(f"interval: {interval!r}; give a positive number of seconds")
        self.receiver = receiver
        self.store = receiver.store
        self.last = last
        self.interval = float(interval)
        #: How many times the widgets were redrawn (throttled by ``interval``).
        self.renders = 0
        self.counts: dict[str, int] = {}
        self.total = 0
        self.pings = 0
        self.rejected = 0
        self.last_rejection: str | None = None
        self.recent: list[dict[str, Any]] = []
        self.error: str | None = None
        self._ids: deque[int] = deque(maxlen=last)
        self._ids_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

        self.header = w.HTML()
        self.summary = w.HTML()
        self.counts_html = w.HTML()
        self.events_html = w.HTML()
        self.error_html = w.HTML()
        self.widget = Panel("mp_nb EventFeed", [
            self.header, self.summary,
            w.HBox([
                w.VBox([w.HTML("<b>Events per type</b>"), self.counts_html],
                       layout=w.Layout(min_width="240px", margin="0 24px 0 0")),
                w.VBox([w.HTML(f"<b>Last {last} events</b> (newest first)"), self.events_html]),
            ]),
            self.error_html,
        ], owner=self, layout=w.Layout(padding="4px"))

        self.store.on_commit(_listener(weakref.ref(self)))
        self._seed()
        self.refresh()
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EventFeed:
        """Start the timer thread that redraws after commits (idempotent)."""
        if self._closed:
            raise ConfigurationError("feed: this feed was closed; make a new EventFeed")
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=_run, args=(weakref.ref(self), self._stop, self.interval),
                name="mp-nb-event-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop redrawing (the widgets keep their last state)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop the thread and close the widgets."""
        self.stop()
        self._closed = True
        super().close()

    # ------------------------------------------------------------------ drawing

    def refresh(self) -> None:
        """Read the store and redraw once (the timer thread calls this; so may you)."""
        with self._render_lock:
            store = self.store
            counts = store.type_counts()
            total = sum(counts.values())
            pings = store.count(include_pings=True) - store.count()
            rejected = store.rejection_count()
            if rejected != self.rejected or (rejected and self.last_rejection is None):
                frame = store.rejections()
                if len(frame):
                    row = frame.iloc[-1]
                    self.last_rejection = f"HTTP {int(row['status'])}: {row['reason']}"
            with self._ids_lock:
                ids = list(self._ids)
            recent = list(reversed(store.rows(ids)))
            self.counts, self.total, self.pings, self.rejected = counts, total, pings, rejected
            self.recent = recent
            self.header.value = self._header_html()
            self.summary.value = self._summary_html()
            self.counts_html.value = _counts_table(counts)
            self.events_html.value = _events_table(recent)
            self.renders += 1

    def _safe_refresh(self) -> None:
        """``refresh`` for the timer thread: a failure is shown and logged, never raised."""
        try:
            self.refresh()
        except Exception as exc:
            log.exception("event feed redraw failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self.error_html.value = message_html(f"Feed could not redraw: {self.error}")
        else:
            if self.error is not None:
                self.error = None
                self.error_html.value = ""

    def _note(self, ids: list[int]) -> None:
        """Remember new event ids (runs on the store's writer thread: keep it cheap)."""
        with self._ids_lock:
            self._ids.extend(ids)

    def _seed(self) -> None:
        """Start from the newest events already stored (a feed made after deliveries began)."""
        frame = self.store.events(include_pings=True)
        stored = [int(i) for i in frame["id"].tail(self.last)]
        with self._ids_lock:
            merged = sorted(set(stored) | set(self._ids))[-self.last:]
            self._ids.clear()
            self._ids.extend(merged)

    def _header_html(self) -> str:
        r = self.receiver
        running = r.running
        dot = (f'<span style="{OK_STYLE}">● listening</span>' if running
               else '<span style="color:#b00020">■ stopped</span>')
        creds = f"{r.cred_type.value} credentials" if r.cred_type else "no credentials"
        return (f"<b>Receiver</b> <code>{html.escape(r.url)}</code> {dot} "
                f'<span style="{MUTED_STYLE}">({creds})</span>')

    def _summary_html(self) -> str:
        parts = [f"<b>{self.total:,}</b> event{'s' if self.total != 1 else ''}"]
        if self.pings:
            parts.append(f"{self.pings:,} ping{'s' if self.pings != 1 else ''}")
        rejected = f"<b>{self.rejected:,}</b> rejected"
        if self.last_rejection:
            rejected += f" — last: {html.escape(self.last_rejection)}"
        parts.append(rejected if not self.rejected else f'<span style="color:#b00020">{rejected}</span>')
        return " · ".join(parts)


def _listener(ref: weakref.ReferenceType[EventFeed]) -> Callable[[list[int]], None]:
    """The ``on_commit`` hook; holds the feed weakly so a dropped feed costs nothing."""

    def on_commit(ids: list[int]) -> None:
        feed = ref()
        if feed is not None and not feed._closed:
            feed._note(ids)

    return on_commit


def _run(ref: weakref.ReferenceType[EventFeed], stop: threading.Event, interval: float) -> None:
    """Timer thread: redraw after each new commit, at most once per ``interval``."""
    seen_generation = -1
    seen_running: bool | None = None
    while not stop.is_set():
        feed = ref()
        if feed is None or feed._closed:
            return
        store = feed.store
        generation = store.generation
        running = feed.receiver.running
        if generation != seen_generation or running != seen_running:
            feed._safe_refresh()
            seen_generation, seen_running = generation, running
            del feed
            if stop.wait(interval):
                return
        else:
            del feed
            store.wait_for_commit(generation, 1.0)


def _counts_table(counts: dict[str, int]) -> str:
    if not counts:
        return message_html("nothing yet", MUTED_STYLE)
    rows = "".join(
        f'<tr><td style="{CELL_STYLE}">{html.escape(str(t))}</td>'
        f'<td style="{CELL_STYLE};text-align:right">{n:,}</td></tr>'
        for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))
    return f'<table style="{TABLE_STYLE}">{rows}</table>'


def _events_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return message_html("no events yet", MUTED_STYLE)
    head = "".join(f'<th style="{CELL_STYLE}">{h}</th>'
                   for h in ("id", "received (UTC)", "type", "model", "note"))
    body = []
    for r in rows:
        notes = []
        if r.get("ping"):
            notes.append("ping")
        if r.get("duplicate_of") is not None:
            notes.append(f"duplicate of {r['duplicate_of']}")
        if r.get("success") == 0:
            notes.append("failed")
        when = r["received_at"].strftime("%H:%M:%S.%f")[:-3]
        cells = (str(r["id"]), when, r.get("type") or "(not json)", r.get("model_id") or "",
                 ", ".join(notes))
        body.append("<tr>" + "".join(f'<td style="{CELL_STYLE}">{html.escape(str(c))}</td>'
                                     for c in cells) + "</tr>")
    return f'<table style="{TABLE_STYLE}"><tr>{head}</tr>{"".join(body)}</table>'
