"""Delivering events like a webhook platform: per-callback queues, retries, an attempt log.

Each callback gets its own FIFO queue and worker, so one slow endpoint never delays
another and a callback sees its events in order. A delivery is retried on a non-2xx answer,
a timeout or a refused connection, with exponential backoff
(``backoff * backoff_factor ** (attempt - 1)``), up to ``max_attempts``. Every attempt is
logged (status, latency, error) and readable as a DataFrame.

By default only loopback hosts are delivered to: a delivery elsewhere is refused at once,
logged with the reason, and never leaves the machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import pandas as pd

from .._server import is_loopback
from ..credentials import credential_header
from .registry import StoredCallback

log = logging.getLogger(__name__)

USER_AGENT = "mp_nb-local-model-api"


@dataclass
class Attempt:
    """One HTTP attempt at delivering one event to one callback."""

    delivery_id: int
    attempt: int
    callback_id: str
    event_type: str
    model_id: str | None
    url: str
    at: datetime
    delay_s: float  # wait before this attempt (0 for the first)
    status: int | None
    latency_ms: float | None
    outcome: str  # delivered | retrying | failed | refused
    error: str | None


@dataclass(frozen=True)
class RetryPolicy:
    """Fast defaults for notebooks: 4 attempts, 0.05 s, 0.1 s, 0.2 s apart."""

    max_attempts: int = 4
    backoff: float = 0.05
    backoff_factor: float = 2.0
    timeout: float = 5.0

    def delay_before(self, attempt: int) -> float:
        return 0.0 if attempt <= 1 else self.backoff * self.backoff_factor ** (attempt - 2)


class Deliverer:
    """Owns a thread with its own event loop and an HTTP client; thread-safe ``enqueue``."""

    def __init__(self, policy: RetryPolicy | None = None, *, allow_remote: bool = False) -> None:
        self.policy = policy or RetryPolicy()
        self.allow_remote = allow_remote
        self._attempts: list[Attempt] = []
        self._attempts_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._queues: dict[str, asyncio.Queue[tuple[int, bytes, str, str | None, StoredCallback, concurrent.futures.Future[bool]]]] = {}
        self._pending: set[concurrent.futures.Future[bool]] = set()
        self._pending_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._client = httpx.AsyncClient(
                timeout=self.policy.timeout, trust_env=False, follow_redirects=False,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                headers={"User-Agent": USER_AGENT},
            )
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._client.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="mp-nb-deliverer", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(shutdown(), loop)
            try:
                fut.result(timeout)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        self._queues.clear()
        self._thread = None
        self._loop = None
        with self._pending_lock:
            for f in self._pending:
                if not f.done():
                    f.cancel()
            self._pending.clear()

    # ------------------------------------------------------------------ public API

    def enqueue(
        self, callback: StoredCallback, body: bytes, event_type: str, model_id: str | None
    ) -> concurrent.futures.Future[bool]:
        """Queue one delivery; the future resolves to True once delivered, False if given up."""
        self.start()
        assert self._loop is not None
        result: concurrent.futures.Future[bool] = concurrent.futures.Future()
        delivery_id = next(self._ids)
        with self._pending_lock:
            self._pending.add(result)
        result.add_done_callback(self._forget)
        item = (delivery_id, body, event_type, model_id, callback, result)
        self._loop.call_soon_threadsafe(self._put, item)
        return result

    async def ping(self, callback: StoredCallback, body: bytes, event_type: str) -> bool:
        """One attempt, no retries, awaited from any event loop; True on a 2xx answer."""
        self.start()
        assert self._loop is not None
        delivery_id = next(self._ids)
        coro = self._attempt(delivery_id, 1, 0.0, callback, body, event_type, None, final=True)
        status = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))
        return status is not None and 200 <= status < 300

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued delivery has been delivered or given up."""
        deadline = time.monotonic() + timeout
        while True:
            with self._pending_lock:
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

    def attempts_frame(self) -> pd.DataFrame:
        """The attempt log as a DataFrame (one row per HTTP attempt)."""
        rows = [asdict(a) for a in self.attempts()]
        frame = pd.DataFrame(rows, columns=list(Attempt.__dataclass_fields__))
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        for col in ("delivery_id", "attempt"):
            frame[col] = frame[col].astype("int64")
        frame["status"] = frame["status"].astype("Int64")
        frame["latency_ms"] = frame["latency_ms"].astype("float64")
        frame["delay_s"] = frame["delay_s"].astype("float64")
        for col in ("outcome", "event_type"):
            frame[col] = frame[col].astype("category")
        for col in ("callback_id", "model_id", "url", "error"):
            frame[col] = frame[col].astype("string")
        return frame

    # ------------------------------------------------------------------ internals

    def _forget(self, fut: concurrent.futures.Future[bool]) -> None:
        with self._pending_lock:
            self._pending.discard(fut)

    def _put(self, item: Any) -> None:
        callback: StoredCallback = item[4]
        queue = self._queues.get(callback.id)
        if queue is None:
            queue = asyncio.Queue()
            self._queues[callback.id] = queue
            asyncio.get_running_loop().create_task(self._worker(queue))
        queue.put_nowait(item)

    async def _worker(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            delivery_id, body, event_type, model_id, callback, result = await queue.get()
            delivered = False
            try:
                for attempt in range(1, self.policy.max_attempts + 1):
                    delay = self.policy.delay_before(attempt)
                    if delay:
                        await asyncio.sleep(delay)
                    final = attempt == self.policy.max_attempts
                    status = await self._attempt(
                        delivery_id, attempt, delay, callback, body, event_type, model_id, final
                    )
                    if status is not None and 200 <= status < 300:
                        delivered = True
                        break
                    if status == -1:  # refused by policy: retrying cannot help
                        break
            except asyncio.CancelledError:
                if not result.done():
                    result.cancel()
                raise
            except Exception:  # never let a worker die
                log.exception("delivery %s failed unexpectedly", delivery_id)
            if not result.done():
                result.set_result(delivered)

    async def _attempt(
        self, delivery_id: int, attempt: int, delay: float, callback: StoredCallback,
        body: bytes, event_type: str, model_id: str | None, final: bool,
    ) -> int | None:
        """Make one HTTP attempt and log it. Returns the status, None on error, -1 if refused."""
        url = callback.url
        at = datetime.now(timezone.utc)

        def record(status: int | None, latency: float | None, outcome: str, error: str | None) -> None:
            with self._attempts_lock:
                self._attempts.append(
                    Attempt(delivery_id, attempt, callback.id, event_type, model_id, url, at,
                            delay, status, latency, outcome, error)
                )

        if not (self.allow_remote or is_loopback(callback.host)):
            record(None, None, "refused",
                   f"not delivering to non-loopback host {callback.host!r}; "
                   "start LocalModelApi(allow_remote_delivery=True) to allow it")
            return -1
        headers = delivery_headers(callback)
        assert self._client is not None
        started = time.perf_counter()
        try:
            response = await self._client.post(url, content=body, headers=headers)
            status: int | None = response.status_code
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency = (time.perf_counter() - started) * 1000
        ok = status is not None and 200 <= status < 300
        record(status, latency, "delivered" if ok else ("failed" if final else "retrying"), error)
        return status


def delivery_headers(callback: StoredCallback) -> dict[str, str]:
    """Headers of a delivery: additional headers first, then ones they may not override."""
    headers: dict[str, str] = {}
    cred = credential_header(callback.cred_type, callback.cred_key, callback.cred_secret)
    protected = {"content-type", "content-length", "host"}
    if cred is not None:
        protected.add(cred[0].lower())
    for name, value in callback.additional_headers:
        if name.lower() not in protected:
            headers[name] = value
    headers["Content-Type"] = "application/json"
    if cred is not None:
        headers[cred[0]] = cred[1]
    return headers
