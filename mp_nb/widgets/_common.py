"""Pieces shared by the widgets: a panel with a stable repr, message formatting, tree walking.

Every view keeps its logic in a plain Python object and its layout in ``.widget``; the
object displays itself through ``_repr_mimebundle_`` so a notebook cell can end with it.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import ipywidgets as w
from pydantic import ValidationError

from ..exceptions import ApiError

ERROR_STYLE = "color:#b00020"
OK_STYLE = "color:#1b5e20"
MUTED_STYLE = "color:#666"


class Panel(w.VBox):
    """A VBox whose ``repr`` is a fixed label.

    The default widget repr lists non-default traits, which here would include ports, ids
    and URLs; notebooks compared with nbval need the ``text/plain`` output to be stable.
    """

    def __init__(self, label: str, children: list[w.Widget] | tuple[w.Widget, ...] = (), *,
                 owner: object = None, **kwargs: Any) -> None:
        super().__init__(children=list(children), **kwargs)
        self._label = label
        #: The view object behind this panel, kept alive as long as the widget is open
        #: (a feed displayed without being assigned to a name must keep updating).
        self.owner = owner

    def __repr__(self) -> str:
        return f"<{self._label}>"


class View:
    """Base of the widget views: ``.widget`` is the layout, the object itself displays it."""

    widget: w.Widget

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return repr(self.widget)

    def close(self) -> None:
        """Close every widget of this view (the front end removes them)."""
        for widget in list(iter_widgets(self.widget)):
            widget.close()


def iter_widgets(root: w.Widget) -> Iterator[w.Widget]:
    """``root`` and every widget below it (children of boxes and tabs), depth first."""
    stack = [root]
    seen: set[int] = set()
    while stack:
        widget = stack.pop()
        if id(widget) in seen:
            continue
        seen.add(id(widget))
        yield widget
        children = getattr(widget, "children", None) or ()
        stack.extend(reversed([c for c in children if isinstance(c, w.Widget)]))


def message_html(text: str, style: str = ERROR_STYLE) -> str:
    """One line of escaped text in a colour (errors red, successes green)."""
    if not text:
        return ""
    return f'<div style="line-height:1.4;{style}">{html.escape(text)}</div>'


def api_error_text(exc: ApiError) -> str:
    """What the Model API said, with its error code: the text users search for."""
    details = [f"code {exc.code}"] if exc.code else []
    if exc.status is not None:
        details.append(f"HTTP {exc.status}")
    return exc.message + (f" ({', '.join(details)})" if details else "")


def validation_messages(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field, message)`` pairs of a pydantic error; model-level errors get field ``""``.

    The input value is quoted for field errors only (model-level inputs hold the secret).
    """
    out = []
    for err in exc.errors(include_url=False):
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else ""
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if field and err.get("type") != "value_error":
            msg = f"{err.get('input')!r}: {msg[:1].lower()}{msg[1:]}"
        prefixed = not field or msg.startswith(field)
        out.append((field, msg if prefixed else f"{field}: {msg}"))
    return out


def button(description: str, *, style: str = "", icon: str = "", tooltip: str = "",
           width: str | None = None) -> w.Button:
    """A button with the small defaults used across the views."""
    layout = w.Layout(width=width) if width else w.Layout(width="auto")
    return w.Button(description=description, button_style=style, icon=icon, tooltip=tooltip,
                    layout=layout)
