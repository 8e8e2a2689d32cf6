"""Delivering events like a webhook platform: per-callback queues, retries, an attempt log.

Each callback gets its own FIFO queue and worker thread, so one slow endpoint never delays
another and a callback sees its events in order. A delivery is retried on a non-2xx answer,
a timeout or a refused connection, with exponential backoff
(``backoff * backoff_factor ** (attempt - 2)`` before attempt 2, 3, …), up to
``max_attempts``. Every attempt is logged (status, latency, error) and readable as a
DataFrame or as JSON rows (the local Model API serves them at ``/_local/attempts``).

Workers use a shared synchronous ``httpx.Client``: on loopback it sends a delivery in about
half the time of the asyncio client, which matters when a generated history pushes
thousands of events through one callback. A worker that has been idle for a while exits;
the next delivery for its callback starts a new one.

By default only loopback hosts are delivered to: a delivery elsewhere is refused at once,
logged with the reason, and never leaves the machine.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import pandas as pd

from .._server import is_loopback
from ..credentials import credential_header
from ..events import PING_MODEL_ID
from ..models import RESERVED_HEADERS
from .registry import StoredCallback

log = logging.getLogger(__name__)

USER_AGENT = "mp_nb-local-model-api"
#: Where the local Model API serves the attempt log as JSON (GET, same auth as the API).
ATTEMPTS_PATH = "/_local/attempts"
#: The attempt log keeps this many most recent attempts (a long-running server stays bounded).
MAX_LOGGED_ATTEMPTS = 100_000
#: Seconds a callback's worker thread waits for new work before it exits.
WORKER_IDLE_S = 30.0
#: HTTP status of the attempt log for a delivery the policy refused (never sent).
REFUSED = -1


@dataclass
class Attempt:
    """One HTTP attempt at delivering one event to one callback."""

    delivery_id: int  # the same for every attempt at one event to one callback
    attempt: int  # 1, 2, … within the delivery
    callback_id: str
    event_type: str
    model_id: str | None
    ping: bool  # a test event from pingModelEventWebhookCallback (one attempt, no retries)
    url: str
    at: datetime  # when the attempt started (UTC)
    delay_s: float  # backoff waited before this attempt (0 for the first)
    status: int | None  # HTTP status; None when no answer (timeout, refused connection)
    latency_ms: float | None  # time to the answer or the error; None if never sent
    outcome: str  # delivered | retrying | failed | refused
    error: str | None  # why it was not a 2xx


ATTEMPT_COLUMNS: tuple[str, ...] = tuple(Attempt.__dataclass_fields__)


@dataclass(frozen=True)
class RetryPolicy:
    """How deliveries are retried. Fast defaults for notebooks: 4 attempts, 0.05, 0.1, 0.2 s apart.

    ``timeout`` (seconds) bounds each attempt; a timeout counts as a failed attempt.
    """

    max_attempts: int = 4
    backoff: float = 0.05
    backoff_factor: float = 2.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        from ..exceptions import ConfigurationError

        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigurationError("max_attempts: must be an integer >= 1 (1 = no retries)")
        if self.backoff < 0 or self.backoff_factor < 1:
            raise ConfigurationError("backoff must be >= 0 and backoff_factor >= 1")
        if not self.timeout > 0:
            raise ConfigurationError("timeout: must be > 0 seconds")

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (1-based): 0, backoff, backoff*factor, …"""
        return 0.0 if attempt <= 1 else self.backoff * self.backoff_factor ** (attempt - 2)


_Item = tuple[int, bytes, str, "str | None", StoredCallback, "concurrent.futures.Future[bool]"]


