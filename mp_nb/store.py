"""EventStore: every delivery, durably, in one SQLite file; history back as DataFrames.

Writing
    Writes are group commits: whatever is waiting goes into a single transaction, then each
    waiting request is told, so the receiver acknowledges an event only once it is on disk.
    A writer thread commits what is queued (``submit_event``, ``add_event``, rejections);
    the receiver's event loop commits its own deliveries in place (``commit_here``), one
    transaction per loop iteration, which saves a hand-off between threads per request. Both
    take one lock, so the in-memory maps below stay consistent. WAL mode;
    ``synchronous="NORMAL"`` (default) survives a killed process, ``"FULL"`` also a power
    cut. Rows are computed by the caller (the server thread), so a hostile payload fails its
    own request, never the batch; if a batch still fails, its items are retried one by one.
    Each commit also flags duplicates (same body bytes as an earlier
    event: ``duplicate_of`` = the first copy's id), out-of-order arrivals (an event whose
    ``event_time`` is earlier than that of an event of the same model and webhook version
    received before it); the writer thread applies the retention limits (``max_age``,
    ``max_rows``), oldest rows first.

Kept per accepted event: the raw body bytes exactly as received, headers with credentials
redacted, receive time, remote address, how it was authenticated, the flattened event
fields (see :func:`mp_nb.events.event_fields`) and a body digest. Rejected requests go to
their own table with the reason and the first bytes of the body.

Reading
    ``events()`` keeps the columns of everything read so far in memory and only fetches rows
    it has not seen (incremental refresh); columns are built from whole arrays (Arrow strings,
    NumPy numbers, categoricals with an append-only category list), never row by row in
    pandas. Frames handed out share memory with the cache under pandas copy-on-write, so
    modifying one never changes the store's view. ``models()`` and ``timeline()`` summarise
    per model; ``export()`` writes Parquet, CSV or JSON lines.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .events import ModelEvent, event_fields, parse_event
from .exceptions import ConfigurationError, ReceiverError
from .models import EventType

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
    duplicate_of INTEGER,
    out_of_order INTEGER NOT NULL DEFAULT 0
);
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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: Created after the migration, which may add the columns they cover.
INDEXES = "CREATE INDEX IF NOT EXISTS events_model ON events(model_id, event_time);"

#: Columns the caller computes (``_event_row``); the writer appends the last three.
EVENT_COLUMNS = [
    "received_at", "remote", "path", "query", "headers", "content_type", "body", "auth",
    "parsed", "type", "webhook_version", "model_id", "event_time", "actor", "bundle_id",
    "success", "status", "webhook_id", "model_version", "internal_id", "ping", "data", "digest",
    "duplicate_of", "out_of_order",
]  # fmt: skip
REJECTION_COLUMNS = [
    "received_at", "remote", "method", "path", "query", "headers", "status", "reason",
    "body_head", "body_size",
]  # fmt: skip
BODY_HEAD_BYTES = 256
_NAT = np.iinfo(np.int64).min

#: Column order of ``events()``.
EVENT_FRAME_COLUMNS = [
    "id", "received_at", "event_time", "type", "webhook_version", "model_id", "actor",
    "bundle_id", "success", "status", "webhook_id", "model_version", "internal_id", "ping",
    "duplicate", "duplicate_of", "out_of_order", "auth", "remote", "data", "payload",
]  # fmt: skip

#: Column kinds: how each is fetched from SQLite and turned into a pandas array.
_FRAME_SOURCES: list[tuple[str, str, str]] = [
    # (frame column, SQL expression, kind)
    ("id", "id", "int"),
    ("received_at", "received_at", "time"),
    ("event_time", f"COALESCE(event_time, {np.iinfo(np.int64).min})", "time"),
    ("type", "type", "category"),
    ("webhook_version", "webhook_version", "Int8"),
    ("model_id", "model_id", "string"),
    ("actor", "actor", "string"),
    ("bundle_id", "bundle_id", "string"),
    ("success", "success", "boolean"),
    ("status", "status", "string"),
    ("webhook_id", "webhook_id", "string"),
    ("model_version", "model_version", "Int64"),
    ("internal_id", "internal_id", "string"),
    ("ping", "ping", "bool"),
    ("duplicate_of", "duplicate_of", "Int64"),
    ("out_of_order", "out_of_order", "bool"),
    ("auth", "auth", "category"),
    ("remote", "remote", "string"),
    ("data", "data", "string"),
    ("payload", "body", "text"),
]
_PING_POS = [name for name, _, _ in _FRAME_SOURCES].index("ping")
_SELECT_FRAME = "SELECT " + ", ".join(expr for _, expr, _ in _FRAME_SOURCES) + " FROM events"


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


@dataclass(frozen=True)
class StoredEvent:
    """One stored event with its exact body: what handlers receive and replay sends."""

    id: int
    received_at: pd.Timestamp
    event_time: pd.Timestamp | None
    type: str | None
    model_id: str | None
    success: bool | None
    ping: bool
    duplicate_of: int | None
    out_of_order: bool
    auth: str
    content_type: str | None
    headers: dict[str, str]
    body: bytes = field(repr=False)

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None

    @property
    def payload(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None for a raw (non-JSON) delivery."""
        try:
            value = json.loads(self.body)
        except (ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    @property
    def event(self) -> ModelEvent | None:
        """The typed pydantic model of the payload (see :func:`mp_nb.parse_event`)."""
        payload = self.payload
        return parse_event(payload) if payload is not None else None


def _text(value: Any) -> str | None:
    """A string SQLite can store: unpaired surrogates (legal JSON escapes) become ``\\udXXX``."""
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def _event_row(d: Delivery) -> tuple[Any, ...]:
    """The stored columns of one delivery except the writer's three (duplicate, order)."""
    fields = event_fields(d.payload) if d.payload is not None else {}
    event_time = fields.get("event_time")
    success = fields.get("success")
    version = fields.get("webhook_version")
    model_version = fields.get("model_version")
    if isinstance(model_version, int) and not -(2**63) <= model_version < 2**63:
        model_version = None
    return (
        d.received_at,
        _text(d.remote),
        _text(d.path),
        _text(d.query),
        json.dumps(d.headers),
        _text(d.content_type),
        bytes(d.body),
        d.auth,
        1 if d.payload is not None else 0,
        _text(fields.get("type")),
        version,
        _text(fields.get("model_id")),
        _dt_ns(event_time) if event_time is not None else None,
        _text(fields.get("actor")),
        _text(fields.get("bundle_id")),
        None if success is None else int(success),
        _text(fields.get("status")),
        _text(fields.get("webhook_id")),
        model_version,
        _text(fields.get("internal_id")),
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
        _text(r.remote),
        _text(r.method),
        _text(r.path),
        _text(r.query),
        json.dumps(r.headers, sort_keys=True),
        r.status,
        _text(r.reason),
        bytes(r.body_head[:BODY_HEAD_BYTES]),
        r.body_size,
    )


Done = Callable[[int | None, BaseException | None], None]
_Item = tuple[str, Any, "Done | None"]
#: A queue item that only wakes the writer (for a retention pass after outside commits).
_WAKE: _Item = ("wake", None, None)


# ---------------------------------------------------------------------- the frame cache


class _Chunks:
    """One column of the cache as a list of arrays, merged so there are O(log n) of them."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def append(self, part: Any) -> None:
        self.parts.append(part)
        while len(self.parts) >= 2 and len(self.parts[-2]) <= 2 * len(self.parts[-1]):
            right = self.parts.pop()
            self.parts[-1] = _concat([self.parts[-1], right])

    def whole(self) -> Any:
        if len(self.parts) > 1 and isinstance(self.parts[0], np.ndarray):
            self.parts = [_concat(self.parts)]  # NumPy columns must be contiguous anyway
        return _concat(self.parts)

    def drop_first(self, n: int) -> None:
        """Forget the first ``n`` rows (retention removed them)."""
        kept: list[Any] = []
        for part in self.parts:
            if n >= len(part):
                n -= len(part)
                continue
            kept.append(part[n:] if n else part)
            n = 0
        self.parts = kept


def _concat(parts: Sequence[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return type(parts[0])._concat_same_type(list(parts))


class _FrameCache:
    """The columns of every event read so far; refreshed with only the rows after ``last_id``."""

    def __init__(self) -> None:
        self.columns = {name: _Chunks() for name, _, _ in _FRAME_SOURCES}
        self.categories: dict[str, list[Any]] = {}
        self.category_index: dict[str, dict[Any, int]] = {}
        self.rows = 0
        self.first_id = 0
        self.last_id = 0
        self.pings = 0
        self.frame: pd.DataFrame | None = None

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Append rows fetched from SQLite (``_SELECT_FRAME`` order)."""
        if not rows:
            return
        columns = list(zip(*rows, strict=True))
        self._append({name: self._convert(name, kind, values)
                      for (name, _, kind), values in zip(_FRAME_SOURCES, columns, strict=True)})

    def add_arrow(self, table: Any) -> None:
        """Append the rows of an Arrow table written by :class:`_FrameFiles`."""
        if table.num_rows:
            self._append({name: self._from_arrow(name, kind, table.column(name))
                          for name, _, kind in _FRAME_SOURCES})

    def _append(self, converted: dict[str, Any]) -> None:
        ids = converted["id"]
        for name, part in converted.items():
            self.columns[name].append(part)
        if not self.rows:
            self.first_id = int(ids[0])
        self.last_id = int(ids[-1])
        self.rows += len(ids)
        self.pings += int(np.count_nonzero(converted["ping"]))
        self.frame = None

    def drop_before(self, min_id: int) -> None:
        """Forget cached rows whose id is below ``min_id`` (deleted by retention)."""
        if not self.rows or min_id <= self.first_id:
            return
        ids = self.columns["id"].whole()
        n = int(np.searchsorted(ids, min_id))
        pings = self.columns["ping"].whole()[:n].sum()
        for chunks in self.columns.values():
            chunks.drop_first(n)
        self.rows -= n
        self.pings -= int(pings)
        self.first_id = int(ids[n]) if self.rows else 0
        self.frame = None

    def _convert(self, name: str, kind: str, values: tuple[Any, ...]) -> Any:
        if kind in ("int", "time"):
            return np.array(values, dtype=np.int64)
        if kind == "bool":
            return np.array(values, dtype=bool)
        if kind in ("Int8", "Int64", "boolean"):
            return _masked(values, kind)
        if kind == "string":
            return _strings(values)
        if kind == "text":
            return _decode_bodies(values)
        if kind == "category":
            return self._codes(name, values)
        raise AssertionError(kind)

    def _codes(self, name: str, values: tuple[Any, ...]) -> np.ndarray:
        local, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
        return self._mapping(name, list(uniques))[local]  # NA (-1) picks the last slot

    def _from_arrow(self, name: str, kind: str, col: Any) -> Any:
        import pyarrow as pa

        if kind == "int":
            return col.to_numpy().astype(np.int64, copy=False)
        if kind == "time":
            return col.cast(pa.int64()).fill_null(_NAT).to_numpy()
        if kind == "bool":
            return col.to_numpy().astype(bool, copy=False)
        if kind in _MASKED:
            numpy_type, array_type = _MASKED[kind]
            mask = col.is_null().to_numpy()
            data = col.fill_null(False if kind == "boolean" else 0).to_numpy()
            return array_type(data.astype(numpy_type, copy=False), mask)
        if kind in ("string", "text"):
            return pd.array(col, dtype=pd.StringDtype())
        parts = []  # category: dictionary chunks → codes in this cache's category list
        for chunk in col.chunks:
            mapping = self._mapping(name, chunk.dictionary.to_pylist())
            parts.append(mapping[chunk.indices.fill_null(-1).to_numpy().astype(np.int64)])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)

    def _mapping(self, name: str, values: Sequence[Any]) -> np.ndarray:
        """Codes of ``values`` in the append-only category list, plus -1 last (for NA)."""
        cats = self.categories.setdefault(name, [])
        index = self.category_index.setdefault(name, {})
        mapping = np.empty(len(values) + 1, dtype=np.int32)
        mapping[-1] = -1
        for i, value in enumerate(values):
            code = index.get(value)
            if code is None:
                code = index[value] = len(cats)
                cats.append(value)
            mapping[i] = code
        return mapping

    def full_frame(self) -> pd.DataFrame:
        """All cached rows (pings included); built once per refresh, then shared."""
        if self.frame is not None:
            return self.frame
        data: dict[str, Any] = {}
        for name, _, kind in _FRAME_SOURCES:
            whole = self.columns[name].whole() if self.rows else _empty(kind)
            if kind == "time":
                whole = _ns_to_utc(whole)
            elif kind == "category":
                cats = pd.Index(self.categories.get(name, []), dtype=pd.StringDtype())
                whole = pd.Categorical.from_codes(whole, categories=cats, validate=False)
            data[name] = whole
        data["duplicate"] = ~data["duplicate_of"].isna()
        frame = pd.DataFrame(data, copy=False)
        self.frame = frame[EVENT_FRAME_COLUMNS]
        return self.frame


