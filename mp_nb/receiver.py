"""Receiver: the webhook endpoint, running on a background thread inside the kernel.

A request is checked in this order; the first failure is answered and recorded as a
rejection (``rejections()``) with its reason, redacted headers and the first body bytes:

========  ======================================================================
400       bytes that are not HTTP (answered by the protocol layer)
414/431   request target / headers over ``max_header`` bytes (httptools has no limit)
408       request head or body not complete within ``head_timeout``/``body_timeout``
404       wrong path
405       not POST (Matterport only POSTs)
401       missing, duplicated or wrong credentials (``cred_type`` basic or token)
413       body larger than ``max_body`` (1 MiB by default), declared or actual
415       a content type, charset or encoding it cannot read
400       truncated body; JSON that is not UTF-8, not valid, nested too deeply, or not
          an object
========  ======================================================================

Accepted events are acknowledged (200) only after their SQLite transaction has committed, so
an event the sender saw acknowledged survives a killed kernel. Validation, row building and
the commit happen on the server thread (never the kernel's): the deliveries of one event-loop
iteration go into one transaction (group commit), and SQLite releases the GIL while it
writes. Non-JSON bodies that pass authentication (text, form data, octet streams) are
stored raw, not dropped. Handlers registered with :meth:`Receiver.on` run after the commit on
a worker thread of their own, so user code never delays an acknowledgement.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hmac
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

import pandas as pd
from pydantic import SecretStr

from ._server import (
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_MAX_HEAD,
    REFUSED_SCOPE_KEY,
    ProtocolRefusal,
    ServerThread,
    check_port,
    guarded_http_protocol,
    is_loopback,
)
from .credentials import (
    CredType,
    check_credentials,
    credential_header,
    credential_header_name,
    redact_headers,
)
from .exceptions import ConfigurationError, ReceiverError, WaitTimeout
from .models import (
    EventType,
    as_cred_type,
    as_secret,
    credentials_problem,
    host_problem,
    path_problem,
)
from .store import Delivery, EventStore, Rejection, StoredEvent, _is_int, _is_number

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_BODY_TIMEOUT = 10.0
JSON_TYPES = ("application/json", "text/json")
RAW_TYPES = (
    "text/", "application/x-www-form-urlencoded", "application/octet-stream", "application/xml",
)  # fmt: skip
UTF8_NAMES = ("utf-8", "utf8")
#: Seconds to wait for the body of a request that is refused anyway (kept for the record).
REJECTED_BODY_WAIT = 1.0

Handler = Callable[[StoredEvent], Any]


class Receiver:
    """An HTTP endpoint for Matterport deliveries that stores each one before acknowledging.

    >>> with Receiver(cred_type="basic", cred_key="hook", cred_secret="s3cret") as r:  # doctest: +SKIP
    ...     client.add_callback(r.url, ..., cred_type="basic", cred_key="hook", cred_secret="s3cret")
    ...     r.wait_for(3)
    ...     df = r.events()

    Limits: ``max_body`` (bytes), ``max_header`` (bytes of request target + headers),
    ``head_timeout`` / ``body_timeout`` (seconds a sender may take to send the request head /
    body). ``synchronous`` is ``"NORMAL"`` (survives a killed process) or ``"FULL"`` (also a
    power cut); ``max_age`` / ``max_rows`` bound the stored history.
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
        max_header: int = DEFAULT_MAX_HEAD,
        head_timeout: float = DEFAULT_HEAD_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        synchronous: str = "NORMAL",
        max_age: float | None = None,
        max_rows: int | None = None,
        start: bool = True,
    ) -> None:
        if not isinstance(path, str):
            raise ConfigurationError(f"path: give the URL path to listen on, like '/webhook', "
                                     f"got {path!r}")
        problem = path_problem(path)
        if problem:
            raise ConfigurationError(f"path: {problem}")
        self.path = "/" + path.strip("/") if path.strip("/") else "/"
        self._decoded_path = unquote(self.path)  # what the server hands over (%20 -> " ")
        secret = as_secret(cred_secret, "cred_secret")
        kind = as_cred_type(cred_type)
        if cred_key is not None and not isinstance(cred_key, str):
            raise ConfigurationError(f"cred_key: must be a string, got {type(cred_key).__name__}")
        problem = credentials_problem(
            kind.value if kind else None,
            cred_key or None,
            secret.get_secret_value() if secret is not None else None,
        )
        if problem:
            raise ConfigurationError(problem)
        self.cred_type = kind
        self.cred_key = cred_key or None
        self.cred_secret = secret
        problem = host_problem(host) if isinstance(host, str) else "host: give an address"
        if problem:
            raise ConfigurationError(f"host: {problem} (the address to listen on, e.g. 127.0.0.1)")
        if not is_loopback(host) and self.cred_type is None:
            raise ConfigurationError(
                f"host: binding to {host} exposes the receiver beyond this machine; "
                "set cred_type/cred_key/cred_secret so that only Matterport can post"
            )
        check_port(port)
        for name, value, least in (("max_body", max_body, 1), ("max_header", max_header, 256)):
            if not (_is_int(value) and value >= least):
                raise ConfigurationError(f"{name}: must be a number of bytes, at least {least}; "
                                         f"got {value!r}")
        for name, value in (("head_timeout", head_timeout), ("body_timeout", body_timeout)):
            if not (_is_number(value) and value > 0):
                raise ConfigurationError(f"{name}: must be a positive number of seconds, got {value!r}")
        self.max_body = max_body
        self.max_header = max_header
        self.head_timeout = float(head_timeout)
        self.body_timeout = float(body_timeout)
        if db is None:
            db = Path(tempfile.mkdtemp(prefix="mp_nb_")) / "events.sqlite3"
        self.store = EventStore(db, synchronous=synchronous, max_age=max_age, max_rows=max_rows)
        self._secret_header = credential_header_name(self.cred_type, self.cred_key)
        expected = credential_header(self.cred_type, self.cred_key, self.cred_secret)
        self._expected = expected[1].encode("latin-1", "replace") if expected else None
        protocol = guarded_http_protocol(
            max_head_bytes=max_header, head_timeout=self.head_timeout, on_refuse=self._refused
        )
        self._handlers = _Dispatcher(self.store)
        self._commits: _LoopCommits | None = None
        self._server = ServerThread(
            self._asgi, host=host, port=port, name="mp-nb-receiver", http=protocol,
            on_stop=self._finish,
        )  # on_stop also runs at interpreter exit and when a re-run cell takes the port
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Receiver:
        """Start serving (idempotent). Re-running on the same port replaces the old receiver."""
        self.store.start_writer()
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving, finish pending writes and handlers. The store stays readable."""
        self._server.stop()
        self._finish()

    def _finish(self) -> None:
        commits, self._commits = self._commits, None
        if commits is not None:
            commits.close()
        self.store.close()
        self._handlers.stop()

    def _loop_commits(self) -> _LoopCommits:
        """The group commit of the event loop serving right now (a new one per start)."""
        loop = asyncio.get_running_loop()
        commits = self._commits
        if commits is None or commits.loop is not loop:
            if commits is not None:
                commits.close()
            commits = self._commits = _LoopCommits(self.store, loop)
        return commits

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

    def events(self, *, include_pings: bool = False, **filters: Any) -> pd.DataFrame:
        """Accepted events as a DataFrame; filters as :meth:`EventStore.events`
        (``types``, ``model_id``, ``since``, ``until``, ``by``)."""
        return self.store.events(include_pings=include_pings, **filters)

    def rejections(self) -> pd.DataFrame:
        """Every refused request with its HTTP status and reason."""
        return self.store.rejections()

    def models(self) -> pd.DataFrame:
        """One row per model with its latest known state (see :meth:`EventStore.models`)."""
        return self.store.models()

    def timeline(self, model_id: str) -> pd.DataFrame:
        """One model's events in event-time order (see :meth:`EventStore.timeline`)."""
        return self.store.timeline(model_id)

    def export(self, path: str | os.PathLike[str], **options: Any) -> Path:
        """Write the events to Parquet, CSV or JSON lines (see :meth:`EventStore.export`)."""
        return self.store.export(path, **options)

    def count(self, types: Iterable[str] | None = None, include_pings: bool = False) -> int:
        return self.store.count(types, include_pings)

    def replay(self, events: Any, url: str, **options: Any) -> pd.DataFrame:
        """Send stored events again to ``url`` (see :func:`mp_nb.replay.replay`)."""
        from .replay import replay

        return replay(self.store, events, url, **options)

    def wait_for(
        self,
        n: int,
        *,
        types: Iterable[str] | str | None = None,
        timeout: float = 30.0,
        include_pings: bool = False,
        progress: bool | None = None,
    ) -> int:
        """Block until at least ``n`` events (of ``types``) are stored; returns the count.

        In a notebook a progress line is shown (``progress=None`` = only there). Raises
        :class:`~mp_nb.exceptions.WaitTimeout` naming what did arrive.
        """
        if not _is_int(n) or n < 0:
            raise ConfigurationError(f"n: must be a count of events (0 or more), got {n!r}")
        if not (_is_number(timeout) and timeout >= 0):
            raise ConfigurationError(f"timeout: must be a number of seconds (0 or more), got {timeout!r}")
        wanted = [types] if isinstance(types, str) else (list(types) if types else None)
        unknown = [t for t in wanted or [] if t not in EventType.__members__]
        if unknown:
            raise ConfigurationError(
                f"types: {', '.join(map(repr, unknown))} not a Matterport event type; known types: "
                + ", ".join(EventType.__members__))
        deadline = time.monotonic() + timeout
        bar = _Progress(n) if (progress or (progress is None and _in_kernel())) else None
        seen_to = self.store.max_id()
        have = self.store.count(wanted, include_pings, up_to_id=seen_to)
        while True:
            if bar is not None:
                bar.update(have)
            if have >= n:
                return have
            left = deadline - time.monotonic()
            if left > 0 and not self.running:
                raise self._stopped(f"{have} of {n} events arrived")
            if left <= 0:
                seen = self.store.type_counts(include_pings)
                what = ", ".join(f"{k}={v}" for k, v in seen.items()) or "nothing"
                kinds = f" of type {', '.join(wanted)}" if wanted else ""
                raise WaitTimeout(
                    f"waited {timeout:g} s for {n} events{kinds}, got {have}; "
                    f"stored so far: {what}; rejected requests: {self.store.rejection_count()}"
                )
            generation = self.store.generation
            top = self.store.max_id()
            if top > seen_to:  # count only the rows that are new since the last look
                have += self.store.count(wanted, include_pings, after_id=seen_to, up_to_id=top)
                seen_to = top
                continue
            self.store.wait_for_commit(generation, min(left, 0.25))

    def _stopped(self, what: str) -> ReceiverError:
        """Why a wait ends early: nothing more can arrive at a stopped receiver."""
        return ReceiverError(f"receiver {self.url} is stopped: {what}; start it again with "
                             "receiver.start()")

    # ------------------------------------------------------------------ handlers

    def on(self, event_type: str, fn: Handler, *, duplicates: bool = False) -> Handler:
        """Run ``fn(event)`` for each stored event of ``event_type`` (``"*"`` = every event).

        ``event`` is a :class:`~mp_nb.store.StoredEvent` (``.id``, ``.type``, ``.model_id``,
        ``.payload``, ``.event`` typed model, ``.body`` exact bytes). Handlers run after the
        commit, in arrival order, on one worker thread: they never delay an acknowledgement.
        A handler that raises is recorded (:meth:`handler_errors`); the others still run.
        Redeliveries (``duplicate``) are skipped unless ``duplicates=True``; pings always.
        Returns ``fn``.
        """
        if not callable(fn):
            raise ConfigurationError("fn: give a function taking one StoredEvent")
        if not isinstance(event_type, str) or not event_type:
            raise ConfigurationError("event_type: give an event type name, or '*' for all")
        if (event_type != "*" and event_type not in EventType.__members__
                and not self.store.count([event_type], include_pings=True)):
            raise ConfigurationError(
                f"event_type: {event_type!r} is neither a Matterport event type nor a type in "
                "this store; known types: " + ", ".join(EventType.__members__) + ", or '*'")
        self._handlers.add(event_type, fn, duplicates=duplicates)
        return fn

    def handler_errors(self) -> pd.DataFrame:
        """The exceptions handlers raised (the last 1,000): when, event id/type/model, handler
        name, error and traceback."""
        return self._handlers.errors()

    def when_ready(self, fn: Callable[[str], Any], *, existing: bool = False) -> Callable[[str], Any]:
        """Call ``fn(model_id)`` once per model as soon as it is both processed (success) and
        active (v2 ``activation_state_changed`` with ``current.state == "active"``), which is
        when Matterport advises acting on a model. Needs a v2 callback subscribed to
        ``processed`` and ``activation_state_changed``. ``existing=True`` also calls it for
        models already ready in the stored history.
        """
        if not callable(fn):
            raise ConfigurationError("fn: give a function taking the model id")
        fired: set[str] = set()
        lock = threading.Lock()

        def check(event: StoredEvent) -> None:
            model_id = event.model_id
            if model_id is None or model_id in fired:
                return
            if self.store.model_state(model_id)["ready"]:
                with lock:
                    if model_id in fired:
                        return
                    fired.add(model_id)
                fn(model_id)

        check.__qualname__ = getattr(fn, "__qualname__", repr(fn))
        if existing:
            models = self.store.models()
            for model_id in models.loc[models["ready"], "model_id"]:
                fired.add(str(model_id))
                self._handlers.call(fn, str(model_id))
        for etype in ("processed", "activation_state_changed"):
            self._handlers.add(etype, check, duplicates=False)
        return fn

    def wait_until_ready(self, model_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Block until ``model_id`` is processed and active; returns its state (a dict).

        Raises :class:`~mp_nb.exceptions.WaitTimeout` saying what is still missing.
        """
        if not (_is_number(timeout) and timeout >= 0):
            raise ConfigurationError(f"timeout: must be a number of seconds (0 or more), got {timeout!r}")
        deadline = time.monotonic() + timeout
        while True:
            generation = self.store.generation
            state = self.store.model_state(model_id)
            if state["ready"]:
                return state
            left = deadline - time.monotonic()
            if left > 0 and not self.running:
                raise self._stopped(f"model {model_id} is not ready yet")
            if left <= 0:
                raise WaitTimeout(
                    f"model {model_id} not ready after {timeout:g} s: {state['events']} events, "
                    f"processed={state['processed']}, activation_state={state['activation_state']}"
                    f", deleted={state['deleted']}; ready needs a successful processed event and "
                    "activation_state_changed to active (v2 callbacks)"
                )
            self.store.wait_for_commit(generation, min(left, 0.25))

    # ------------------------------------------------------------------ requests

    def _shown_headers(self, pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
        return redact_headers(pairs, [self._secret_header] if self._secret_header else [])

    def _refused(self, refusal: ProtocolRefusal, answer: Callable[[], None]) -> None:
        """A request the protocol layer refused: record it, then let it be answered."""
        path, _, query = refusal.target.partition("?")
        client = refusal.client
        rejection = Rejection(
            status=refusal.status, reason=refusal.reason, headers=self._shown_headers(
                refusal.headers), method=refusal.method,
            remote=f"{client[0]}:{client[1]}" if client else None, path=path, query=query,
        )  # fmt: skip
        self.store.submit_rejection(rejection, lambda _id, _err: answer())

    async def _asgi(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        await _Request(self, scope, receive, send).handle()


class _Request:
    """One HTTP request through the receiver's checks (see the module docstring)."""

    __slots__ = ("headers", "method", "pairs", "raw_headers", "receive", "receiver", "remote",
                 "scope", "send")  # fmt: skip

    def __init__(
        self, receiver: Receiver, scope: dict[str, Any], receive: Callable[..., Any],
        send: Callable[..., Any],
    ) -> None:  # fmt: skip
        self.receiver = receiver
        self.scope = scope
        self.receive = receive
        self.send = send
        self.raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        self.pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers]
        self.headers = dict(self.pairs)
        self.method: str = scope["method"]
        client = scope.get("client")
        self.remote = f"{client[0]}:{client[1]}" if client else None

    def shown_headers(self) -> dict[str, str]:
        return self.receiver._shown_headers(self.pairs)

    @property
    def query(self) -> str:
        return self.scope.get("query_string", b"").decode("latin-1")

    async def reject(
        self, status: int, reason: str, body: bytes | None = None, size: int | None = None,
        extra: list[tuple[bytes, bytes]] | None = None, answer: bool = True,
    ) -> None:  # fmt: skip
        """Record the refusal (waiting for its commit), then answer it."""
        if body is None:
            body, size = await self.body_for_the_record(size)
        rejection = Rejection(
            status=status, reason=reason, headers=self.shown_headers(), method=self.method,
            remote=self.remote, path=self.scope["path"], query=self.query, body_head=body,
            body_size=size if size is not None else len(body),
        )
        await _committed(self.receiver.store.submit_rejection, rejection)
        if answer:
            await _respond(self.send, status, {"error": reason}, extra)

    async def body_for_the_record(self, declared: int | None) -> tuple[bytes, int | None]:
        """The body of a request refused before reading it, for the rejection record; skipped
        when the sender waits for ``100 Continue`` or declared more than ``max_body``."""
        if self.headers.get("expect", "").lower() == "100-continue":
            return b"", declared
        if declared is not None and declared > self.receiver.max_body:
            return b"", declared
        body, problem, _ = await _read_body(
            self.receive, self.receiver.max_body, min(self.receiver.body_timeout, REJECTED_BODY_WAIT)
        )
        return body, (declared if problem else len(body))

    async def handle(self) -> None:
        r = self.receiver
        path = self.scope["path"]
        if path != r._decoded_path:
            await self.reject(404, f"no endpoint at {path}; deliveries go to {r.path}")
            return
        if self.method != "POST":
            await self.reject(405, f"method {self.method} not allowed; only POST",
                              extra=[(b"allow", b"POST")])  # fmt: skip
            return
        declared_text = self.headers.get("content-length")
        declared = int(declared_text) if declared_text and declared_text.isdigit() else None
        problem = self.check_credentials()
        if problem is not None:
            challenge = b'Basic realm="mp_nb"' if r.cred_type is CredType.basic else b"Bearer"
            await self.reject(401, problem, size=declared,
                              extra=[(b"www-authenticate", challenge)])  # fmt: skip
            return
        if declared is not None and declared > r.max_body:
            await self.reject(413, f"body of {declared} bytes is over the {r.max_body}-byte limit",
                              size=declared, extra=[(b"connection", b"close")])  # fmt: skip
            return
        problem, is_json = self.check_content_type()
        if problem is not None:
            await self.reject(415, problem, size=declared)
            return
        body, problem, detail = await _read_body(self.receive, r.max_body, r.body_timeout)
        if problem == "too big":
            await self.reject(413, f"body over the {r.max_body}-byte limit", body,
                              detail, extra=[(b"connection", b"close")])  # fmt: skip
            return
        if problem == "slow":
            await self.reject(408, f"body not complete within {r.body_timeout:g} s "
                              f"({len(body)} bytes arrived)", body, declared,
                              extra=[(b"connection", b"close")])  # fmt: skip
            return
        if problem == "closed":
            if REFUSED_SCOPE_KEY in self.scope:  # bad bytes mid-body: the protocol answered
                return
            of = f" of {declared}" if declared is not None else ""
            await self.reject(400, f"truncated body: connection closed after {len(body)}{of} "
                              "bytes", body, declared, answer=False)  # fmt: skip
            return
        payload: dict[str, Any] | None = None
        if is_json:
            parsed, problem = _parse_json(body)
            if problem is not None:
                await self.reject(400, problem, body)
                return
            payload = parsed
        delivery = Delivery(
            body=body, headers=self.shown_headers(), remote=self.remote, path=path,
            query=self.query, content_type=self.headers.get("content-type"), payload=payload,
            auth="verified" if r.cred_type else "none",
        )
        try:
            row_id = await r._loop_commits().add(delivery)
        except Exception as exc:
            log.warning("could not store a delivery: %s", exc)
            await _respond(self.send, 503, {"error": f"store unavailable: {type(exc).__name__}"})
            return
        body = b'{"ok": true, "id": %d}' % row_id
        with contextlib.suppress(Exception):
            await self.send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
            await self.send({"type": "http.response.body", "body": body})

    def check_credentials(self) -> str | None:
        r = self.receiver
        if r.cred_type is None:
            return None
        name = r._secret_header or "authorization"
        if sum(1 for k, _ in self.pairs if k == name) > 1:
            return f"more than one {name} header"
        got = self.headers.get(name)
        if got is not None and r._expected is not None and hmac.compare_digest(
            got.encode("latin-1"), r._expected
        ):
            return None  # exactly the header Matterport sends: no need to decode it
        return check_credentials(self.headers, r.cred_type, r.cred_key, r.cred_secret)

    def check_content_type(self) -> tuple[str | None, bool]:
        """(why the body cannot be read, or None; whether it is to be parsed as JSON)."""
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return f"Content-Encoding {encoding!r} not supported; send identity", False
        ctype, _, params = self.headers.get("content-type", "").partition(";")
        ctype = ctype.strip().lower()
        is_json = ctype in JSON_TYPES or ctype.endswith("+json") or ctype == ""
        if not is_json and not ctype.startswith(RAW_TYPES):
            return f"Content-Type {ctype!r} not readable; send application/json", False
        for param in params.split(";"):
            key, _, value = param.partition("=")
            charset = value.strip().strip('"').lower()
            if key.strip().lower() == "charset" and is_json and charset not in UTF8_NAMES:
                return f"charset {charset!r} not supported for JSON; send UTF-8", False
        return None, is_json


