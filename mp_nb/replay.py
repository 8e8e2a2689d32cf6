"""Replay: send stored events again, byte for byte, or print the equivalent ``curl`` command.

Useful to re-drive your own webhook code with real deliveries after fixing a bug, or to
reproduce one delivery from a shell. The request carries exactly the stored body bytes and
the original ``Content-Type``; credentials, if any, follow the same rule as Matterport's
deliveries (:mod:`mp_nb.credentials`). Traffic stays on this machine: a URL whose host is not
a loopback address is refused unless ``allow_remote=True``.

>>> replay(receiver.store, receiver.events(types="processed"), other.url)  # doctest: +SKIP
>>> print(curl_command(receiver.store, 12, other.url, cred_type="basic", cred_key="hook"))
... # doctest: +SKIP
"""

from __future__ import annotations

import numbers
import os
import shlex
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import pandas as pd
from pydantic import SecretStr

from ._server import is_loopback
from .credentials import CredType, credential_header
from .exceptions import ConfigurationError
from .models import as_cred_type, as_secret, credentials_problem, split_url
from .store import EventStore, StoredEvent, open_store

__all__ = ["SECRET_ENV", "curl_command", "replay"]

#: The environment variable the printed ``curl`` command reads the secret from.
SECRET_ENV = "MP_NB_CRED_SECRET"

REPLAY_COLUMNS = ["id", "url", "status", "ok", "latency_ms", "error", "response"]