#: Rows per Arrow file of the frame cache kept beside a store.
FRAME_FILE_ROWS = 16384
#: Bumped whenever the frame columns change, so older files are rebuilt.
FRAME_FILE_VERSION = "1"


class _FrameFiles:
    """Full blocks of ``events()`` rows kept as Arrow files beside the store (``<db>.frames/``),
    so a cold ``events()`` maps them instead of pulling every row through SQLite again.

    Stored rows never change (only the oldest are deleted, by retention), so a file is written
    once and never rewritten. Before use, files are checked against the store: its id, the
    frame version, no overlaps or ids past the store's, and the total row count (read from
    the same snapshot). Any mismatch (a replaced store file, rows deleted by hand) discards
    them: they are only a cache.
    """

    def __init__(self, db: Path, store_id: str) -> None:
        self.dir = db.with_name(db.name + ".frames")
        self.store_id = store_id
        self.saved_to = 0
        self.broken = False

    def _files(self) -> list[tuple[int, int, Path]]:
        found = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        for name in names:
            parts = name.split("-")
            if len(parts) == 3 and parts[0] == "rows" and parts[2].endswith(".arrow"):
                try:
                    found.append((int(parts[1]), int(parts[2][:-6]), self.dir / name))
                except ValueError:
                    continue
        return sorted(found)

    def clear(self) -> None:
        for _, _, path in self._files():
            try:
                path.unlink()
            except OSError:
                pass
        self.saved_to = 0

    def load(self, cache: _FrameCache, bottom: int, top: int) -> None:
        """Fill an empty ``cache`` from the files that match the store (the caller then
        checks the total row count against the store's)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        tables = []
        last = 0
        for first, end, path in self._files():
            if end < bottom:
                path.unlink(missing_ok=True)  # rows deleted by retention
                continue
            if first <= last or end > top:
                raise ValueError(f"{path.name} overlaps or runs past the store")
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            meta = table.schema.metadata or {}
            if (meta.get(b"mp_nb.store_id", b"").decode() != self.store_id
                    or meta.get(b"mp_nb.frame_version", b"").decode() != FRAME_FILE_VERSION):
                raise ValueError(f"{path.name} belongs to another store or version")
            if first < bottom:
                table = table.filter(pc.greater_equal(table.column("id"), bottom))
            tables.append(table.replace_schema_metadata(None))
            last = end
        if tables:
            cache.add_arrow(pa.concat_tables(tables))
            self.saved_to = last

    def save(self, cache: _FrameCache) -> None:
        """Write every full block of cached rows not on disk yet."""
        import pyarrow as pa

        if cache.rows < FRAME_FILE_ROWS:
            return
        on_disk = self._files()
        self.saved_to = max([self.saved_to] + [end for _, end, _ in on_disk])
        frame = cache.full_frame()
        ids = frame["id"].to_numpy()
        start = int(np.searchsorted(ids, self.saved_to, side="right"))
        if len(ids) - start < FRAME_FILE_ROWS:
            return
        self.dir.mkdir(exist_ok=True)
        meta = {"mp_nb.store_id": self.store_id, "mp_nb.frame_version": FRAME_FILE_VERSION}
        while len(ids) - start >= FRAME_FILE_ROWS:
            part = frame.iloc[start : start + FRAME_FILE_ROWS]
            table = pa.table({name: pa.array(part[name]) for name, _, _ in _FRAME_SOURCES})
            table = table.replace_schema_metadata(meta)
            first, end = int(ids[start]), int(ids[start + FRAME_FILE_ROWS - 1])
            path = self.dir / f"rows-{first}-{end}.arrow"
            temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            # uncompressed: a cold open maps the files instead of decompressing them
            with pa.OSFile(str(temp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            os.replace(temp, path)
            self.saved_to = end
            start += FRAME_FILE_ROWS


def _empty(kind: str) -> Any:
    if kind in ("int", "time"):
        return np.empty(0, dtype=np.int64)
    if kind == "bool":
        return np.empty(0, dtype=bool)
    if kind == "category":
        return np.empty(0, dtype=np.int32)
    return pd.array([], dtype=pd.StringDtype() if kind in ("string", "text") else kind)


def _arrow() -> Any:
    """pyarrow when pandas keeps its strings in Arrow (the fast path), else None."""
    if pd.StringDtype().storage != "pyarrow":
        return None
    import pyarrow

    return pyarrow


def _strings(values: Sequence[Any]) -> Any:
    pa = _arrow()
    if pa is None:
        return pd.array(values, dtype=pd.StringDtype())
    return pd.array(pa.array(values, type=pa.string()), dtype=pd.StringDtype())


_MASKED = {"Int8": (np.int8, pd.arrays.IntegerArray), "Int64": (np.int64, pd.arrays.IntegerArray),
           "boolean": (np.bool_, pd.arrays.BooleanArray)}  # fmt: skip


def _masked(values: Sequence[Any], kind: str) -> Any:
    """Integers or booleans with gaps (SQL NULL) as a pandas masked array, built in C."""
    pa = _arrow()
    if pa is None:
        return pd.array(values, dtype=kind)
    numpy_type, array_type = _MASKED[kind]
    arrow = pa.array(values, type=pa.int64())  # SQLite keeps booleans as 0/1
    mask = arrow.is_null().to_numpy(zero_copy_only=False)
    data = arrow.fill_null(0).to_numpy(zero_copy_only=False)
    return array_type(data.astype(numpy_type, copy=False), mask)


def _decode_bodies(values: Sequence[Any]) -> Any:
    """Body bytes as a string column (invalid UTF-8 replaced by U+FFFD), without a Python loop
    when pyarrow is there and every body is valid UTF-8."""
    dtype = pd.StringDtype()
    pa = _arrow()
    if pa is not None:
        try:
            strings = pa.array(values, type=pa.binary()).cast(pa.string())
            return pd.array(strings, dtype=dtype)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return pd.array([bytes(v).decode("utf-8", "replace") for v in values], dtype=dtype)


def _ns_to_utc(values: Any) -> Any:
    arr = np.asarray(values, dtype=np.int64).view("datetime64[ns]")
    return pd.DatetimeIndex(arr, copy=False).tz_localize("UTC").array


def _utc_ns(value: Any, name: str) -> int:
    """``since``/``until`` as ns since the epoch: datetime, Timestamp, ISO text or a timedelta
    back from now; naive values are taken as UTC."""
    if isinstance(value, (_dt.timedelta, pd.Timedelta)):
        return time.time_ns() - int(pd.Timedelta(value).value)
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{name}: {value!r} is not a time; give a datetime, an ISO string or a timedelta"
        ) from exc
    if ts is pd.NaT:
        raise ConfigurationError(f"{name}: NaT is not a time")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


# ---------------------------------------------------------------------- the store


#: Most items one transaction takes from the queue.
MAX_BATCH = 4096
#: Seconds between two retention passes of the writer.
RETENTION_EVERY = 1.0
#: Seconds between two WAL checkpoints (when something was committed meanwhile).
CHECKPOINT_EVERY = 0.2


class EventStore:
    """A SQLite file of deliveries. Open it with a receiver running, or on its own later.

    ``max_age`` (seconds or a timedelta) and ``max_rows`` bound the history: the writer
    deletes the oldest events and rejections beyond them, about once a second, never the
    newest event. ``frame_files`` keeps full blocks of ``events()`` columns as Arrow files in
    ``<db>.frames/`` (with pyarrow), so reopening a large store is fast; deleting that
    folder is always safe. ``synchronous`` is SQLite's durability level: ``"NORMAL"`` (an acknowledged
    event survives a killed process) or ``"FULL"`` (it also survives a power cut).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        max_age: float | _dt.timedelta | None = None,
        max_rows: int | None = None,
        frame_files: bool = True,
    ) -> None:
        sync = str(synchronous).upper()
        if sync not in ("NORMAL", "FULL", "EXTRA", "OFF"):
            raise ConfigurationError(
                f"synchronous: {synchronous!r} is not a SQLite level; use 'NORMAL' or 'FULL'"
            )
        self.path = Path(path).expanduser().resolve()
        problem = store_file_problem(self.path)
        if problem:
            raise ConfigurationError(f"db: {problem}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"db: cannot create the folder {self.path.parent}: {exc.strerror or exc}") from None
        self.synchronous = sync
        self.max_age: float | None = None
        self.max_rows: int | None = None
        self.set_retention(max_age=max_age, max_rows=max_rows)
        self.store_id = self._initialise()
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        #: Held by every transaction that writes (the writer thread's, and those of
        #: :meth:`commit_here`): they share the in-memory first-copy and per-model maps.
        self._write_lock = threading.RLock()
        self._committed = threading.Condition()
        self._generation = 0
        self._reader_local = threading.local()
        self._cache = _FrameCache()
        self._cache_lock = threading.Lock()
        self._checkpoint_stop = threading.Event()
        self._frame_files = (
            _FrameFiles(self.path, self.store_id) if frame_files and _arrow() is not None else None
        )
        self._listeners: list[Callable[[list[int]], None]] = []
        self._model_max: dict[tuple[str, int | None], int] = {}
        self._first_copy: dict[int, int] = {}  # body digest (first 8 bytes) -> first event id
        self._first_copy_upto = 0  # ... for every event with an id up to this one
        self._retention_due = 0.0
        self._retention_pending = False  # rows written since the last retention pass

    def __repr__(self) -> str:
        return f"EventStore({str(self.path)!r})"

    def set_retention(
        self, *, max_age: float | _dt.timedelta | None = None, max_rows: int | None = None
    ) -> None:
        """Bound the history (None = keep everything); applied by the writer from now on."""
        if isinstance(max_age, _dt.timedelta):
            max_age = max_age.total_seconds()
        if max_age is not None and not (_is_number(max_age) and max_age > 0):
            raise ConfigurationError(
                f"max_age: must be a positive number of seconds or a timedelta, got {max_age!r}")
        if max_rows is not None and not (_is_int(max_rows) and max_rows >= 1):
            raise ConfigurationError(
                f"max_rows: must be an integer of at least 1 (or None to keep every row), "
                f"got {max_rows!r}")
        self.max_age = float(max_age) if max_age is not None else None
        self.max_rows = int(max_rows) if max_rows is not None else None
        self._retention_due = 0.0

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _initialise(self) -> str:
        """Create or upgrade the schema; returns the store's id (stable for this file)."""
        try:
            conn = self._connect()
        except sqlite3.DatabaseError as exc:
            raise ReceiverError(f"{self.path} is not a usable mp_nb store: {exc}") from exc
        try:
            conn.executescript(SCHEMA)
            _migrate(conn)
            conn.executescript(INDEXES)
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('store_id', ?)", (uuid.uuid4().hex,)
            )
            return str(conn.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise ReceiverError(f"{self.path} is not a usable mp_nb store: {exc}") from exc
        finally:
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._reader_local.conn = conn
        return conn

    # ------------------------------------------------------------------ writing

    def submit_event(self, delivery: Delivery, done: Done | None = None) -> None:
        """Queue an accepted delivery; ``done(id, error)`` runs after its commit.

        The row is computed here, on the caller's thread, so a payload that cannot be stored
        raises to its own caller instead of failing the writer's batch.
        """
        item = self.event_item(delivery, done)
        self._ensure_writer()
        self._queue.put(item)

    def event_item(self, delivery: Delivery, done: Done | None = None) -> _Item:
        """A delivery made ready for :meth:`commit_here` (raises if it cannot be stored)."""
        return ("event", _event_row(delivery), done)

    def writer_connection(self) -> sqlite3.Connection:
        """A connection for :meth:`commit_here` on the calling thread (checkpoints are left
        to the checkpoint thread, as on the writer's own connection)."""
        conn = self._connect()
        conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def commit_here(self, conn: sqlite3.Connection, items: list[_Item]) -> None:
        """Commit ``items`` (from :meth:`event_item`) in one transaction on the calling thread,
        then run their ``done``: group commit without a hand-off to the writer thread. The
        receiver's event loop uses it for the requests that arrive in one loop iteration."""
        if not items:
            return
        self._ensure_writer()  # retention and checkpoints still run there
        with self._write_lock:
            self._commit(conn, items)
        if (self.max_age is not None or self.max_rows is not None) and not self._retention_pending:
            self._retention_pending = True
            self._queue.put(_WAKE)  # the writer may be idle: let it run the retention pass

    def submit_rejection(self, rejection: Rejection, done: Done | None = None) -> None:
        """Queue a rejected request; ``done(id, error)`` runs after its commit."""
        row = _rejection_row(rejection)
        self._ensure_writer()
        self._queue.put(("rejection", row, done))

    def add_event(self, delivery: Delivery, timeout: float = 30.0) -> int:
        """Store one delivery and wait for its commit; returns its id."""
        return self._wait(self.submit_event, delivery, timeout)

    def add_rejection(self, rejection: Rejection, timeout: float = 30.0) -> int:
        """Store one rejection and wait for its commit; returns its id."""
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
        """Call ``listener(new_event_ids)`` on the writer thread after each commit.

        Keep it quick (hand the ids to another thread): the next batch waits for it.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[list[int]], None]) -> None:
        """Undo :meth:`on_commit`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def start_writer(self) -> None:
        """Start the writer thread now rather than at the first write, so that it has read
        what it needs from a large store before the first delivery arrives."""
        self._ensure_writer()

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
        conn = self.writer_connection()
        checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                        name=f"mp-nb-checkpoint:{self.path.name}")  # fmt: skip
        self._checkpoint_stop.clear()
        checkpointer.start()
        try:
            try:  # ready before the first delivery arrives, usually
                with self._write_lock:
                    top = conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
                    self._first_copies(conn, int(top or 0))
            except sqlite3.Error:
                self._forget_first_copies()  # read again at the first write
            stop = False
            while not stop:
                batch: list[_Item] = []
                try:  # with retention set, wake up when the next pass is due even if idle
                    first = self._queue.get(timeout=self._retention_wait())
                except queue.Empty:
                    with self._write_lock:
                        self._retain(conn)
                    continue
                if first is None:
                    stop = True
                else:
                    batch.append(first)
                while not stop and len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                    else:
                        batch.append(item)
                batch = [item for item in batch if item is not _WAKE]
                if batch:
                    with self._write_lock:
                        self._commit(conn, batch)
                    self._retention_pending = True
                if self.max_age is not None or self.max_rows is not None:
                    with self._write_lock:
                        self._retain(conn)
        finally:
            self._checkpoint_stop.set()
            checkpointer.join(10)
            conn.close()

    def _retention_wait(self) -> float | None:
        """Seconds until the next retention pass is due (None: no retention, wait forever)."""
        if self.max_age is None and (self.max_rows is None or not self._retention_pending):
            return None  # max_rows alone: one pass after the last write is enough
        return max(0.01, self._retention_due - time.monotonic())

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL pages into the database file off the commit path.

        SQLite would otherwise do this inside a commit every 1,000 pages, stalling the
        acknowledgements waiting for that commit. A passive checkpoint never blocks the writer.
        """
        conn = self._connect()
        seen = self._generation
        try:
            while not self._checkpoint_stop.wait(CHECKPOINT_EVERY):
                if self._generation != seen:
                    seen = self._generation
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("checkpoint of %s failed: %s", self.path, exc)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        """Insert ``batch`` in one transaction, then acknowledge each item and notify."""
        results: list[tuple[Done | None, int | None, BaseException | None]] = []
        new_ids: list[int] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            events = [row for kind, row, _ in batch if kind == "event"]
            rejections = [row for kind, row, _ in batch if kind != "event"]
            new_ids = self._insert_events(conn, events) if events else []
            rejection_ids = _insert_rows(conn, "rejections", REJECTION_COLUMNS, rejections)
            conn.execute("COMMIT")
            event_iter, rejection_iter = iter(new_ids), iter(rejection_ids)
            for kind, _, done in batch:
                row_id = next(event_iter) if kind == "event" else next(rejection_iter)
                results.append((done, row_id, None))
        except Exception as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._model_max.clear()  # they may hold values of rolled-back rows
            self._forget_first_copies()
            if len(batch) > 1:  # find the culprit: every other item still gets stored
                for item in batch:
                    self._commit(conn, [item])
                return
            log.warning("store write failed: %s", exc)
            results = [(batch[0][2], None, exc)]
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

    def _insert_events(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert event rows with the writer's columns: the first copy of each body and the
        out-of-order flag. Returns their ids."""
        base = int(conn.execute("SELECT MAX(id) FROM events").fetchone()[0] or 0)
        first = self._first_copies(conn, base)
        full = []
        for row_id, row in enumerate(rows, base + 1):
            digest = row[-1]
            key = int.from_bytes(digest[:8], "big")
            duplicate_of = first.setdefault(key, row_id)
            if duplicate_of <= base and not _same_digest(conn, duplicate_of, digest):
                # a deleted first copy, or two bodies sharing 64 bits of SHA-256: not a copy
                duplicate_of = first[key] = row_id
            full.append((*row, None if duplicate_of == row_id else duplicate_of,
                         self._late(conn, row[11], row[10], row[12])))  # fmt: skip
        self._first_copy_upto = base + len(rows)
        return _insert_rows(conn, "events", EVENT_COLUMNS, full, base)

    def _first_copies(self, conn: sqlite3.Connection, top: int) -> dict[int, int]:
        """The writer's map of body digests to the first event with that body, brought up to
        event ``top``: read whole when the writer starts, then only rows other writers added.

        Found in memory rather than through an index on ``digest``: a random-key index dirties
        one more page per event on every commit, which cost the receiver about a third of its
        throughput. The map takes about 110 bytes and 1.3 µs to load per stored event.
        """
        if top < self._first_copy_upto:  # the store lost rows under us: start over
            self._forget_first_copies()
        if top > self._first_copy_upto:
            first = self._first_copy
            for row_id, digest in conn.execute(
                "SELECT id, digest FROM events WHERE id > ? ORDER BY id", (self._first_copy_upto,)
            ):
                first.setdefault(int.from_bytes(digest[:8], "big"), row_id)
            self._first_copy_upto = top
        return self._first_copy

    def _forget_first_copies(self) -> None:
        self._first_copy.clear()
        self._first_copy_upto = 0

    def _late(self, conn: sqlite3.Connection, model_id: str | None, version: int | None,
              event_time: int | None) -> int:
        """1 if ``event_time`` is earlier than that of an event of the same model and webhook
        version stored before (the writer remembers each one's latest event time). v1 and v2
        payloads come from separate callbacks, so they are not compared with each other."""
        if model_id is None or event_time is None:
            return 0
        key = (model_id, version)
        latest = self._model_max.get(key)
        if latest is None:
            got = conn.execute(
                "SELECT MAX(event_time) FROM events WHERE model_id=? AND webhook_version IS ?",
                (model_id, version),
            ).fetchone()[0]
            latest = _NAT if got is None else int(got)
            if len(self._model_max) > 100_000:  # bounded; reloaded from the index on demand
                self._model_max.clear()
        self._model_max[key] = max(latest, event_time)
        return int(event_time < latest)

    def _retain(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest rows beyond ``max_age``/``max_rows`` (at most once a second).

        Ids only grow and only the oldest rows are ever deleted, so the rows of a table are
        one contiguous id range: the cut is an id, found without scanning the table.
        """
        now = time.monotonic()
        if now < self._retention_due:
            return
        self._retention_due = now + RETENTION_EVERY
        self._retention_pending = False
        deleted = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            for table in ("events", "rejections"):
                top = conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0]
                if top is None:
                    continue
                cut = 0
                if self.max_rows is not None:
                    cut = max(cut, top - self.max_rows)
                if self.max_age is not None:
                    cut = max(cut, _age_cut(conn, table, time.time_ns() - int(self.max_age * 1e9)))
                cut = min(cut, top - 1)  # never the newest row: ids must not be reused
                if cut > 0:
                    deleted += conn.execute(f"DELETE FROM {table} WHERE id <= ?", (cut,)).rowcount
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("retention pass failed: %s", exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return
        if deleted:  # readers waiting on commits see the shorter history too
            self._forget_first_copies()  # first copies may be gone: reload on the next write
            with self._committed:
                self._generation += 1
                self._committed.notify_all()

    def wait_for_commit(self, generation: int, timeout: float | None) -> int:
        """Block until a commit newer than ``generation`` happens; returns the new generation."""
        with self._committed:
            self._committed.wait_for(lambda: self._generation > generation, timeout)
            return self._generation

    @property
    def generation(self) -> int:
        return self._generation

    def close(self, timeout: float = 10.0) -> None:
        """Finish pending writes and stop the writer thread. Reading still works."""
        writer = self._writer
        if writer is not None and writer.is_alive():
            self._queue.put(None)
            writer.join(timeout)
        self._writer = None


    # ------------------------------------------------------------------ counting

    def max_id(self) -> int:
        """The newest event's id (0 when empty)."""
        got = self._reader().execute("SELECT MAX(id) FROM events").fetchone()[0]
        return int(got or 0)

    def count(
        self,
        types: Iterable[str] | None = None,
        include_pings: bool = False,
        *,
        after_id: int = 0,
        up_to_id: int | None = None,
    ) -> int:
        """How many events (of ``types``) are stored, optionally only in an id range."""
        sql = "SELECT COUNT(*) FROM events WHERE id > ?"
        args: list[Any] = [after_id]
        if up_to_id is not None:
            sql += " AND id <= ?"
            args.append(up_to_id)
        if not include_pings:
            sql += " AND ping=0"
        if types is not None:
            wanted = [types] if isinstance(types, str) else list(types)
            sql += f" AND type IN ({','.join('?' * len(wanted))})"
            args += wanted
        return int(self._reader().execute(sql, args).fetchone()[0])

    def type_counts(self, include_pings: bool = False) -> dict[str, int]:
        """Events per type (``(not json)`` for raw bodies)."""
        sql = "SELECT COALESCE(type, '(not json)'), COUNT(*) FROM events"
        if not include_pings:
            sql += " WHERE ping=0"
        return dict(self._reader().execute(sql + " GROUP BY 1 ORDER BY 1").fetchall())

    def rejection_count(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM rejections").fetchone()[0])

    # ------------------------------------------------------------------ single events

    def raw_body(self, event_id: int) -> bytes:
        """The exact bytes of one stored event."""
        row = self._reader().execute("SELECT body FROM events WHERE id=?", (event_id,)).fetchone()
        if row is None:
            raise KeyError(f"no event with id {event_id} in {self.path}")
        return bytes(row[0])

    def get(self, ids: Iterable[int]) -> list[StoredEvent]:
        """Some events with their exact bodies, in id order (missing ids are skipped)."""
        wanted = [int(i) for i in ids]
        out: list[StoredEvent] = []
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            cur = self._reader().execute(
                "SELECT id, received_at, event_time, type, model_id, success, ping, duplicate_of, "
                "out_of_order, auth, content_type, headers, body FROM events "
                f"WHERE id IN ({','.join('?' * len(part))}) ORDER BY id",
                part,
            )
            for r in cur.fetchall():
                out.append(StoredEvent(
                    id=r[0], received_at=pd.Timestamp(r[1], unit="ns", tz="UTC"),
                    event_time=None if r[2] is None else pd.Timestamp(r[2], unit="ns", tz="UTC"),
                    type=r[3], model_id=r[4], success=None if r[5] is None else bool(r[5]),
                    ping=bool(r[6]), duplicate_of=r[7], out_of_order=bool(r[8]), auth=r[9],
                    content_type=r[10], headers=json.loads(r[11]), body=bytes(r[12]),
                ))  # fmt: skip
        return out

    def event(self, event_id: int) -> StoredEvent:
        """One event with its exact body; KeyError if there is none with that id."""
        got = self.get([event_id])
        if not got:
            raise KeyError(f"no event with id {event_id} in {self.path}")
        return got[0]

    def rows(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        """Some events as plain dicts (no body), for line-by-line printing."""
        keys = ("id", "received_at", "type", "model_id", "success", "ping", "duplicate_of",
                "out_of_order", "auth")  # fmt: skip
        out = []
        for e in self.get(ids):
            row = {k: getattr(e, k) for k in keys}
            row["success"] = None if e.success is None else int(e.success)
            row["ping"] = int(e.ping)
            row["out_of_order"] = int(e.out_of_order)
            out.append(row)
        return out

    # ------------------------------------------------------------------ frames

    def events(
        self,
        *,
        include_pings: bool = False,
        types: str | Iterable[str] | None = None,
        model_id: str | Iterable[str] | None = None,
        since: Any = None,
        until: Any = None,
        by: str = "received_at",
    ) -> pd.DataFrame:
        """Stored events as a DataFrame (columns ``EVENT_FRAME_COLUMNS``), oldest first.

        Filters: ``types`` (one or several event types), ``model_id`` (one or several),
        ``since``/``until`` (datetime, ISO text, or a timedelta meaning "that long ago";
        naive times are UTC) applied to ``by`` = ``"received_at"`` or ``"event_time"``.
        Only rows not read before are fetched from SQLite.
        """
        if by not in ("received_at", "event_time"):
            raise ConfigurationError("by: use 'received_at' or 'event_time'")
        with self._cache_lock:
            frame, pings = self._refresh()
        mask: Any = None

        def both(m: Any) -> Any:
            return m if mask is None else mask & m

        if not include_pings and pings:
            mask = both(~frame["ping"].to_numpy())
        if types is not None:
            wanted = _names(types, "types")
            unknown = [t for t in wanted if t not in EventType.__members__
                       and t not in frame["type"].cat.categories]
            if unknown:
                raise ConfigurationError(
                    f"types: {', '.join(map(repr, unknown))} is neither a Matterport event type "
                    "nor a type in this store; known types: " + ", ".join(EventType.__members__))
            mask = both(frame["type"].isin(wanted).to_numpy())
        if model_id is not None:
            models = _names(model_id, "model_id")
            mask = both(frame["model_id"].isin(models).to_numpy(dtype=bool, na_value=False))
        if since is not None or until is not None:
            ns = frame[by].array.asi8  # NaT (missing event_time) is the smallest int64
            if since is not None:
                mask = both(ns >= _utc_ns(since, "since"))
            if until is not None:
                mask = both((ns < _utc_ns(until, "until")) & (ns != _NAT))
        if mask is None:
            return frame.copy(deep=False)
        return frame[mask].reset_index(drop=True)

    def _refresh(self) -> tuple[pd.DataFrame, int]:
        conn = self._reader()
        conn.execute("BEGIN")  # one snapshot for the bounds, the files check and the new rows
        try:
            self._refresh_in(conn)
        finally:
            conn.execute("COMMIT")
        return self._cache.full_frame(), self._cache.pings

    def _refresh_in(self, conn: sqlite3.Connection) -> None:
        cache = self._cache
        top = conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
        if top is None or top < cache.last_id:  # emptied or replaced: start again
            cache = self._cache = _FrameCache()
        if top is None:
            return
        bottom = int(conn.execute("SELECT MIN(id) FROM events").fetchone()[0])
        files = self._frame_files
        from_files = False
        if not cache.rows and files is not None and not files.broken:
            try:
                files.load(cache, bottom, int(top))
                from_files = cache.rows > 0
            except Exception as exc:  # only a cache: rebuild it from the store
                log.info("frame files of %s not used: %s", self.path, exc)
                cache = self._cache = _FrameCache()
                files.clear()
        cache.drop_before(bottom)
        self._fetch(conn, cache)
        if from_files and conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] != cache.rows:
            log.info("frame files of %s do not match the store; rebuilding them", self.path)
            assert files is not None
            files.clear()
            cache = self._cache = _FrameCache()
            self._fetch(conn, cache)
        if files is not None and not files.broken:
            try:
                files.save(cache)
            except Exception as exc:  # read-only place, disk full: work without them
                log.info("frame files of %s not written: %s", self.path, exc)
                files.broken = True

    @staticmethod
    def _fetch(conn: sqlite3.Connection, cache: _FrameCache) -> None:
        """Add the rows after the cache's last id."""
        cur = conn.execute(_SELECT_FRAME + " WHERE id > ? ORDER BY id", (cache.last_id,))
        while rows := cur.fetchmany(200_000):
            cache.add(rows)

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
        string = pd.StringDtype()
        return pd.DataFrame(
            {
                "id": np.asarray(c["id"], dtype="int64"),
                "received_at": _ns_to_utc(c["received_at"]),
                "remote": pd.array(c["remote"], dtype=string),
                "method": pd.array(c["method"], dtype=string),
                "path": pd.array(c["path"], dtype=string),
                "query": pd.array(c["query"], dtype=string),
                "status": np.asarray(c["status"], dtype="int64"),
                "reason": pd.array(c["reason"], dtype=string),
                "headers": pd.array(c["headers"], dtype=string),
                "body_head": pd.Series(
                    [bytes(b) if b is not None else b"" for b in c["body_head"]], dtype=object
                ),
                "body_size": pd.array(c["body_size"], dtype="Int64"),
            }
        )

    def models(self) -> pd.DataFrame:
        """One row per model: its latest known state, judged by event time (not arrival).

        Columns: ``events``, ``first_received_at``, ``last_received_at``, ``last_event_time``,
        ``last_type``, ``processed`` (success of the latest processing), ``activation_state``
        (v2), ``visibility`` (v2), ``deleted``, ``ready`` (processed and active and not
        deleted: when Matterport advises acting on a model), ``duplicates``, ``out_of_order``.
        """
        return _model_summary(self.events())

    def model_state(self, model_id: str) -> dict[str, Any]:
        """The :meth:`models` row of one model as a dict (``events`` = 0 if never seen)."""
        frame = _model_summary(self._model_rows(model_id))
        if not len(frame):
            return {"model_id": model_id, "events": 0, "processed": None,
                    "activation_state": None, "deleted": False, "ready": False}  # fmt: skip
        row = frame.iloc[0].to_dict()
        return {k: (None if v is pd.NA or v is pd.NaT else v) for k, v in row.items()}

    def _model_rows(self, model_id: str) -> pd.DataFrame:
        """One model's events straight from SQLite (indexed), without touching the cache."""
        if not isinstance(model_id, str) or not model_id:
            raise ConfigurationError(f"model_id: give a model id (a string), got {model_id!r}")
        rows = self._reader().execute(
            _SELECT_FRAME + " WHERE model_id=? AND ping=0 ORDER BY id", (model_id,)
        ).fetchall()
        part = _FrameCache()
        part.add(rows)
        return part.full_frame()

    def timeline(self, model_id: str) -> pd.DataFrame:
        """One model's events in event-time order, with arrival lag and state detail.

        Columns: ``id``, ``event_time``, ``received_at``, ``lag`` (arrival minus event time),
        ``type``, ``success``, ``status``, ``state`` (activation / visibility after the event),
        ``duplicate``, ``duplicate_of``, ``out_of_order``, ``data``.
        """
        frame = _in_event_order(self._model_rows(model_id))
        out = frame[["id", "event_time", "received_at"]].copy()
        out["lag"] = frame["received_at"] - frame["event_time"]
        for col in ("type", "success", "status"):
            out[col] = frame[col]
        out["state"] = _current_state(frame)
        for col in ("duplicate", "duplicate_of", "out_of_order", "data"):
            out[col] = frame[col]
        return out.reset_index(drop=True)

    def export(
        self, path: str | os.PathLike[str], *, format: str | None = None, **filters: Any
    ) -> Path:
        """Write ``events(**filters)`` to Parquet, CSV or JSON lines; returns the path.

        The format comes from ``format`` or the suffix (.parquet/.pq, .csv, .json/.jsonl).
        """
        target = Path(path).expanduser()
        kinds = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json",
                 ".jsonl": "json", ".ndjson": "json"}  # fmt: skip
        kind = (format or kinds.get(target.suffix.lower(), "")).lower()
        if kind not in ("parquet", "csv", "json"):
            raise ConfigurationError(
                f"format: cannot tell the format of {target.name!r}; "
                "pass format='parquet', 'csv' or 'json', or use that suffix"
            )
        frame = self.events(**filters)
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError as exc:
                raise ConfigurationError(
                    "format: Parquet needs pyarrow; pip install 'mp_nb[parquet]'"
                ) from exc
            frame.to_parquet(target, index=False)
        elif kind == "csv":
            frame.to_csv(target, index=False)
        else:
            frame.to_json(target, orient="records", lines=True, date_format="iso")
        return target


# ---------------------------------------------------------------------- helpers


def _insert_rows(
    conn: sqlite3.Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]],
    base: int | None = None,
) -> list[int]:
    """Insert ``rows`` with explicit ids after the table's largest (``base``), in one
    ``executemany``; the writer holds the write lock, so the ids are exactly these."""
    if not rows:
        return []
    if base is None:
        base = int(conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0)
    ids = list(range(base + 1, base + 1 + len(rows)))
    sql = (f"INSERT INTO {table} (id, {', '.join(columns)}) "
           f"VALUES (?, {', '.join('?' * len(columns))})")  # fmt: skip
    conn.executemany(sql, [(i, *row) for i, row in zip(ids, rows, strict=True)])
    return ids


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(value: Any, field: str) -> list[str]:
    """One name or several, as a list of strings; anything else is refused by field name."""
    if isinstance(value, str):
        return [value]
    items = list(value) if isinstance(value, list | tuple | set | frozenset | pd.Series) else None
    if items is None or not all(isinstance(v, str) for v in items):
        raise ConfigurationError(f"{field}: give a string or a list of strings, got {value!r}")
    return items


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store written by an older mp_nb up to this schema."""
    # duplicates are found through the writer's in-memory digest map: a random-key index
    # dirtied a page per event on every commit
    conn.execute("DROP INDEX IF EXISTS events_digest")
    have = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
    if "out_of_order" not in have:
        conn.execute("ALTER TABLE events ADD COLUMN out_of_order INTEGER NOT NULL DEFAULT 0")
        conn.execute(
            "UPDATE events SET out_of_order = 1 WHERE id IN ("
            " SELECT id FROM (SELECT id, event_time, MAX(event_time) OVER ("
            "  PARTITION BY model_id ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
            " ) AS before FROM events WHERE model_id IS NOT NULL) WHERE event_time < before)"
        )


def _same_digest(conn: sqlite3.Connection, row_id: int, digest: bytes) -> bool:
    got = conn.execute("SELECT digest FROM events WHERE id=?", (row_id,)).fetchone()
    return got is not None and bytes(got[0]) == digest


def _age_cut(conn: sqlite3.Connection, table: str, cutoff_ns: int) -> int:
    """The highest id of the leading run of rows received before ``cutoff_ns``."""
    cut = 0
    while True:
        rows = conn.execute(
            f"SELECT id, received_at FROM {table} WHERE id > ? ORDER BY id LIMIT 2000", (cut,)
        ).fetchall()
        for row_id, received in rows:
            if received >= cutoff_ns:
                return cut
            cut = row_id
        if len(rows) < 2000:
            return cut


def _in_event_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by event time (arrival time where a payload had none), then id."""
    when = frame["event_time"].where(frame["event_time"].notna(), frame["received_at"])
    order = np.lexsort((frame["id"].to_numpy(), when.array.asi8))
    return frame.take(order)


