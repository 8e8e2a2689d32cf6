"""Receiver benchmark: mp_nb's durable receiver against a minimal in-memory baseline, and
events() against pandas.read_sql. Prints tables; asserts nothing about speed.

    python bench/receiver.py            # full run (about two minutes)
    python bench/receiver.py --quick    # short run: fewer seconds, 100k stored events

Ingestion: a load generator in a separate process (asyncio raw sockets, 16 keep-alive
connections, the seed ``processed`` sample with a per-request counter) drives

* (a) ``mp_nb.Receiver`` with basic auth and durable SQLite storage (ack after commit);
* (b) a minimal uvicorn + Starlette receiver: no auth, no storage, a list in memory;
* (n) a null server that answers without parsing HTTP, to show the generator's own ceiling.

Both receivers run on a thread of this process with uvicorn's httptools parser, the way a
notebook runs them. Closed loop (as fast as acknowledgements come back) gives events/s and
latency; an open loop paced at 2,000 events/s gives the latency a steady sender sees
(measured from each request's scheduled send time).

History: a store of N events is built with SQL, then ``open_store(path).events()`` is timed
in a fresh process (cold), again in-process (warm), after 1,000 new events arrive through a
running receiver (incremental), and against ``pandas.read_sql`` of the same columns.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = json.loads((HERE.parent / "tests" / "data" / "seed_payloads.json").read_text())["processed"]
USER, SECRET = "bench", "bench-secret"
AUTH = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
CONNECTIONS = 16
PACED_RATE = 2000


# ---------------------------------------------------------------------- load generator


_BODY = json.dumps({**SEED, "internalId": "bench-%d"}).encode()
_HEAD = (f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n"
         "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n").encode()


def _request(seq: int) -> bytes:
    body = _BODY % seq
    return _HEAD % len(body) + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection of the generator: closed loop, or paced when ``interval``."""

    def __init__(self, load: _Load, first: int, offset: float) -> None:
        self.load = load
        self.seq = first
        self.next_at = load.start + offset
        self.sent_at = 0.0
        self.buf = b""
        self.transport: Any = None
        self.finished = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.schedule()

    def schedule(self) -> None:
        load = self.load
        if load.interval is None:
            self.send(time.perf_counter())
            return
        delay = self.next_at - time.perf_counter()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.send, self.next_at)
        else:
            self.send(self.next_at)  # late: latency still counts from the scheduled time

    def send(self, at: float) -> None:
        if at >= self.load.stop:
            self.transport.close()
            if not self.finished.done():
                self.finished.set_result(None)
            return
        self.sent_at = at
        self.transport.write(_request(self.seq))
        self.seq += CONNECTIONS

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0
                              else None]) if at >= 0 else 0  # fmt: skip
            total = end + 4 + length
            if len(self.buf) < total:
                return
            if not head.startswith(b"http/1.1 200"):
                self.load.errors += 1
            self.buf = self.buf[total:]
            done = time.perf_counter()
            if self.sent_at >= self.load.start_measuring:
                self.load.latencies.append(done - self.sent_at)
            if self.load.interval is not None:
                self.next_at += self.load.interval
            self.schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


class _Load:
    def __init__(self, seconds: float, rate: float | None, warmup: float) -> None:
        self.start = time.perf_counter()
        self.start_measuring = self.start + warmup
        self.stop = self.start_measuring + seconds
        self.interval = CONNECTIONS / rate if rate else None
        self.latencies: list[float] = []
        self.errors = 0


async def _load(port: int, seconds: float, rate: float | None, warmup: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    load = _Load(seconds, rate, warmup)
    conns = []
    for i in range(CONNECTIONS):
        offset = i * load.interval / CONNECTIONS if load.interval else 0.0
        _, conn = await loop.create_connection(lambda i=i, o=offset: _Connection(load, i, o),
                                               "127.0.0.1", port)  # fmt: skip
        conns.append(conn)
    await asyncio.gather(*(c.finished for c in conns))
    measured = sorted(load.latencies)
    n = len(measured)
    return {
        "events": n,
        "errors": load.errors,
        "per_s": n / seconds,
        "p50_ms": measured[n // 2] * 1000 if n else float("nan"),
        "p99_ms": measured[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
    }


def loadgen_main(port: int, seconds: float, rate: float | None, warmup: float) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_load(port, seconds, rate, warmup))), flush=True)


def run_load(port: int, seconds: float, rate: float | None = None) -> dict[str, Any]:
    """The generator as a separate process; returns its measurements."""
    cmd = [sys.executable, __file__, "--loadgen", str(port), str(seconds), str(rate or 0)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} requests were not answered 200")
    return result


# ---------------------------------------------------------------------- servers