def _parse_json(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in ``body``, or why there is none (strict UTF-8 and RFC 8259 JSON)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"body is not UTF-8: {exc.reason} at byte {exc.start}"
    try:
        parsed = _DECODER.decode(text)
    except RecursionError:
        return None, "invalid JSON: nested too deeply"
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}"
    except ValueError as exc:  # int() over Python's digit limit, or a NaN/Infinity constant
        if "digits" in str(exc):
            limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
            return None, f"invalid JSON: a number with more than {limit} digits"
        return None, f"invalid JSON: {exc}"
    if not isinstance(parsed, dict):
        return None, f"JSON body is a {type(parsed).__name__}, not an object"
    return parsed, None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: One strict decoder for every request (``json.loads`` with options builds a new one).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


async def _read_body(
    receive: Callable[..., Any], limit: int, timeout: float
) -> tuple[bytes, str | None, int | None]:
    """(body, problem, size): problem is None, ``"too big"``, ``"slow"`` or ``"closed"``."""
    chunks: list[bytes] = []
    size = 0
    task = asyncio.current_task()
    deadlines = _Deadlines.of(asyncio.get_running_loop())
    deadlines.add(task, timeout)
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks), "closed", size
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return (b"".join(chunks) + chunk)[:limit], "too big", size
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None, size
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        return b"".join(chunks), "slow", size
    finally:
        deadlines.remove(task)


