"""LocalModelApi: the webhook part of Matterport's Model API, served on this machine.

A real HTTP server (uvicorn on a background thread) with two routes:

* ``/api/models/graph`` — GraphQL with the schema in ``mp_nb/schema.graphql``: POST with a
  JSON body (or ``application/graphql``), or GET with ``?query=`` (queries only: a mutation
  over GET is answered 405, as the GraphQL-over-HTTP spec asks). Standard introspection is
  on, so GraphiQL-style tools and generic GraphQL clients can load the schema.
* ``/_local/attempts`` — GET: the delivery attempt log as JSON (``{"attempts": [...]}``),
  for ``mp-nb attempts`` and for anyone who is not in the Python process.

Both need the same auth as the real API: HTTP Basic with the token id/secret, or a Bearer
access token (``api.access_token``; after ``expire_access_token()`` the old one gets HTTP 400
``{"error": "invalid_grant"}``, like Matterport's OAuth). Errors are shaped like the real
API's (``errors[].message``, ``errors[].extensions.code``), and registered callbacks get
real deliveries (see :mod:`.delivery`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import json
import secrets
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
from graphql import (
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    build_schema,
    execute,
    parse,
    validate,
)

from .._server import ServerThread, check_port
from ..events import PING_MODEL_ID
from .delivery import ATTEMPTS_PATH, Deliverer, RetryPolicy
from .registry import Registry, StoredCallback
from .simulator import Occurrence, Simulator, iso_utc

GRAPH_PATH = "/api/models/graph"
MAX_REQUEST_BYTES = 1024 * 1024


@cache
def schema_sdl() -> str:
    """The SDL text of the API schema shipped with mp_nb."""
    return resources.files("mp_nb").joinpath("schema.graphql").read_text(encoding="utf-8")


@cache
def api_schema() -> GraphQLSchema:
    """The executable schema (resolvers are supplied per server as the root value)."""
    return build_schema(schema_sdl())


def validate_document(document: str) -> list[GraphQLError]:
    """GraphQL validation errors of ``document`` against the schema (empty when valid)."""
    try:
        ast = parse(document)
    except GraphQLError as exc:
        return [exc]
    return list(validate(api_schema(), ast))


class _Root:
    """Root value whose attributes resolve the Query and Mutation fields."""

    def __init__(self, api: LocalModelApi) -> None:
        self.api = api
        reg = api.registry
        self.modelEventWebhookCallbacks = (
            lambda info, offset=None, pageSize=10: reg.page(offset, pageSize))
        self.addModelEventWebhookCallback = lambda info, input: reg.add(input).to_graphql()
        self.patchModelEventWebhookCallback = (
            lambda info, id, input: reg.patch(id, input).to_graphql())
        self.removeModelEventWebhookCallback = lambda info, id: reg.remove(id)
        self.addModelEventToCallback = (
            lambda info, id, eventTypes: reg.add_events(id, eventTypes).to_graphql())
        self.removeModelEventFromCallback = (
            lambda info, id, eventTypes: reg.remove_events(id, eventTypes).to_graphql())

    async def pingModelEventWebhookCallback(self, info: Any, id: str) -> bool:
        return await self.api._ping(self.api.registry.get(id))


class LocalModelApi:
    """The local Model API: GraphQL server, callback registry, delivery, simulator.

    >>> with LocalModelApi() as api:                                   # doctest: +SKIP
    ...     client = ModelApiClient(api.url, api.token_id, api.token_secret)
    ...     api.simulate.lifecycle(3)
    """

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        token_id: str | None = None,
        token_secret: str | None = None,
        retry: RetryPolicy | None = None,
        allow_remote_delivery: bool = False,
        seed: int | None = None,
        start: bool = True,
    ) -> None:
        check_port(port)
        self.token_id = token_id or "local-" + secrets.token_hex(8)
        self._token_secret = token_secret or secrets.token_urlsafe(24)
        self.access_token = secrets.token_urlsafe(32)
        self._expired_tokens: set[str] = set()
        self.registry = Registry()
        self.deliverer = Deliverer(retry, allow_remote=allow_remote_delivery)
        self.simulate = Simulator(self.dispatch, seed=seed)
        self._root = _Root(self)
        self._server = ServerThread(self._asgi, host=host, port=port, name="mp-nb-local-api",
                                    on_stop=self.deliverer.stop)
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalModelApi:
        self._server.start()
        self.deliverer.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> LocalModelApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The GraphQL endpoint, e.g. ``http://127.0.0.1:PORT/api/models/graph``."""
        return self._server.base_url + GRAPH_PATH

    @property
    def token_secret(self) -> str:
        """The API token secret (kept out of the repr)."""
        return self._token_secret

    @property
    def running(self) -> bool:
        return self._server.running

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"<LocalModelApi {self.url} {state}, token_id={self.token_id!r}, "
                f"{len(self.registry)} callbacks>")

    def expire_access_token(self) -> None:
        """Make the current Bearer access token expire (HTTP 400 invalid_grant), issue a new one."""
        self._expired_tokens.add(self.access_token)
        self.access_token = secrets.token_urlsafe(32)

    # ------------------------------------------------------------------ delivery

    def dispatch(self, occ: Occurrence) -> int:
        """Send one occurrence to every callback subscribed to its type; returns how many."""
        sent = 0
        for cb in self.registry.all():
            rendered = _render(occ, cb)
            if rendered is None:
                continue
            etype, payload = rendered
            self.deliverer.enqueue(cb, _json_bytes(payload), etype, occ.model_id)
            sent += 1
        return sent

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued delivery has finished (delivered or given up)."""
        return self.deliverer.drain(timeout)

    def attempts(self) -> pd.DataFrame:
        """The delivery attempt log: one row per HTTP attempt, with status and latency."""
        return self.deliverer.attempts_frame()

    async def _ping(self, cb: StoredCallback) -> bool:
        etype = cb.event_types[0]  # the registry never leaves a callback without types
        body = _json_bytes(ping_payload(cb, etype))
        return await self.deliverer.ping(cb, body, etype)

    # ------------------------------------------------------------------ HTTP

    def _authenticate(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                return 401, _error_body("Malformed Basic credentials", "request.unauthenticated")
            ok = hmac.compare_digest(user, self.token_id.encode()) & hmac.compare_digest(
                password, self._token_secret.encode())
            if ok:
                return None
            return 401, _error_body("Invalid API token", "request.unauthenticated")
        if scheme.lower() == "bearer":
            token = value.strip()
            if token in self._expired_tokens:
                return 400, {"error": "invalid_grant"}
            if hmac.compare_digest(token.encode(), self.access_token.encode()):
                return None
            return 401, _error_body("Invalid access token", "request.unauthenticated")
        return 401, _error_body(
            "Authentication required: HTTP Basic with an API token id and secret",
            "request.unauthenticated")

    async def _asgi(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_REQUEST_BYTES:
                await _send_json(send, 413, _error_body("Request too large", "request.invalid"))
                return
        path = scope["path"].rstrip("/")
        if path not in (GRAPH_PATH, ATTEMPTS_PATH):
            await _send_json(send, 404, _error_body(
                f"No API at {scope['path']}; use {GRAPH_PATH}", "not.found"))
            return
        allowed = ("GET", "POST") if path == GRAPH_PATH else ("GET",)
        if method not in allowed:
            await _send_json(send, 405, _error_body(
                f"Use {' or '.join(allowed)} here", "request.invalid"),
                [(b"allow", ", ".join(allowed).encode())])
            return
        denied = self._authenticate(headers)
        if denied is not None:
            await _send_json(send, denied[0], denied[1],
                             [(b"www-authenticate", b'Basic realm="Matterport Model API"')])
            return
        if path == ATTEMPTS_PATH:
            await _send_json(send, 200, {"attempts": self.deliverer.attempt_rows()})
            return
        try:
            request = _graphql_request(method, scope.get("query_string", b""), headers, body)
        except ValueError as exc:
            await _send_json(send, 400, _error_body(str(exc), "request.invalid"))
            return
        status, result = await self.execute(**request, read_only=method == "GET")
        extra = [(b"allow", b"POST")] if status == 405 else None
        await _send_json(send, status, result, extra)

    async def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        operation_name: str | None = None,
        *,
        read_only: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Run one GraphQL request; returns (HTTP status, response body).

        ``read_only`` (a GET request) refuses mutations with HTTP 405.
        """
        try:
            document = parse(query)
        except GraphQLError as exc:
            return 400, {"errors": [_formatted(exc, "request.invalid")]}
        problems = validate(api_schema(), document)
        if problems:
            return 400, {"errors": [_formatted(e, "request.invalid") for e in problems]}
        if read_only and _is_mutation(document, operation_name):
            return 405, _error_body("Mutations need POST; GET only runs queries",
                                    "request.invalid")
        outcome = execute(api_schema(), document, root_value=self._root,
                          variable_values=variables, operation_name=operation_name)
        result: ExecutionResult = await outcome if inspect.isawaitable(outcome) else outcome
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            whole_request_failed = result.data is None
            body["errors"] = [
                _formatted(e, "request.invalid" if whole_request_failed else "error.internal")
                for e in result.errors
            ]
            if whole_request_failed:
                return 400, body
        return 200, body