def baseline_app() -> tuple[Any, list[bytes]]:
    """(b): the smallest honest webhook endpoint: read the body, parse it, keep it in a list."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    kept: list[bytes] = []

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        json.loads(body)
        kept.append(body)
        return JSONResponse({"ok": True, "id": len(kept)})

    return Starlette(routes=[Route("/webhook", webhook, methods=["POST"])]), kept


class NullServer:
    """(n): answers each fixed-size request with a canned 200, no HTTP parsing at all."""

    RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"

    def __init__(self) -> None:
        import threading

        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport, self.buf = transport, b""

            def data_received(self, data: bytes) -> None:
                # one answer per request head (the one-line JSON bodies hold no blank line)
                buf = self.buf + data
                heads = buf.count(b"\r\n\r\n")
                self.buf = buf[buf.rfind(b"\r\n\r\n") + 4 :] if heads else buf
                self.buf = self.buf[-3:]
                self.transport.write(NullServer.RESPONSE * heads)

        server = loop.run_until_complete(loop.create_server(Proto, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


# ---------------------------------------------------------------------- history


FRAME_SQL = ("SELECT id, received_at, event_time, type, webhook_version, model_id, actor, "
             "bundle_id, success, status, webhook_id, model_version, internal_id, ping, "
             "duplicate_of, out_of_order, auth, remote, data, body FROM events")  # fmt: skip


def build_store(path: Path, n: int) -> None:
    """``n`` events: the seed samples stored once each through a receiver, then copied by SQL with new
    model ids, times and bodies (building 1M rows through HTTP would take minutes)."""
    from mp_nb.receiver import Receiver

    seeds = list(json.loads((HERE.parent / "tests" / "data" / "seed_payloads.json").read_text())
                 .values())  # fmt: skip
    with Receiver(db=path) as r:
        import httpx

        with httpx.Client(trust_env=False) as http:
            for payload in seeds:
                http.post(r.url, json=payload).raise_for_status()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    columns = [c[1] for c in conn.execute("PRAGMA table_info(events)") if c[1] != "id"]
    copied = {
        "model_id": "printf('M%010d', n / :k)",
        "received_at": "received_at + n * 1000000",
        "event_time": "event_time + n * 1000",
        "body": "CAST(replace(CAST(body AS TEXT), model_id, printf('M%010d', n / :k)) AS BLOB)",
        "digest": "randomblob(32)",
        "remote": "printf('127.0.0.1:%d', 40000 + n % 16)",
    }
    select = ", ".join(copied.get(c, c) for c in columns)
    conn.execute("BEGIN")
    conn.execute(
        f"INSERT INTO events ({', '.join(columns)}) "
        f"WITH RECURSIVE seq(n) AS (SELECT :k UNION ALL SELECT n + 1 FROM seq WHERE n < :last) "
        f"SELECT {select} FROM seq JOIN events ON events.id = (seq.n % :k) + 1",
        {"k": len(seeds), "last": n - 1},
    )
    conn.execute("COMMIT")
    conn.close()


COLD = """
import sys, time, sqlite3
t0 = time.perf_counter()
import pandas as pd
if sys.argv[2] == "mp_nb":
    from mp_nb import open_store
    t0 = time.perf_counter()
    frame = open_store(sys.argv[1]).events()
else:
    t0 = time.perf_counter()
    frame = pd.read_sql(sys.argv[3], sqlite3.connect(sys.argv[1]))