class _Deadlines:
    """Body-read deadlines of one event loop, enforced by one periodic sweep (a tenth of the
    shortest timeout, at most 0.1 s) instead of a timer per request: an overdue read is
    cancelled and reported as slow."""

    _by_loop: ClassVar[dict[asyncio.AbstractEventLoop, _Deadlines]] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[Any, float] = {}
        self.overdue: set[Any] = set()
        self.period = 0.1
        self.handle: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Deadlines:
        found = cls._by_loop.get(loop)
        if found is None:
            for old in [k for k in cls._by_loop if k.is_closed()]:
                del cls._by_loop[old]
            found = cls._by_loop[loop] = cls(loop)
        return found

    def add(self, task: Any, timeout: float) -> None:
        self.waiting[task] = self.loop.time() + timeout
        self.period = min(self.period, timeout / 10)
        if self.handle is None:
            self.handle = self.loop.call_later(self.period, self.sweep)

    def remove(self, task: Any) -> None:
        self.waiting.pop(task, None)
        self.overdue.discard(task)

    def expired(self, task: Any) -> bool:
        """True if ``task`` was cancelled by the sweep; undoes that cancellation."""
        if task not in self.overdue:
            return False
        self.overdue.discard(task)
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        return True

    def sweep(self) -> None:
        now = self.loop.time()
        for task, deadline in list(self.waiting.items()):
            if deadline <= now:
                del self.waiting[task]
                self.overdue.add(task)
                task.cancel()
        self.handle = self.loop.call_later(self.period, self.sweep) if self.waiting else None