_STATE_KEYS = {"activation_state_changed": "state", "visibility_changed": "accessVisibility"}


def _current_state(frame: pd.DataFrame) -> pd.Series:
    """``body.current.<state>`` of activation and visibility events (NA for other rows)."""
    out = pd.Series(pd.NA, index=frame.index, dtype=pd.StringDtype())
    for etype, key in _STATE_KEYS.items():
        hit = (frame["type"] == etype).to_numpy(dtype=bool)
        if hit.any():
            out[hit] = [_current(text, key) for text in frame["data"][hit]]
    return out


def _current(data: Any, key: str) -> Any:
    try:
        value = json.loads(data)["current"][key]
    except (TypeError, ValueError, KeyError):
        return pd.NA
    return value if isinstance(value, str) else pd.NA


_LIFECYCLE = {"deleted": True, "transferred_out": True, "created": False, "restored": False,
              "transferred_in": False, "uploaded": False, "inserted": False}  # fmt: skip


def _model_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-model state from a frame of events (see :meth:`EventStore.models`).

    Grouping uses integer codes of the model ids and comparisons run on the categorical
    ``type`` codes, so a million events take well under a second.
    """
    columns = ["id", "received_at", "event_time", "type", "model_id", "success", "data",
               "duplicate", "out_of_order"]  # fmt: skip
    frame = frame[columns]
    frame = _in_event_order(frame[frame["model_id"].notna().to_numpy(dtype=bool)])
    keys, models = pd.factorize(frame["model_id"], sort=True)
    kinds = frame["type"]
    groups = frame.groupby(keys, sort=True)
    out = pd.DataFrame(
        {
            "events": groups.size(),
            "first_received_at": groups["received_at"].min(),
            "last_received_at": groups["received_at"].max(),
            "last_event_time": groups["event_time"].max(),
            "last_type": groups["type"].last().astype(pd.StringDtype()),
        }
    )

    def latest(mask: Any, values: pd.Series) -> pd.Series:
        m = np.asarray(mask, dtype=bool)
        return values[m].groupby(keys[m], sort=True).last().reindex(out.index)

    out["processed"] = latest(kinds == "processed", frame["success"])
    state = _current_state(frame)
    for col, etype in (("activation_state", "activation_state_changed"),
                       ("visibility", "visibility_changed")):  # fmt: skip
        out[col] = latest(kinds == etype, state).astype(pd.StringDtype())
    gone = kinds.map(_LIFECYCLE).astype(object)
    has = gone.notna().to_numpy(dtype=bool)
    deleted = gone[has].astype(bool).groupby(keys[has], sort=True).last()
    out["deleted"] = deleted.reindex(out.index, fill_value=False).astype(bool)
    out["ready"] = (
        out["processed"].fillna(False).astype(bool)
        & (out["activation_state"] == "active").fillna(False).astype(bool)
        & ~out["deleted"]
    )
    out["duplicates"] = groups["duplicate"].sum().astype("int64")
    out["out_of_order"] = groups["out_of_order"].sum().astype("int64")
    out.index = pd.Index(models, dtype=pd.StringDtype(), name="model_id")
    return out.reset_index()


def store_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as an mp_nb store, or None (missing/empty files are fine).

    Looks read-only, so another application's database is never modified.
    """
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return None
    if not path.is_file():
        return f"{path} is not a file"
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"{path} is not a SQLite database ({exc})"
    if tables and not {"events", "rejections", "meta"} <= tables:
        return (f"{path} is a SQLite database of something else (tables: "
                f"{', '.join(sorted(tables)[:5])}); give an mp_nb store or a new file name")
    return None


def open_store(path: str | os.PathLike[str]) -> EventStore:
    """Open an existing store file (no receiver needed) to read its history."""
    if not isinstance(path, str | os.PathLike):
        raise ConfigurationError(f"path: expected a file path, got {type(path).__name__}")
    p = Path(path).expanduser()
    if not p.is_file() or p.stat().st_size == 0:
        raise ConfigurationError(f"path: no store at {p}; give the .sqlite3 file a receiver wrote")
    problem = store_file_problem(p)
    if problem:
        raise ConfigurationError(f"path: {problem}")
    return EventStore(p)