class Deliverer:
    """Per-callback worker threads sharing one HTTP client; thread-safe ``enqueue``."""

    def __init__(self, policy: RetryPolicy | None = None, *, allow_remote: bool = False) -> None:
        self.policy = policy or RetryPolicy()
        self.allow_remote = allow_remote
        self._attempts: collections.deque[Attempt] = collections.deque(maxlen=MAX_LOGGED_ATTEMPTS)
        self._attempts_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._queues: dict[str, queue.SimpleQueue[_Item | None]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._pending: set[concurrent.futures.Future[bool]] = set()
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._lock:
            if self._client is None:
                self._stopping.clear()
                self._client = httpx.Client(
                    timeout=self.policy.timeout, trust_env=False, follow_redirects=False,
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                    headers={"User-Agent": USER_AGENT},
                )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every worker (queued deliveries are cancelled) and close the HTTP client."""
        self._stopping.set()
        with self._lock:
            workers = list(self._workers.values())
            for q in self._queues.values():
                q.put(None)
            self._queues.clear()
            self._workers.clear()
            client, self._client = self._client, None
            pending = list(self._pending)
            self._pending.clear()
        deadline = time.monotonic() + timeout
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))
        for fut in pending:
            fut.cancel()
        if client is not None:
            client.close()

    # ------------------------------------------------------------------ public API

    def enqueue(
        self, callback: StoredCallback, body: bytes, event_type: str, model_id: str | None
    ) -> concurrent.futures.Future[bool]:
        """Queue one delivery; the future resolves to True once delivered, False if given up."""
        self.start()
        result: concurrent.futures.Future[bool] = concurrent.futures.Future()
        item: _Item = (next(self._ids), body, event_type, model_id, callback, result)
        with self._lock:
            self._pending.add(result)
            q = self._queues.get(callback.id)
            if q is None:
                q = self._queues[callback.id] = queue.SimpleQueue()
                worker = threading.Thread(target=self._work, args=(callback.id, q), daemon=True,
                                          name=f"mp-nb-delivery:{callback.id[:8]}")
                self._workers[callback.id] = worker
                worker.start()
            q.put(item)
        result.add_done_callback(self._forget)
        return result

    def ping_now(self, callback: StoredCallback, body: bytes, event_type: str) -> bool:
        """One attempt, no retries, outside the callback's queue; True on a 2xx answer."""
        self.start()
        status = self._attempt(next(self._ids), 1, 0.0, callback, body, event_type,
                               PING_MODEL_ID, final=True, ping=True)
        return status is not None and 200 <= status < 300

    async def ping(self, callback: StoredCallback, body: bytes, event_type: str) -> bool:
        """:meth:`ping_now` from an event loop, without blocking it."""
        return await asyncio.to_thread(self.ping_now, callback, body, event_type)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued delivery has been delivered or given up."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [f for f in self._pending if not f.done()]
            if not pending:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            concurrent.futures.wait(pending, timeout=left)

    def attempts(self) -> list[Attempt]:
        with self._attempts_lock:
            return list(self._attempts)

    def attempt_rows(self) -> list[dict[str, Any]]:
        """The attempt log as JSON-ready dicts (times as ISO 8601 UTC)."""
        rows = []
        for a in self.attempts():
            row = asdict(a)
            row["at"] = a.at.isoformat(timespec="microseconds").replace("+00:00", "Z")
            rows.append(row)
        return rows

    def attempts_frame(self) -> pd.DataFrame:
        """The attempt log as a DataFrame (one row per HTTP attempt)."""
        return attempts_frame(asdict(a) for a in self.attempts())

    # ------------------------------------------------------------------ internals

    def _forget(self, fut: concurrent.futures.Future[bool]) -> None:
        with self._lock:
            self._pending.discard(fut)

    def _work(self, callback_id: str, q: queue.SimpleQueue[_Item | None]) -> None:
        while True:
            try:
                item = q.get(timeout=WORKER_IDLE_S)
            except queue.Empty:
                with self._lock:  # exit only if nothing was queued meanwhile
                    if q.empty() and self._queues.get(callback_id) is q:
                        del self._queues[callback_id]
                        del self._workers[callback_id]
                        return
                continue
            if item is None or self._stopping.is_set():
                return
            delivered = False
            try:
                delivered = self._deliver(item)
            except Exception:  # never let a worker die
                log.exception("delivery %s failed unexpectedly", item[0])
            try:
                item[5].set_result(delivered)
            except concurrent.futures.InvalidStateError:  # cancelled by stop()
                pass

    def _deliver(self, item: _Item) -> bool:
        delivery_id, body, event_type, model_id, callback, _ = item
        for attempt in range(1, self.policy.max_attempts + 1):
            delay = self.policy.delay_before(attempt)
            if delay and self._stopping.wait(delay):
                return False
            final = attempt == self.policy.max_attempts
            status = self._attempt(delivery_id, attempt, delay, callback, body, event_type,
                                   model_id, final)
            if status is not None and 200 <= status < 300:
                return True
            if status == REFUSED:  # refused by policy: retrying cannot help
                return False
        return False

    def _attempt(
        self, delivery_id: int, attempt: int, delay: float, callback: StoredCallback,
        body: bytes, event_type: str, model_id: str | None, final: bool, ping: bool = False,
    ) -> int | None:
        """Make one HTTP attempt and log it. Returns the status, None on error, -1 if refused."""
        url = callback.url
        at = datetime.now(timezone.utc)

        def record(status: int | None, latency: float | None, outcome: str,
                   error: str | None) -> None:
            with self._attempts_lock:
                self._attempts.append(Attempt(delivery_id, attempt, callback.id, event_type,
                                              model_id, ping, url, at, delay, status, latency,
                                              outcome, error))

        if not (self.allow_remote or is_loopback(callback.host)):
            record(None, None, "refused",
                   f"not delivering to non-loopback host {callback.host!r}; "
                   "start LocalModelApi(allow_remote_delivery=True) to allow it")
            return REFUSED
        client = self._client
        if client is None:
            return None
        started = time.perf_counter()
        status: int | None = None
        try:
            response = client.post(url, content=body, headers=delivery_headers(callback))
            status = response.status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except httpx.TimeoutException as exc:
            error = f"timed out after {self.policy.timeout:g} s ({type(exc).__name__})"
        except httpx.ConnectError as exc:
            error = f"connection failed: {exc or type(exc).__name__}"
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency = (time.perf_counter() - started) * 1000
        ok = status is not None and 200 <= status < 300
        record(status, latency, "delivered" if ok else ("failed" if final else "retrying"), error)
        return status


def attempts_frame(rows: Any) -> pd.DataFrame:
    """Attempt rows (dicts with :data:`ATTEMPT_COLUMNS`) as a typed DataFrame."""
    frame = pd.DataFrame(list(rows), columns=list(ATTEMPT_COLUMNS))
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    for col in ("delivery_id", "attempt"):
        frame[col] = frame[col].astype("int64")
    frame["status"] = frame["status"].astype("Int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    frame["delay_s"] = frame["delay_s"].astype("float64")
    frame["ping"] = frame["ping"].astype("bool")
    frame["outcome"] = pd.Categorical(frame["outcome"],
                                      categories=["delivered", "retrying", "failed", "refused"])
    frame["event_type"] = frame["event_type"].astype("category")
    for col in ("callback_id", "model_id", "url", "error"):
        frame[col] = frame[col].astype("string")
    return frame


def delivery_headers(callback: StoredCallback) -> dict[str, str]:
    """Headers of a delivery: the additional headers, then the ones they may not override
    (``Content-Type`` and the credential header; the registry refuses such collisions, this
    is the second line of defence)."""
    headers: dict[str, str] = {}
    cred = credential_header(callback.cred_type, callback.cred_key, callback.cred_secret)
    protected = set(RESERVED_HEADERS)
    if cred is not None:
        protected.add(cred[0].lower())
    for name, value in callback.additional_headers:
        if name.lower() not in protected:
            headers[name] = value
    headers["Content-Type"] = "application/json"
    if cred is not None:
        headers[cred[0]] = cred[1]
    return headers

