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
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import uvicorn

from .exceptions import ReceiverError

log = logging.getLogger(__name__)
for _name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

_live: dict[tuple[str, int], weakref.ref[ServerThread]] = {}
_live_lock = threading.Lock()


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
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError as exc:
            sock.close()
            raise ReceiverError(
                f"cannot listen on {self.host}:{self.requested_port}: {exc.strerror or exc}. "
                "Use port=0 to pick a free port, or stop whatever holds this one."
            ) from exc
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
