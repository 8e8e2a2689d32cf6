"""EventStore: every delivery, durably, in one SQLite file; history back as DataFrames.

Writes go through one writer thread that batches whatever is queued into a single
transaction (group commit) and only then signals each waiting request, so the receiver can
acknowledge an event the moment it is on disk. WAL mode; ``synchronous=NORMAL`` survives a
killed process, ``FULL`` also survives power loss.

Kept per accepted event: the raw body bytes exactly as received, headers with credentials
redacted, receive time, remote address, how it was authenticated, the flattened event
fields (see :func:`mp_nb.events.event_fields`) and a body digest used to flag duplicates.
Rejected requests go to their own table with the reason and the first bytes of the body.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .events import event_fields
from .exceptions import ConfigurationError, ReceiverError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,      -- ns since the epoch, UTC
    remote TEXT,
    path TEXT,
    query TEXT,
    headers TEXT NOT NULL,             -- JSON object, credentials redacted
    content_type TEXT,
    body BLOB NOT NULL,                -- exactly the bytes received
    auth TEXT NOT NULL,                -- 'verified' or 'none' (receiver had no credentials)
    parsed INTEGER NOT NULL,           -- 1 when the body is a JSON object
    type TEXT,
    webhook_version INTEGER,
    model_id TEXT,
    event_time INTEGER,                -- ns since the epoch, UTC (from the payload)
    actor TEXT,
    bundle_id TEXT,
    success INTEGER,
    status TEXT,
    webhook_id TEXT,
    model_version INTEGER,
    internal_id TEXT,
    ping INTEGER NOT NULL DEFAULT 0,
    data TEXT,
    digest BLOB NOT NULL,
    duplicate_of INTEGER
);
CREATE INDEX IF NOT EXISTS events_digest ON events(digest);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    remote TEXT,
    method TEXT,
    path TEXT,
    query TEXT,
    headers TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    body_head BLOB,
    body_size INTEGER
);
"""

EVENT_COLUMNS = (
    "received_at remote path query headers content_type body auth parsed type webhook_version "
    "model_id event_time actor bundle_id success status webhook_id model_version internal_id "
    "ping data digest duplicate_of"
).split()
REJECTION_COLUMNS = (
    "received_at remote method path query headers status reason body_head body_size"
).split()
BODY_HEAD_BYTES = 256

#: Column order and dtypes of ``events()``.
EVENT_FRAME_COLUMNS = [
    "id", "received_at", "event_time", "type", "webhook_version", "model_id", "actor",
    "bundle_id", "success", "status", "webhook_id", "model_version", "internal_id", "ping",
    "duplicate", "duplicate_of", "auth", "remote", "data", "payload",
]  # fmt: skip


@dataclass
class Delivery:
    """One request as the receiver saw it, before it is stored."""

    body: bytes
    headers: dict[str, str]
    remote: str | None = None
    path: str | None = None
    query: str | None = None
    content_type: str | None = None
    auth: str = "none"
    payload: dict[str, Any] | None = None
    received_at: int = field(default_factory=time.time_ns)


@dataclass
class Rejection:
    """A refused request: HTTP status and the reason given to the sender."""

    status: int
    reason: str
    headers: dict[str, str]
    method: str | None = None
    remote: str | None = None
    path: str | None = None
    query: str | None = None
    body_head: bytes = b""
    body_size: int | None = None
    received_at: int = field(default_factory=time.time_ns)


def _event_row(d: Delivery) -> tuple[Any, ...]:
    fields = event_fields(d.payload) if d.payload is not None else {}
    event_time = fields.get("event_time")
    success = fields.get("success")
    return (
        d.received_at,
        d.remote,
        d.path,
        d.query,
        json.dumps(d.headers, sort_keys=True),
        d.content_type,
        d.body,
        d.auth,
        1 if d.payload is not None else 0,
        fields.get("type"),
        fields.get("webhook_version"),
        fields.get("model_id"),
        _dt_ns(event_time) if event_time is not None else None,
        fields.get("actor"),
        fields.get("bundle_id"),
        None if success is None else int(success),
        fields.get("status"),
        fields.get("webhook_id"),
        fields.get("model_version"),
        fields.get("internal_id"),
        int(bool(fields.get("ping"))),
        fields.get("data"),
        hashlib.sha256(d.body).digest(),
    )