def replay(
    store: EventStore | Any,
    events: int | Iterable[int] | pd.DataFrame | pd.Series | StoredEvent,
    url: str,
    *,
    cred_type: CredType | str | None = None,
    cred_key: str | None = None,
    cred_secret: str | SecretStr | None = None,
    headers: Mapping[str, str] | None = None,
    allow_remote: bool = False,
    timeout: float = 10.0,
) -> pd.DataFrame:
    """POST each stored event to ``url`` with its original body bytes and content type.

    ``store``: an :class:`~mp_nb.store.EventStore`, a receiver (its ``.store``) or a store
    file path. ``events``: an id, ids, or a DataFrame from ``events()`` (its ``id`` column).
    Returns one row per event: ``id``, ``url``, ``status``, ``ok`` (2xx), ``latency_ms``,
    ``error`` (transport failure) and the first 200 characters of the ``response``.
    """
    source = _store(store)
    target = _checked_url(url, allow_remote)
    ids = _ids(events)
    found = {e.id: e for e in source.get(ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ConfigurationError(f"events: no event with id {missing[0]} in {source.path}")
    _same_store(events, found, source)
    kind = _credentials(cred_type, cred_key, cred_secret, secret_given=True)
    auth = credential_header(kind, cred_key, cred_secret) if kind else None
    rows = []
    with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as http:
        for event_id in ids:
            event = found[event_id]
            sent = _headers(event, auth, headers)
            started = time.perf_counter()
            status: int | None = None
            error = text = None
            try:
                response = http.post(target, content=event.body, headers=sent)
                status, text = response.status_code, response.text[:200]
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            rows.append({
                "id": event_id, "url": target, "status": status,
                "ok": status is not None and 200 <= status < 300,
                "latency_ms": (time.perf_counter() - started) * 1000, "error": error,
                "response": text,
            })  # fmt: skip
    frame = pd.DataFrame(rows, columns=REPLAY_COLUMNS)
    frame["status"] = frame["status"].astype("Int64")
    return frame


def curl_command(
    store: EventStore | Any,
    event: int | StoredEvent,
    url: str,
    *,
    cred_type: CredType | str | None = None,
    cred_key: str | None = None,
    cred_secret: Any = None,
    headers: Mapping[str, str] | None = None,
    allow_remote: bool = False,
) -> str:
    """The ``curl`` command that sends one stored event exactly as :func:`replay` would.

    The secret is never printed: the command reads it from ``$MP_NB_CRED_SECRET``
    (``cred_secret`` is accepted so the same keyword arguments work for both functions, and
    ignored). Bodies that are not printable UTF-8 text are piped in through ``printf`` with
    octal escapes, so the bytes sent are still exactly the stored ones.
    """
    kind = _credentials(cred_type, cred_key, None, secret_given=False)
    del cred_secret  # never printed
    source = _store(store)
    target = _checked_url(url, allow_remote)
    stored = event if isinstance(event, StoredEvent) else source.event(int(event))
    parts = ["curl", "-sS", "-X", "POST", shlex.quote(target)]
    content_type = stored.content_type
    parts += ["-H", shlex.quote(f"Content-Type: {content_type}" if content_type else "Content-Type:")]
    for name, value in (headers or {}).items():
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    if kind is not None:
        if kind is CredType.basic:
            parts += ["-u", _double_quoted(f"{cred_key or ''}:") + f'"${SECRET_ENV}"']
        elif cred_key:
            parts += ["-H", _double_quoted(f"{cred_key}: ") + f'"${SECRET_ENV}"']
        else:
            parts += ["-H", f'"Authorization: Bearer ${SECRET_ENV}"']
    text = _printable(stored.body)
    if text is not None:
        return " ".join([*parts, "--data-binary", shlex.quote(text)])
    return f"printf '{_octal(stored.body)}' | " + " ".join([*parts, "--data-binary", "@-"])


# ---------------------------------------------------------------------- helpers


def _store(store: Any) -> EventStore:
    if isinstance(store, EventStore):
        return store
    inner = getattr(store, "store", None)
    if isinstance(inner, EventStore):
        return inner
    if isinstance(store, (str, os.PathLike)):
        return open_store(store)
    raise ConfigurationError(
        f"store: expected an EventStore, a Receiver or a store path, got {type(store).__name__}"
    )


def _checked_url(url: str, allow_remote: bool) -> str:
    parts = split_url(url)
    if not allow_remote and not is_loopback(parts["host"]):
        raise ConfigurationError(
            f"url: {parts['host']} is not a loopback address; replay stays on this machine "
            "unless you pass allow_remote=True"
        )
    return url.strip()


def _credentials(cred_type: Any, cred_key: Any, cred_secret: Any, *,
                 secret_given: bool) -> CredType | None:
    """The credential type to send with, after the rules every sender follows; ``curl``
    commands read the secret from the environment, so none is needed for them."""
    kind = as_cred_type(cred_type)
    secret = as_secret(cred_secret, "cred_secret") if secret_given else None
    if not secret_given and kind is not None:
        secret = SecretStr(f"${SECRET_ENV}")
    problem = credentials_problem(kind.value if kind else None, cred_key or None,
                                  secret.get_secret_value() if secret else None)
    if problem:
        raise ConfigurationError(problem)
    return kind


def _same_store(events: Any, found: dict[int, StoredEvent], source: EventStore) -> None:
    """A DataFrame of another store's events has ids that mean other events here: refuse it
    rather than send the wrong ones (checked by each row's receive time)."""
    if not isinstance(events, pd.DataFrame) or "received_at" not in events.columns:
        return
    for event_id, received in zip(events["id"], events["received_at"], strict=True):
        if found[int(event_id)].received_at != received:
            raise ConfigurationError(
                f"events: row with id {int(event_id)} is not event {int(event_id)} of "
                f"{source.path}; this DataFrame comes from another store: replay it from "
                "that store (or its receiver)")


def _ids(events: Any) -> list[int]:
    if isinstance(events, StoredEvent):
        return [events.id]
    if isinstance(events, pd.DataFrame):
        if "id" not in events.columns:
            raise ConfigurationError("events: the DataFrame has no 'id' column; pass events()")
        events = events["id"]
    if isinstance(events, numbers.Integral) and not isinstance(events, bool):
        return [int(events)]  # numpy integers too, as df["id"].iloc[0] gives
    if isinstance(events, str | bytes) or not isinstance(events, Iterable):
        raise ConfigurationError(
            f"events: give an event id, a list of ids or a DataFrame from events(), got {events!r}")
    ids = list(events)
    if not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in ids):
        raise ConfigurationError("events: every id must be an integer (the id column of events())")
    return [int(i) for i in ids]


def _headers(
    event: StoredEvent, auth: tuple[str, str] | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    sent: dict[str, str] = {}
    if event.content_type:
        sent["Content-Type"] = event.content_type
    sent.update(extra or {})
    if auth is not None:
        sent[auth[0]] = auth[1]
    return sent


def _printable(body: bytes) -> str | None:
    """The body as text when a shell argument can carry it unchanged, else None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 and c not in "\n\t" for c in text) or "\x7f" in text:
        return None
    return text


_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.:;{}[]\"_-+=/")


def _octal(body: bytes) -> str:
    """``body`` as a printf format: plain ASCII kept, every other byte as ``\\NNN``."""
    return "".join(chr(b) if b in _PLAIN else f"\\{b:03o}" for b in body)


def _double_quoted(text: str) -> str:
    """``text`` inside double quotes, escaped so the shell keeps it literally."""
    escaped = "".join("\\" + c if c in '\\"$`' else c for c in text)
    return f'"{escaped}"'
