"""Receiver: the webhook endpoint, running on a background thread inside the kernel.

A request is checked in this order, and the first failure is answered and recorded as a
rejection (``rejections()``) with its reason:

========  ======================================================================
404       wrong path
405       not POST (Matterport only POSTs)
401       missing or wrong credentials (``cred_type`` basic or token)
413       body larger than ``max_body`` (1 MiB by default)
415       a content type or encoding it cannot read
400       JSON content that is not valid JSON, or not a JSON object
========  ======================================================================

Accepted events are acknowledged (200) only after their SQLite transaction has committed, so
an event the sender saw acknowledged survives a killed kernel. Non-JSON bodies that pass
authentication (text, form data, octet streams) are stored raw, not dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import SecretStr

from ._server import ServerThread, is_loopback
from .credentials import (
    CredType,
    check_credentials,
    credential_header_name,
    redact_headers,
)
from .exceptions import ConfigurationError, WaitTimeout
from .store import Delivery, EventStore, Rejection

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1024 * 1024
JSON_TYPES = ("application/json", "text/json")
RAW_TYPES = ("text/", "application/x-www-form-urlencoded", "application/octet-stream")


class Receiver:
    """An HTTP endpoint for Matterport deliveries that stores each one before acknowledging.

    >>> with Receiver(cred_type="basic", cred_key="hook", cred_secret="s3cret") as r:  # doctest: +SKIP
    ...     client.add_callback(r.url, ..., cred_type="basic", cred_key="hook", cred_secret="s3cret")
    ...     r.wait_for(3)
    ...     df = r.events()
    """

    def __init__(
        self,
        path: str = "/webhook",
        *,
        cred_type: CredType | str | None = None,
        cred_key: str | None = None,
        cred_secret: str | SecretStr | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        db: str | os.PathLike[str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        synchronous: str = "NORMAL",
        start: bool = True,
    ) -> None:
        self.path = "/" + path.strip("/") if path.strip("/") else "/"
        self.cred_type = CredType(cred_type) if cred_type is not None else None
        self.cred_key = cred_key or None
        self.cred_secret = SecretStr(cred_secret) if isinstance(cred_secret, str) else cred_secret
        self._validate_credentials()
        if not is_loopback(host) and self.cred_type is None:
            raise ConfigurationError(
                f"host: binding to {host} exposes the receiver beyond this machine; "
                "set cred_type/cred_key/cred_secret so that only Matterport can post"
            )
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"port: {port!r} out of range; use 0 (any free port) to 65535")
        if max_body < 1:
            raise ConfigurationError("max_body: must be at least 1 byte")
        self.max_body = max_body
        if db is None:
            db = Path(tempfile.mkdtemp(prefix="mp_nb_")) / "events.sqlite3"
        self.store = EventStore(db, synchronous=synchronous)
        self._secret_header = credential_header_name(self.cred_type, self.cred_key)
        self._server = ServerThread(self._asgi, host=host, port=port, name="mp-nb-receiver")
        if start:
            self.start()

    def _validate_credentials(self) -> None:
        secret = self.cred_secret.get_secret_value() if self.cred_secret is not None else ""
        if self.cred_type is None:
            if self.cred_key or secret:
                raise ConfigurationError(
                    "cred_type: cred_key/cred_secret given without cred_type; "
                    "use cred_type='basic' or 'token'"
                )
            return
        if not secret:
            raise ConfigurationError(f"cred_secret: cred_type={self.cred_type.value!r} needs one")
        if self.cred_type is CredType.basic and not self.cred_key:
            raise ConfigurationError("cred_key: cred_type='basic' needs the user name")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Receiver:
        """Start serving (idempotent). Re-running on the same port replaces the old receiver."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving, finish pending writes. The store stays readable."""
        self._server.stop()
        self.store.close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server.running

    @property
    def port(self) -> int | None:
        return self._server.port

    @property
    def url(self) -> str:
        """The URL to register as the callback (``http://127.0.0.1:PORT/webhook``)."""
        return self._server.base_url + self.path

    @property
    def db_path(self) -> Path:
        return self.store.path

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        creds = self.cred_type.value if self.cred_type else "no credentials"
        return f"<Receiver {self.url} {state}, {creds}, store={self.store.path}>"

    # ------------------------------------------------------------------ history

    def events(self, *, include_pings: bool = False) -> pd.DataFrame:
        """Every accepted event as a DataFrame (UTC datetimes, categorical type)."""
        return self.store.events(include_pings=include_pings)

    def rejections(self) -> pd.DataFrame:
        """Every refused request with its HTTP status and reason."""
        return self.store.rejections()

    def count(self, types: Iterable[str] | None = None, include_pings: bool = False) -> int:
        return self.store.count(types, include_pings)

    def wait_for(
        self,
        n: int,
        *,
        types: Iterable[str] | str | None = None,
        timeout: float = 30.0,
        include_pings: bool = False,
        progress: bool = False,
    ) -> int:
        """Block until at least ``n`` events (of ``types``) are stored; returns the count.

        Raises :class:`~mp_nb.exceptions.WaitTimeout` naming what did arrive.
        """
        wanted = [types] if isinstance(types, str) else (list(types) if types else None)
        deadline = time.monotonic() + timeout
        bar = _Progress(n) if progress else None
        while True:
            generation = self.store.generation
            have = self.store.count(wanted, include_pings)
            if bar is not None:
                bar.update(have)
            if have >= n:
                return have
            left = deadline - time.monotonic()
            if left <= 0:
                seen = self.store.type_counts(include_pings)
                what = ", ".join(f"{k}={v}" for k, v in seen.items()) or "nothing"
                kinds = f" of type {', '.join(wanted)}" if wanted else ""
                raise WaitTimeout(
                    f"waited {timeout:g} s for {n} events{kinds}, got {have}; "
                    f"stored so far: {what}; rejected requests: {self.store.rejection_count()}"
                )
            self.store.wait_for_commit(generation, min(left, 0.25))

    # ------------------------------------------------------------------ ASGI app

    async def _asgi(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers}
        method = scope["method"]
        client = scope.get("client")
        remote = f"{client[0]}:{client[1]}" if client else None
        query = scope.get("query_string", b"").decode("latin-1")

        def shown_headers() -> dict[str, str]:
            pairs = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers)
            return redact_headers(pairs, [self._secret_header] if self._secret_header else [])

        async def reject(status: int, reason: str, body: bytes = b"", size: int | None = None,
                         extra: list[tuple[bytes, bytes]] | None = None) -> None:
            rejection = Rejection(
                status=status, reason=reason, headers=shown_headers(), method=method,
                remote=remote, path=scope["path"], query=query, body_head=body,
                body_size=size if size is not None else (len(body) if body else None),
            )
            await _committed(self.store.submit_rejection, rejection)
            await _respond(send, status, {"error": reason}, extra)

        if scope["path"] != self.path:
            await reject(404, f"no endpoint at {scope['path']}; deliveries go to {self.path}")
            return
        if method != "POST":
            await reject(405, f"method {method} not allowed; only POST", extra=[(b"allow", b"POST")])
            return
        problem = check_credentials(headers, self.cred_type, self.cred_key, self.cred_secret)
        if problem is not None:
            challenge = b'Basic realm="mp_nb"' if self.cred_type is CredType.basic else b"Bearer"
            await reject(401, problem, extra=[(b"www-authenticate", challenge)])
            return
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await reject(400, f"invalid Content-Length {declared!r}")
                return
            if int(declared) > self.max_body:
                await reject(413, f"body of {declared} bytes is over the {self.max_body}-byte limit",
                             size=int(declared))
                return
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            await reject(415, f"Content-Encoding {encoding!r} not supported; send identity")
            return
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        is_json = ctype in JSON_TYPES or ctype.endswith("+json") or ctype == ""
        if not is_json and not ctype.startswith(RAW_TYPES):
            await reject(415, f"Content-Type {ctype!r} not readable; send application/json")
            return
        body, too_big = await _read_body(receive, self.max_body)
        if too_big:
            await reject(413, f"body over the {self.max_body}-byte limit", body[:256], len(body))
            return
        payload: dict[str, Any] | None = None
        if is_json:
            try:
                parsed = json.loads(body)
            except (UnicodeDecodeError, ValueError) as exc:
                await reject(400, f"invalid JSON: {exc}", body)
                return
            if not isinstance(parsed, dict):
                await reject(400, f"JSON body is a {type(parsed).__name__}, not an object", body)
                return
            payload = parsed
        delivery = Delivery(
            body=body, headers=shown_headers(), remote=remote, path=scope["path"], query=query,
            content_type=headers.get("content-type"), payload=payload,
            auth="verified" if self.cred_type else "none",
        )
        try:
            row_id = await _committed(self.store.submit_event, delivery)
        except Exception as exc:
            log.exception("could not store a delivery")
            await _respond(send, 503, {"error": f"store unavailable: {type(exc).__name__}"})
            return
        await _respond(send, 200, {"ok": True, "id": row_id})


async def _committed(submit: Callable[..., None], item: Any) -> int:
    """Hand ``item`` to the store's writer and await its commit from the event loop."""
    import asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()

    def done(row_id: int | None, error: BaseException | None) -> None:
        loop.call_soon_threadsafe(_settle, future, row_id, error)

    submit(item, done)
    return await future


def _settle(future: Any, row_id: int | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(row_id)


async def _read_body(receive: Callable[..., Any], limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"".join(chunks) + chunk, True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


async def _respond(
    send: Callable[..., Any], status: int, data: dict[str, Any],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    with contextlib.suppress(Exception):
        await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
        await send({"type": "http.response.body", "body": body})


class _Progress:
    """A one-line progress display for wait_for (a text line outside Jupyter)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._handle: Any = None
        self._last = -1
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None and getattr(get_ipython(), "kernel", None) is not None:
                self._handle = display(self._text(0), display_id=True)
        except ImportError:
            pass

    def _text(self, have: int) -> str:
        return f"received {min(have, self.total)}/{self.total} events"

    def update(self, have: int) -> None:
        if have == self._last:
            return
        self._last = have
        if self._handle is not None:
            self._handle.update(self._text(have))