def _is_mutation(document: Any, operation_name: str | None) -> bool:
    """True if the operation that would run is a mutation."""
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        ops = [d for d in ops if d.name is not None and d.name.value == operation_name]
    return len(ops) == 1 and ops[0].operation is OperationType.MUTATION


def _render(occ: Occurrence, cb: StoredCallback) -> tuple[str, dict[str, Any]] | None:
    part = occ.v2 if cb.version == 2 else occ.v1
    if part is None or part[0] not in cb.event_types:
        return None
    payload = occ.v2_payload(cb.id) if cb.version == 2 else occ.v1_payload()
    assert payload is not None
    return part[0], payload


def ping_payload(cb: StoredCallback, event_type: str) -> dict[str, Any]:
    """The test event a ping delivers: the callback's shape, fake model id, ``ping: true``."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    if cb.version == 2:
        return {
            "modelId": PING_MODEL_ID, "version": 0, "webhookId": cb.id, "webhookCustomKey": None,
            "timestamp": iso_utc(now),
            "type": event_type, "body": {}, "ping": True,
        }
    return {
        "type": event_type, "modelId": PING_MODEL_ID, "timestamp": int(now.timestamp() * 1000),
        "internalId": "ping", "createdBy": "ping@mp-nb.local", "data": {}, "ping": True,
    }


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _error_body(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def _formatted(error: GraphQLError, default_code: str) -> dict[str, Any]:
    out = error.formatted
    extensions = dict(out.get("extensions") or {})
    extensions.setdefault("code", default_code)
    out["extensions"] = extensions
    return out


def _graphql_request(
    method: str, query_string: bytes, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    if method == "GET":
        params = parse_qs(query_string.decode("latin-1"))
        if "query" not in params:
            raise ValueError("GET needs a query= parameter with the GraphQL document")
        variables = None
        if "variables" in params:
            try:
                variables = json.loads(params["variables"][0])
            except ValueError as exc:
                raise ValueError(f"variables= is not JSON: {exc}") from None
            if variables is not None and not isinstance(variables, dict):
                raise ValueError("variables= must be a JSON object")
        return {"query": params["query"][0], "variables": variables,
                "operation_name": params.get("operationName", [None])[0]}
    ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype == "application/graphql":
        return {"query": body.decode("utf-8", "replace"), "variables": None, "operation_name": None}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"Body is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("query"), str):
        raise ValueError('Body must be a JSON object with a "query" string')
    variables = data.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise ValueError('"variables" must be a JSON object')
    return {"query": data["query"], "variables": variables,
            "operation_name": data.get("operationName")}


async def _send_json(send: Callable[..., Any], status: int, data: dict[str, Any],
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})

