"""Run an ASGI app with uvicorn on a daemon thread, the way a notebook needs it.

Shared by the receiver and the local Model API:

* the socket is bound *before* the thread starts, so ``port=0`` gives a known port at once and
  a port that is taken raises :class:`~mp_nb.exceptions.ReceiverError` in the caller;
* starting a server on an address this process already serves stops the old one first, so a
  re-run notebook cell never hits "address already in use";
* uvicorn's own logging is silenced (``log_config=None`` plus a ``NullHandler``): nothing is
  printed from the server thread into whatever cell happens to be running;
* ``stop()`` asks uvicorn to exit, joins the thread and releases the socket; ``atexit`` does
  the same for servers still running when the interpreter ends.

:func:`guarded_http_protocol` builds the HTTP protocol the receiver uses: uvicorn's httptools
protocol plus the limits httptools does not enforce itself (header size, a deadline for the
request head, idle connections), each refusal reported to a callback so it can be recorded.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import ipaddress
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from .exceptions import ConfigurationError, ReceiverError

log = logging.getLogger(__name__)
for _name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

_live: dict[tuple[str, int], weakref.ref[ServerThread]] = {}
_live_lock = threading.Lock()


def check_port(port: object) -> None:
    """Refuse a listening port that is not an integer 0-65535 (0 = any free port)."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise ConfigurationError(f"port: must be an integer, got {port!r}")
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"port: {port!r} out of range; use 0 (any free port) to 65535")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerThread:
    """One uvicorn server on one daemon thread, bound to ``host:port`` (0 = any free port)."""

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "mp-nb-server",
        http: Any = "auto",
        on_stop: Callable[[], None] | None = None,
        backlog: int = 2048,
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.name = name
        self.http = http
        self.backlog = backlog
        self._on_stop = on_stop
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port: int | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        if self.requested_port:
            _stop_previous(self.host, self.requested_port)
        # a restart keeps the port it had, so URLs registered with callbacks stay right
        again = self.port if not self.requested_port else None
        try:
            sock = self._bind(self.requested_port or again or 0)
        except OSError as exc:
            if again is None:
                if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
                    hint = "give an address of this machine, e.g. 127.0.0.1"
                else:
                    hint = "use port=0 to pick a free port, or stop whatever holds this one"
                raise ReceiverError(
                    f"cannot listen on {self.host}:{self.requested_port}: "
                    f"{exc.strerror or exc}; {hint}"
                ) from exc
            sock = self._bind(0)
            log.warning("%s: port %s was taken meanwhile; now on port %s, so URLs registered "
                        "with the old port no longer reach it", self.name, again,
                        sock.getsockname()[1])
        sock.listen(self.backlog)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            http=self.http,
            timeout_keep_alive=30,
            server_header=False,
            date_header=True,
        )
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"{self.name}:{self.port}", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                self._release()
                raise ReceiverError(f"{self.name} failed to start on {self.base_url}")
            if time.monotonic() > deadline:
                self.stop()
                raise ReceiverError(f"{self.name} did not start within {timeout:.0f} s")
            time.sleep(0.005)
        with _live_lock:
            _live[(self.host, self.port)] = weakref.ref(self)
        _registry.add(self)

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException:  # never print from the thread; keep a record instead
            log.exception("%s crashed", self.name)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and release the port. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
        self._release()
        if self._on_stop is not None:
            self._on_stop()

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def _release(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with _live_lock:
            key = (self.host, self.port or -1)
            ref = _live.get(key)
            if ref is not None and ref() is self:
                del _live[key]
        _registry.discard(self)
        self._thread = None
        self._server = None


@dataclass
class ProtocolRefusal:
    """A request refused before it reached the application (raw, unredacted headers)."""

    status: int
    reason: str
    method: str | None
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    client: tuple[str, int] | None = None


#: ``hook(refusal, answer)``: record the refusal, then call ``answer()`` (from any thread) to
#: send the response and close the connection.
RefusalHook = Callable[[ProtocolRefusal, Callable[[], None]], None]

#: Set in the ASGI scope when the protocol refused a request whose application task had
#: already started (bad bytes in the body): the application must not answer or record it.
REFUSED_SCOPE_KEY = "mp_nb.refused"
DEFAULT_MAX_HEAD = 16 * 1024
DEFAULT_HEAD_TIMEOUT = 10.0


class _HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing an oversized request head."""


def guarded_http_protocol(
    *,
    max_head_bytes: int = DEFAULT_MAX_HEAD,
    head_timeout: float = DEFAULT_HEAD_TIMEOUT,
    on_refuse: RefusalHook | None = None,
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the limits httptools leaves to the server.

    * request target + headers over ``max_head_bytes`` → 414 (target alone) or 431;
    * a request head not complete ``head_timeout`` seconds after its first byte → 408, so a
      sender trickling bytes cannot hold a connection forever; a connection that sends nothing
      at all is closed silently after the same time;
    * bytes httptools cannot parse → 400 with the parser's own explanation.

    Each refusal goes to ``on_refuse`` before it is answered, and the connection is closed.
    Pass the result as ``ServerThread(..., http=...)``.
    """
    import httptools
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class GuardedHttpProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0
            self._head_timer: asyncio.TimerHandle | None = None
            self._overflow: tuple[int, str] | None = None
            self._refusing = False
            self._message_started = False

        # -- connection lifetime
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refusing:
                return
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            except httptools.HttpParserError as exc:
                if self._overflow is not None:
                    self._refuse(*self._overflow)
                else:
                    detail = str(exc) or type(exc).__name__
                    self._refuse(400, f"malformed HTTP request: {detail}")

        # -- parser callbacks
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._message_started = True
            self._arm()

        def on_url(self, url: bytes) -> None:
            self._count(len(url), target=True)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4, target=False)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            self._message_started = False
            super().on_headers_complete()

        # -- limits
        def _count(self, n: int, *, target: bool) -> None:
            self._head_bytes += n
            if self._head_bytes > max_head_bytes:
                if target:
                    reason = f"request target over the {max_head_bytes}-byte limit"
                    self._overflow = (414, reason)
                else:
                    reason = f"request headers over the {max_head_bytes}-byte limit"
                    self._overflow = (431, reason)
                raise _HeadTooLarge

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(head_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if not self._message_started:
                self.transport.close()  # connected, sent nothing: nothing to record
                return
            self._refuse(408, f"request head not complete within {head_timeout:g} s")

        # -- refusing
        def _refuse(self, status: int, reason: str) -> None:
            if self._refusing:
                return
            self._refusing = True
            self._disarm()
            self.transport.pause_reading()
            method = None
            if getattr(self, "url", b""):  # llhttp reports DELETE (0) before it read a method
                with contextlib.suppress(Exception):
                    method = self.parser.get_method().decode("ascii", "replace")
            headers = self.headers or []
            refusal = ProtocolRefusal(
                status=status, reason=reason, method=method,
                target=(getattr(self, "url", b"") or b"")[:2048].decode("latin-1"),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                client=self.client,
            )
            loop = self.loop
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                # the application is already reading this request: stop it, answer here
                cycle.scope[REFUSED_SCOPE_KEY] = reason  # type: ignore[literal-required]
                cycle.disconnected = True
                cycle.message_event.set()

            def answer() -> None:
                if self.transport.is_closing():
                    return
                if cycle is None or not cycle.response_started:
                    body = reason.encode("utf-8")
                    self.transport.write(b"".join([
                        STATUS_LINE[status],
                        b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: %d\r\n" % len(body),
                        b"connection: close\r\n\r\n",
                        body,
                    ]))
                self.transport.close()

            def answer_soon() -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(answer)

            if on_refuse is None:
                answer()
                return
            try:
                on_refuse(refusal, answer_soon)
            except Exception:
                log.exception("recording a refused request failed")
                answer()

    return GuardedHttpProtocol


def _stop_previous(host: str, port: int) -> None:
    """Stop a server this process still runs on (host, port): the re-run-cell case."""
    with _live_lock:
        ref = _live.get((host, port))
    old = ref() if ref is not None else None
    if old is not None and old.running:
        log.info("stopping the previous %s on %s to reuse its port", old.name, old.base_url)
        old.stop()


_registry: weakref.WeakSet[ServerThread] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_registry):
        try:
            server.stop(timeout=2.0)
        except Exception:  # pragma: no cover - interpreter is going away
            pass