class _LoopCommits:
    """Group commit on the server's event loop: the deliveries of one loop iteration are
    committed in one transaction right after it, on the loop's thread, and each request is
    answered after that commit. Nothing crosses to another thread on the way, which is what
    keeps the acknowledgement fast (SQLite releases the GIL while it writes)."""

    def __init__(self, store: EventStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.items: list[Any] = []
        self.conn: Any = None

    def add(self, delivery: Delivery) -> asyncio.Future[int]:
        future: asyncio.Future[int] = self.loop.create_future()
        item = self.store.event_item(delivery, functools.partial(_settle, future))
        if not self.items:
            self.loop.call_soon(self.flush)
        self.items.append(item)
        return future

    def flush(self) -> None:
        items, self.items = self.items, []
        try:
            if self.conn is None:
                self.conn = self.store.writer_connection()
            self.store.commit_here(self.conn, items)
        except Exception as exc:  # the store itself failed: every request hears of it
            for _kind, _row, done in items:
                done(None, exc)

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _settle(future: asyncio.Future[int], row_id: int | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(row_id)  # type: ignore[arg-type]


class _Acks:
    """Commit notifications for one event loop, delivered in one wake-up per writer batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.pending: list[tuple[asyncio.Future[int], int | None, BaseException | None]] = []

    def done(self, future: asyncio.Future[int]) -> Callable[[int | None, BaseException | None], None]:
        def settle(row_id: int | None, error: BaseException | None) -> None:
            with self.lock:
                self.pending.append((future, row_id, error))
                first = len(self.pending) == 1
            if first:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    self.loop.call_soon_threadsafe(self.flush)

        return settle

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
        for future, row_id, error in pending:
            _settle(future, row_id, error)


_acks: dict[asyncio.AbstractEventLoop, _Acks] = {}


async def _committed(submit: Callable[..., None], item: Any) -> int:
    """Hand ``item`` to the store's writer and await its commit from the event loop."""
    loop = asyncio.get_running_loop()
    acks = _acks.get(loop)
    if acks is None:
        for old in [k for k in _acks if k.is_closed()]:
            del _acks[old]
        acks = _acks[loop] = _Acks(loop)
    future: asyncio.Future[int] = loop.create_future()
    submit(item, acks.done(future))
    return await future


async def _respond(
    send: Callable[..., Any], status: int, data: dict[str, Any],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:  # fmt: skip
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    with contextlib.suppress(Exception):
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + (extra or [])})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------- handlers


@dataclass
class _Registration:
    event_type: str
    fn: Callable[..., Any]
    duplicates: bool

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", None) or repr(self.fn)


#: Handler failures kept for :meth:`Receiver.handler_errors` (the oldest are dropped).
MAX_HANDLER_ERRORS = 1000


class _Dispatcher:
    """Runs handlers on one worker thread, fed by the store's commit listener."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.handlers: list[_Registration] = []
        self.queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self._errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_HANDLER_ERRORS)
        self.listening = False

    def add(self, event_type: str, fn: Callable[..., Any], *, duplicates: bool) -> None:
        with self.lock:
            self.handlers.append(_Registration(event_type, fn, duplicates))
            if not self.listening:
                self.store.on_commit(self._committed)
                self.listening = True
        self._ensure_thread()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the worker thread (errors recorded like a handler's)."""
        self._ensure_thread()
        self.queue.put(("call", (fn, args)))

    def _committed(self, ids: list[int]) -> None:
        self.queue.put(("ids", ids))
        if self.thread is None or not self.thread.is_alive():  # stopped, then started again
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="mp-nb-handlers", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            kind, value = item
            if kind == "call":
                fn, args = value
                self._guarded(fn, args, None)
                continue
            for event in self.store.get(value):
                if event.ping:
                    continue
                for reg in list(self.handlers):
                    if reg.event_type not in ("*", event.type):
                        continue
                    if event.duplicate and not reg.duplicates:
                        continue
                    self._guarded(reg.fn, (event,), event)

    def _guarded(self, fn: Callable[..., Any], args: tuple[Any, ...], event: StoredEvent | None) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the worker goes on
            name = getattr(fn, "__qualname__", None) or repr(fn)
            log.warning("handler %s failed on event %s: %s", name, event and event.id, exc)
            with self.lock:
                self._errors.append({
                    "at": pd.Timestamp.now(tz="UTC"),
                    "event_id": event.id if event else None,
                    "event_type": event.type if event else None,
                    "model_id": event.model_id if event else (args[0] if args else None),
                    "handler": name,
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": "".join(traceback.format_exception(exc)),
                })  # fmt: skip

    def errors(self) -> pd.DataFrame:
        with self.lock:
            rows = list(self._errors)
        columns = ["at", "event_id", "event_type", "model_id", "handler", "error", "traceback"]
        frame = pd.DataFrame(rows, columns=columns)
        frame["event_id"] = frame["event_id"].astype("Int64")
        for col in ("event_type", "model_id", "handler", "error", "traceback"):
            frame[col] = frame[col].astype(pd.StringDtype())
        frame["at"] = pd.to_datetime(frame["at"], utc=True).astype("datetime64[ns, UTC]")
        return frame

    def stop(self, timeout: float = 5.0) -> None:
        """Let queued handlers finish (up to ``timeout``), then end the worker."""
        with self.lock:
            thread = self.thread
        if thread is not None and thread.is_alive():
            self.queue.put(None)
            thread.join(timeout)


# ---------------------------------------------------------------------- notebook progress


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _Progress:
    """A one-line progress display for wait_for, updated in place in a notebook."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._handle: Any = None
        self._last = -1
        if _in_kernel():
            from IPython.display import display

            self._handle = display(self._text(0), display_id=True)

    def _text(self, have: int) -> str:
        return f"received {min(have, self.total)}/{self.total} events"

    def update(self, have: int) -> None:
        if have == self._last:
            return
        self._last = have
        if self._handle is not None:
            self._handle.update(self._text(have))