print(time.perf_counter() - t0, len(frame))
"""


def cold(path: Path, which: str) -> tuple[float, int]:
    done = subprocess.run([sys.executable, "-c", COLD, str(path), which, FRAME_SQL],
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    seconds, rows = done.stdout.split()
    return float(seconds), int(rows)


def history(n: int, workdir: Path) -> list[tuple[str, str, str]]:
    from mp_nb import Receiver

    path = workdir / "history.sqlite3"
    t0 = time.perf_counter()
    build_store(path, n)
    rows: list[tuple[str, str, str]] = [("build the store (SQL)", f"{time.perf_counter() - t0:.1f} s", "")]
    base, base_rows = cold(path, "pandas")
    rows.append((f"pandas.read_sql, {base_rows:,} rows (baseline)", f"{base:.3f} s", "1.00"))
    first, got = cold(path, "mp_nb")
    assert got == base_rows, (got, base_rows)
    rows.append(("events() cold: open_store, fresh process", f"{first:.3f} s", f"{first / base:.3f}"))
    again, _ = cold(path, "mp_nb")
    rows.append(("events() cold again (fresh process)", f"{again:.3f} s", f"{again / base:.3f}"))
    with Receiver(db=path, cred_type="basic", cred_key=USER, cred_secret=SECRET) as r:
        r.events()
        t0 = time.perf_counter()
        warm = [r.events() for _ in range(5)]
        warm_s = (time.perf_counter() - t0) / 5
        rows.append(("events() warm, receiver running", f"{warm_s * 1000:.1f} ms",
                     f"{warm_s / base:.4f}"))  # fmt: skip
        import httpx

        incremental = []
        with httpx.Client(trust_env=False) as http:
            for round_no in range(3):
                for i in range(1000):
                    http.post(r.url, content=_BODY % (10_000_000 + round_no * 1000 + i),
                              headers={"Authorization": AUTH, "Content-Type": "application/json"})
                t0 = time.perf_counter()
                frame = r.events()
                incremental.append(time.perf_counter() - t0)
                assert len(frame) == len(warm[0]) + 1000 * (round_no + 1)
        incremental.sort()
        incr = incremental[1]
        rows.append(("events() incremental, 1,000 new (median of 3)", f"{incr * 1000:.1f} ms",
                     f"{incr / base:.4f}"))  # fmt: skip
        rows.append(("  slowest of the 3", f"{incremental[-1] * 1000:.1f} ms", ""))
        t0 = time.perf_counter()
        r.models()
        rows.append(("models() summary", f"{time.perf_counter() - t0:.3f} s", ""))
    return rows


# ---------------------------------------------------------------------- main


def _serve(kind: str, db: Path) -> tuple[Any, int, Any]:
    if kind == "mp_nb":
        from mp_nb import Receiver

        r = Receiver(db=db, cred_type="basic", cred_key=USER, cred_secret=SECRET)
        return r, int(r.port or 0), r.stop
    from mp_nb._server import ServerThread

    app, _kept = baseline_app()
    server = ServerThread(app, name="bench-baseline", http="httptools")
    server.start()
    return server, int(server.port or 0), server.stop


def _measured(port: int, seconds: float, rate: float | None = None) -> dict[str, Any]:
    """A load run plus the CPU time this process (the servers' threads) spent per event."""
    cpu = time.process_time()
    result = run_load(port, seconds, rate)
    result["cpu_us"] = (time.process_time() - cpu) / max(result["events"], 1) * 1e6
    return result


def _row(label: str, r: dict[str, Any]) -> tuple[str, ...]:
    return (label, f"{r['per_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
            f"{r['cpu_us']:.0f}")  # fmt: skip


def ingestion(seconds: float, workdir: Path) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    null = NullServer()
    ceiling = _measured(null.port, seconds)
    null.stop()
    out.append(_row("(n) null server: generator ceiling", ceiling))
    results = {}
    for kind, label in (("baseline", "(b) uvicorn+starlette, in memory"),
                        ("mp_nb", "(a) mp_nb: basic auth, SQLite, ack after commit")):
        server, port, stop = _serve(kind, workdir / f"ingest-{kind}.sqlite3")
        try:
            full = _measured(port, seconds)
            paced = _measured(port, seconds, PACED_RATE)
            if kind == "mp_nb":
                stored = server.store.count()
                assert stored >= full["events"] + paced["events"], "acknowledged but not stored"
        finally:
            stop()
        results[kind] = (full, paced)
        out.append(_row(label, full))
    a, b = results["mp_nb"][0], results["baseline"][0]
    out.append(("ratio a/b (target >= 0.8)", f"{a['per_s'] / b['per_s']:.2f}", "", "",
                f"{a['cpu_us'] / b['cpu_us']:.2f}"))  # fmt: skip
    out.append(("generator headroom: null / b", f"{ceiling['per_s'] / b['per_s']:.1f}x", "", "",
                ""))  # fmt: skip
    for kind, label in (("baseline", "(b) paced at 2,000/s"), ("mp_nb", "(a) paced at 2,000/s")):
        out.append(_row(label + " (p99 target <= 10 ms)", results[kind][1]))
    return out


def _table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                              for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run, 100k stored events")
    parser.add_argument("--seconds", type=float, help="seconds per load run")
    parser.add_argument("--events", type=int, help="stored events for the history part")
    parser.add_argument("--skip-history", action="store_true")
    parser.add_argument("--skip-ingestion", action="store_true")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    n = args.events or (100_000 if args.quick else 1_000_000)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"mp_nb receiver benchmark: {os.cpu_count()} CPUs (load average {load} before the "
          f"run), Python {sys.version.split()[0]}, {CONNECTIONS} keep-alive connections, "
          f"{seconds:g} s per run", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mp_nb_bench_") as tmp:
        workdir = Path(tmp)
        if not args.skip_ingestion:
            rows = ingestion(seconds, workdir)
            print(_table("\nIngestion (load from a separate process; cpu = CPU time of the "
                         "server process per event)",
                         ("receiver", "events/s", "p50 ms", "p99 ms", "cpu us"), rows), flush=True)
        if not args.skip_history:
            rows3 = history(n, workdir)
            print(_table(f"\nHistory: events() on {n:,} stored events (targets: cold <= 1 s, "
                         "warm <= 0.2 s, incremental <= 50 ms)",
                         ("measurement", "time", "vs read_sql"), rows3), flush=True)  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        loadgen_main(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]) or None, 0.5)
    else:
        main()