def _dt_ns(dt: Any) -> int | None:
    try:
        return int(dt.timestamp() * 1_000_000) * 1000
    except (OverflowError, ValueError, OSError):
        return None


def _rejection_row(r: Rejection) -> tuple[Any, ...]:
    return (
        r.received_at,
        r.remote,
        r.method,
        r.path,
        r.query,
        json.dumps(r.headers, sort_keys=True),
        r.status,
        r.reason,
        r.body_head[:BODY_HEAD_BYTES],
        r.body_size,
    )


Done = Callable[[int | None, BaseException | None], None]


class EventStore:
    """A SQLite file of deliveries. Open it with a receiver running, or on its own later."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        sync = synchronous.upper()
        if sync not in ("NORMAL", "FULL", "EXTRA", "OFF"):
            raise ConfigurationError(
                f"synchronous: {synchronous!r} is not a SQLite level; use 'NORMAL' or 'FULL'"
            )
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = sync
        try:
            conn = self._connect()
            conn.executescript(SCHEMA)
            conn.close()
        except sqlite3.DatabaseError as exc:
            raise ReceiverError(f"{self.path} is not a usable mp_nb store: {exc}") from exc
        self._queue: queue.SimpleQueue[tuple[str, Any, Done | None] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._committed = threading.Condition()
        self._generation = 0
        self._reader_local = threading.local()
        self._cache: pd.DataFrame | None = None
        self._cache_last_id = 0
        self._cache_lock = threading.Lock()
        self._listeners: list[Callable[[list[int]], None]] = []

    def __repr__(self) -> str:
        return f"EventStore({str(self.path)!r})"

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._reader_local.conn = conn
        return conn

    # ------------------------------------------------------------------ writing

    def submit_event(self, delivery: Delivery, done: Done | None = None) -> None:
        """Queue an accepted delivery; ``done(id, error)`` runs after its commit."""
        self._ensure_writer()
        self._queue.put(("event", delivery, done))

    def submit_rejection(self, rejection: Rejection, done: Done | None = None) -> None:
        """Queue a rejected request; ``done(id, error)`` runs after its commit."""
        self._ensure_writer()
        self._queue.put(("rejection", rejection, done))

    def add_event(self, delivery: Delivery, timeout: float = 30.0) -> int:
        """Store one delivery and wait for its commit; returns its id."""
        return self._wait(self.submit_event, delivery, timeout)

    def add_rejection(self, rejection: Rejection, timeout: float = 30.0) -> int:
        return self._wait(self.submit_rejection, rejection, timeout)

    def _wait(self, submit: Callable[[Any, Done], None], item: Any, timeout: float) -> int:
        box: dict[str, Any] = {}
        flag = threading.Event()

        def done(row_id: int | None, error: BaseException | None) -> None:
            box["id"], box["error"] = row_id, error
            flag.set()

        submit(item, done)
        if not flag.wait(timeout):
            raise ReceiverError(f"store {self.path} did not commit within {timeout} s")
        if box["error"] is not None:
            raise ReceiverError(f"store {self.path} failed: {box['error']}") from box["error"]
        return int(box["id"])

    def on_commit(self, listener: Callable[[list[int]], None]) -> None:
        """Call ``listener(new_event_ids)`` on the writer thread after each commit."""
        self._listeners.append(listener)

    def _ensure_writer(self) -> None:
        if self._writer is not None and self._writer.is_alive():
            return
        with self._writer_lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_loop, name=f"mp-nb-store:{self.path.name}", daemon=True
                )
                self._writer.start()

    def _write_loop(self) -> None:
        conn = self._connect()
        insert_event = (
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        )
        insert_rejection = (
            f"INSERT INTO rejections ({', '.join(REJECTION_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(REJECTION_COLUMNS))})"
        )
        stop = False
        while not stop:
            first = self._queue.get()
            batch = []
            if first is None:
                stop = True
            else:
                batch.append(first)
            while len(batch) < 2000:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if not batch:
                continue
            results: list[tuple[Done | None, int | None, BaseException | None]] = []
            new_ids: list[int] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                seen: dict[bytes, int] = {}
                for kind, item, done in batch:
                    if kind == "event":
                        row = _event_row(item)
                        digest = row[-1]
                        dup = seen.get(digest)
                        if dup is None:
                            hit = conn.execute(
                                "SELECT id FROM events WHERE digest=? ORDER BY id LIMIT 1", (digest,)
                            ).fetchone()
                            dup = hit[0] if hit else None
                        cur = conn.execute(insert_event, (*row, dup))
                        row_id = int(cur.lastrowid or 0)
                        seen.setdefault(digest, dup if dup is not None else row_id)
                        new_ids.append(row_id)
                    else:
                        cur = conn.execute(insert_rejection, _rejection_row(item))
                        row_id = int(cur.lastrowid or 0)
                    results.append((done, row_id, None))
                conn.execute("COMMIT")
            except BaseException as exc:  # the whole batch failed: tell every waiter
                log.exception("store write failed")
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                results = [(done, None, exc) for _kind, _item, done in batch]
                new_ids = []
            for done, row_id, error in results:
                if done is not None:
                    try:
                        done(row_id, error)
                    except Exception:
                        log.exception("commit callback failed")
            with self._committed:
                self._generation += 1
                self._committed.notify_all()
            if new_ids:
                for listener in list(self._listeners):
                    try:
                        listener(new_ids)
                    except Exception:
                        log.exception("commit listener failed")
        conn.close()

    def wait_for_commit(self, generation: int, timeout: float | None) -> int:
        """Block until a commit newer than ``generation`` happens; returns the new generation."""
        with self._committed:
            self._committed.wait_for(lambda: self._generation > generation, timeout)
            return self._generation

    @property
    def generation(self) -> int:
        return self._generation

    def close(self, timeout: float = 10.0) -> None:
        """Finish pending writes and stop the writer thread."""
        writer = self._writer
        if writer is not None and writer.is_alive():
            self._queue.put(None)
            writer.join(timeout)
        self._writer = None

    # ------------------------------------------------------------------ reading

    def count(self, types: Iterable[str] | None = None, include_pings: bool = False) -> int:
        sql = "SELECT COUNT(*) FROM events WHERE 1=1"
        args: list[Any] = []
        if not include_pings:
            sql += " AND ping=0"
        if types is not None:
            wanted = list(types)
            sql += f" AND type IN ({','.join('?' * len(wanted))})"
            args += wanted
        return int(self._reader().execute(sql, args).fetchone()[0])

    def type_counts(self, include_pings: bool = False) -> dict[str, int]:
        sql = "SELECT COALESCE(type, '(not json)'), COUNT(*) FROM events"
        if not include_pings:
            sql += " WHERE ping=0"
        return dict(self._reader().execute(sql + " GROUP BY 1 ORDER BY 1").fetchall())

    def raw_body(self, event_id: int) -> bytes:
        """The exact bytes of one stored event."""
        row = self._reader().execute("SELECT body FROM events WHERE id=?", (event_id,)).fetchone()
        if row is None:
            raise KeyError(f"no event with id {event_id} in {self.path}")
        return bytes(row[0])

    def rows(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        """Some events as plain dicts (no body), for line-by-line printing."""
        wanted = list(ids)
        if not wanted:
            return []
        cur = self._reader().execute(
            "SELECT id, received_at, type, model_id, success, ping, duplicate_of, auth "
            f"FROM events WHERE id IN ({','.join('?' * len(wanted))}) ORDER BY id",
            wanted,
        )
        names = [c[0] for c in cur.description]
        out = []
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            row["received_at"] = pd.Timestamp(row["received_at"], unit="ns", tz="UTC")
            out.append(row)
        return out

    def events(self, *, include_pings: bool = False) -> pd.DataFrame:
        """Every stored event as a DataFrame (see ``EVENT_FRAME_COLUMNS``); incremental."""
        with self._cache_lock:
            new = self._read_events(self._cache_last_id)
            if self._cache is None:
                self._cache = new
            elif len(new):
                self._cache = pd.concat([self._cache, new], ignore_index=True)
            if len(new):
                self._cache_last_id = int(new["id"].iloc[-1])
            frame = self._cache
        if not include_pings:
            frame = frame[~frame["ping"]]
        return _finish_events(frame)

    def _read_events(self, after_id: int) -> pd.DataFrame:
        cur = self._reader().execute(
            "SELECT id, received_at, COALESCE(event_time, -9223372036854775808), type, "
            "webhook_version, model_id, actor, bundle_id, success, status, webhook_id, "
            "model_version, internal_id, ping, duplicate_of, auth, remote, data, body "
            "FROM events WHERE id > ? ORDER BY id",
            (after_id,),
        )
        rows = cur.fetchall()
        names = [
            "id", "received_at", "event_time", "type", "webhook_version", "model_id", "actor",
            "bundle_id", "success", "status", "webhook_id", "model_version", "internal_id",
            "ping", "duplicate_of", "auth", "remote", "data", "payload",
        ]  # fmt: skip
        cols = list(zip(*rows, strict=True)) if rows else [()] * len(names)
        c = dict(zip(names, cols, strict=True))
        frame = pd.DataFrame(
            {
                "id": np.asarray(c["id"], dtype="int64"),
                "received_at": _ns_to_utc(c["received_at"]),
                "event_time": _ns_to_utc(c["event_time"]),
                "type": pd.array(c["type"], dtype="string"),
                "webhook_version": pd.array(c["webhook_version"], dtype="Int8"),
                "model_id": pd.array(c["model_id"], dtype="string"),
                "actor": pd.array(c["actor"], dtype="string"),
                "bundle_id": pd.array(c["bundle_id"], dtype="string"),
                "success": pd.array(
                    [None if v is None else bool(v) for v in c["success"]], dtype="boolean"
                ),
                "status": pd.array(c["status"], dtype="string"),
                "webhook_id": pd.array(c["webhook_id"], dtype="string"),
                "model_version": pd.array(c["model_version"], dtype="Int64"),
                "internal_id": pd.array(c["internal_id"], dtype="string"),
                "ping": np.asarray(c["ping"], dtype=bool),
                "duplicate_of": pd.array(c["duplicate_of"], dtype="Int64"),
                "auth": pd.array(c["auth"], dtype="string"),
                "remote": pd.array(c["remote"], dtype="string"),
                "data": pd.array(c["data"], dtype="string"),
                "payload": pd.array(
                    [bytes(b).decode("utf-8", "replace") for b in c["payload"]], dtype="string"
                ),
            }
        )
        return frame

    def rejections(self) -> pd.DataFrame:
        """Every refused request: status, reason, redacted headers, first bytes of the body."""
        rows = self._reader().execute(
            "SELECT id, received_at, remote, method, path, query, status, reason, headers, "
            "body_head, body_size FROM rejections ORDER BY id"
        ).fetchall()
        names = [
            "id", "received_at", "remote", "method", "path", "query", "status", "reason",
            "headers", "body_head", "body_size",
        ]  # fmt: skip
        cols = list(zip(*rows, strict=True)) if rows else [()] * len(names)
        c = dict(zip(names, cols, strict=True))
        return pd.DataFrame(
            {
                "id": np.asarray(c["id"], dtype="int64"),
                "received_at": _ns_to_utc(c["received_at"]),
                "remote": pd.array(c["remote"], dtype="string"),
                "method": pd.array(c["method"], dtype="string"),
                "path": pd.array(c["path"], dtype="string"),
                "query": pd.array(c["query"], dtype="string"),
                "status": np.asarray(c["status"], dtype="int64"),
                "reason": pd.array(c["reason"], dtype="string"),
                "headers": pd.array(c["headers"], dtype="string"),
                "body_head": pd.Series(
                    [bytes(b) if b is not None else b"" for b in c["body_head"]], dtype=object
                ),
                "body_size": pd.array(c["body_size"], dtype="Int64"),
            }
        )

    def rejection_count(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM rejections").fetchone()[0])


def _ns_to_utc(values: Iterable[int]) -> pd.DatetimeIndex | pd.Series:
    arr = np.asarray(values, dtype="int64").view("datetime64[ns]")
    return pd.Series(arr).dt.tz_localize("UTC")


def _finish_events(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["type"] = out["type"].astype("category")
    out["auth"] = out["auth"].astype("category")
    out["duplicate"] = out["duplicate_of"].notna().to_numpy(dtype=bool)
    return out[EVENT_FRAME_COLUMNS].reset_index(drop=True)


def open_store(path: str | os.PathLike[str]) -> EventStore:
    """Open an existing store file (no receiver needed) to read its history."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigurationError(f"path: no store at {p}; give the .sqlite3 file a receiver wrote")
    return EventStore(p)
