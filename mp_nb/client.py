"""ModelApiClient: manage webhook callbacks through the Model API's GraphQL operations.

One method per operation, synchronous, explicit timeouts. Auth is an API token (HTTP Basic,
id + secret) or an OAuth access token (Bearer), from arguments or the environment
(``MATTERPORT_TOKEN_ID``, ``MATTERPORT_TOKEN_SECRET``, ``MATTERPORT_ACCESS_TOKEN``,
``MATTERPORT_API_URL``). GraphQL ``errors`` in an HTTP 200 are failures and raise the typed
exceptions of :mod:`mp_nb.exceptions`. Reads and pings are retried with backoff on 429, 5xx
and connection errors; adds, patches and removes never are.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr, ValidationError

from . import operations as ops
from .credentials import CredType
from .exceptions import (
    CODE_TO_ERROR,
    ApiError,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    PagingError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
)
from .models import (
    Callback,
    CallbackPage,
    CallbackTarget,
    EventType,
    KeyValue,
    as_cred_type,
    as_secret,
    check_event_types,
    check_version,
    credentials_problem,
    query_params_problem,
    split_url,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_URL = "https://api.matterport.com/api/models/graph"
#: The longest a ``Retry-After`` header may make the client wait between two attempts.
MAX_RETRY_AFTER = 30.0
_UNSET: Any = object()
_SECRET_KEYS = {"credSecret"}


class ModelApiClient:
    """A client for the webhook operations of Matterport's Model API (real or local).

    >>> client = ModelApiClient()          # real API, credentials from the environment
    >>> cb = client.add_callback("https://example.com/hook", ["processed"])  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | None = None,
        token_id: str | None = None,
        token_secret: str | SecretStr | None = None,
        *,
        access_token: str | SecretStr | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        page_size: int = 100,
        max_pages: int = 10_000,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url or os.environ.get("MATTERPORT_API_URL") or DEFAULT_URL
        if "@" in urlsplit(self.url).netloc:
            raise ConfigurationError(
                "url: contains credentials (user:password@); pass token_id/token_secret "
                "(or set MATTERPORT_TOKEN_ID/MATTERPORT_TOKEN_SECRET) instead")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigurationError(f"url: {self.url!r} is not an http(s) URL of the Model API")
        self.token_id = token_id or os.environ.get("MATTERPORT_TOKEN_ID") or None
        self._token_secret = as_secret(
            token_secret or os.environ.get("MATTERPORT_TOKEN_SECRET") or None, "token_secret")
        self._access_token = as_secret(
            access_token or os.environ.get("MATTERPORT_ACCESS_TOKEN") or None, "access_token")
        if self._access_token is None and not (self.token_id and self._token_secret):
            raise ConfigurationError(
                "token_id/token_secret: no credentials. Pass token_id and token_secret (an API "
                "token from Matterport Cloud > Settings > Developer Tools), access_token, or set "
                "MATTERPORT_TOKEN_ID and MATTERPORT_TOKEN_SECRET."
            )
        if not 1 <= page_size <= 1000:
            raise ConfigurationError("page_size: must be between 1 and 1000")
        self.page_size = page_size
        self.max_pages = max_pages
        self.retries = max(0, retries)
        self.backoff = backoff
        auth: httpx.Auth | None = None
        headers = {"User-Agent": "mp_nb", "Accept": "application/json"}
        if self._access_token is not None:
            headers["Authorization"] = f"Bearer {self._access_token.get_secret_value()}"
        else:
            assert self.token_id and self._token_secret
            auth = httpx.BasicAuth(self.token_id, self._token_secret.get_secret_value())
        self._http = httpx.Client(
            auth=auth, headers=headers, transport=transport, trust_env=transport is None,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        self.last_operation: tuple[str, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ plumbing

    def __repr__(self) -> str:
        who = "access_token=***" if self._access_token else f"token_id={self.token_id!r}"
        return f"<ModelApiClient {self.url} {who}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ModelApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last_graphql(self) -> str:
        """The last document sent and its variables, with secrets masked (for teaching)."""
        if self.last_operation is None:
            return ""
        document, variables = self.last_operation
        return document.strip() + "\n\nvariables: " + json.dumps(variables, indent=2)

    def execute(self, document: str, variables: dict[str, Any] | None = None,
                *, retry: bool = False) -> dict[str, Any]:
        """Send one GraphQL request; returns ``data`` or raises a typed :class:`ApiError`."""
        variables = variables or {}
        self.last_operation = (document, _mask(variables))
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(1, attempts + 1):
            try:
                return self._execute_once(document, variables)
            except (TransportError, RateLimitError, ServerError) as exc:
                if attempt >= attempts:
                    raise
                delay = self.backoff * 2 ** (attempt - 1)
                if isinstance(exc, RateLimitError) and exc.retry_after is not None:
                    delay = min(max(delay, exc.retry_after), MAX_RETRY_AFTER)
                log.info("retrying after %s (attempt %d/%d, %.2fs)", exc, attempt, attempts, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _execute_for(self, callback_id: str, document: str, variables: dict[str, Any],
                     retry: bool = False) -> dict[str, Any]:
        """:meth:`execute` for an operation on one callback: a not-found error names the id."""
        try:
            return self.execute(document, variables, retry=retry)
        except NotFoundError as exc:
            exc.detail = f"no callback with id {callback_id!r}"
            raise

    def _execute_once(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        response, body = self._send("POST", self.url,
                                    json={"query": document, "variables": variables})
        status = response.status_code
        if not isinstance(body, dict):
            raise ApiError(f"not a GraphQL response from {self.url} (HTTP {status}): "
                           f"{response.text[:200]!r}", status=status)
        errors = body.get("errors")
        if errors:
            code = _first_code(errors)
            cls = CODE_TO_ERROR.get(code or "", ApiError)
            raise cls(_first_message(errors) or "GraphQL error", code=code, status=status,
                      errors=errors)
        if status >= 400:
            raise ApiError(f"HTTP {status} from {self.url}", status=status)
        data = body.get("data")
        if not isinstance(data, dict):
            raise ApiError(f"GraphQL response without data from {self.url}", status=status)
        return data

    def _send(self, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, Any]:
        """One HTTP request; the JSON body (None if not JSON), or the error every route shares:
        no answer, expired OAuth token, 401, 403, 429, 5xx."""
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransportError(f"timed out talking to {url}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {url}: {exc}") from exc
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if status == 400 and isinstance(body, dict) and body.get("error") == "invalid_grant":
            raise AuthenticationError(
                "access token expired or revoked (invalid_grant); get a new one from the "
                "OAuth token endpoint", code="invalid_grant", status=status)
        errors = body.get("errors") if isinstance(body, dict) else None
        if status == 401:
            message = _first_message(errors) or "credentials rejected"
            hint = ("the OAuth access token" if self._access_token is not None else
                    "the API token id and secret (MATTERPORT_TOKEN_ID / MATTERPORT_TOKEN_SECRET)")
            raise AuthenticationError(
                f"{message}; check {hint}", code=_first_code(errors) or "request.unauthenticated",
                status=status, errors=errors)
        if status == 403:
            raise PermissionDeniedError(
                f"{_first_message(errors) or 'forbidden'}; these credentials may not manage "
                "webhooks (an Enterprise account with the webhook unlock is needed)",
                code=_first_code(errors) or "request.unauthorized", status=status, errors=errors)
        if status == 429:
            raise RateLimitError("rate limited by the Model API", status=status, errors=errors,
                                 retry_after=_retry_after(response.headers.get("retry-after")))
        if status >= 500:
            raise ServerError(_first_message(errors) or f"server error from {url}",
                              code=_first_code(errors), status=status, errors=errors)
        return response, body

    def local_attempts(self) -> pd.DataFrame:
        """The delivery attempt log of a *local* Model API (``/_local/attempts``), one row
        per HTTP attempt. The real Matterport API has no such log."""
        from .local_api.delivery import ATTEMPTS_PATH, attempts_frame

        parts = httpx.URL(self.url)
        url = parts.copy_with(path=ATTEMPTS_PATH, query=None)
        response, body = self._send("GET", str(url))
        if response.status_code == 404 or not isinstance(body, dict) or "attempts" not in body:
            raise ApiError(f"{parts.host} serves no attempt log at {ATTEMPTS_PATH}: only "
                           "mp_nb's local Model API has one", status=response.status_code)
        if response.status_code >= 400:
            raise ApiError(f"HTTP {response.status_code} from {url}", status=response.status_code)
        return attempts_frame(body["attempts"])

    # ------------------------------------------------------------------ operations

    def add_callback(
        self,
        url: str | None = None,
        event_types: Iterable[str | EventType] | None = None,
        *,
        version: int = 1,
        cred_type: CredType | str | None = None,
        cred_key: str | None = None,
        cred_secret: str | SecretStr | None = None,
        query_params: Any = None,
        additional_headers: Any = None,
        target: CallbackTarget | None = None,
    ) -> Callback:
        """Register a callback (``addModelEventWebhookCallback``).

        ``url`` is split into scheme, host, port, path and query params; ``event_types``
        defaults to every type of the webhook ``version`` (1 or 2).
        """
        check_version(version)
        types = _types(event_types, version)
        if target is None:
            if url is None:
                raise ConfigurationError(
                    "url: give the callback URL (or target=CallbackTarget(...))")
            target = _target(url, cred_type=cred_type, cred_key=cred_key, cred_secret=cred_secret,
                             query_params=query_params, additional_headers=additional_headers)
        variables = {"input": {"eventTypes": types, "callback": target.to_graphql(),
                               "version": version}}
        data = self.execute(ops.ADD_CALLBACK, variables)
        return Callback.model_validate(data["addModelEventWebhookCallback"])

    def callbacks_page(
        self, offset: str | None = None, page_size: int | None = None
    ) -> CallbackPage:
        """One page of ``modelEventWebhookCallbacks``."""
        if page_size is not None and (isinstance(page_size, bool) or not isinstance(page_size, int)):
            raise ConfigurationError(f"page_size: must be an integer 1-1000, got {page_size!r}")
        variables = {"offset": offset, "pageSize": self.page_size if page_size is None else page_size}
        data = self.execute(ops.LIST_CALLBACKS, variables, retry=True)
        page = data.get("modelEventWebhookCallbacks")
        return CallbackPage.model_validate(page or {})

    def iter_callbacks(self, page_size: int | None = None) -> Iterator[Callback]:
        """Every callback, following ``nextOffset`` page by page."""
        offset: str | None = None
        seen: set[str] = set()
        for _ in range(self.max_pages):
            page = self.callbacks_page(offset, page_size)
            yield from page.results
            if not page.next_offset:
                return
            if page.next_offset in seen:
                raise PagingError(f"server returned nextOffset {page.next_offset!r} twice; "
                                  "stopping instead of looping forever")
            seen.add(page.next_offset)
            offset = page.next_offset
        raise PagingError(f"more than {self.max_pages} pages; raise max_pages if that is real")

    def callbacks(self, page_size: int | None = None) -> list[Callback]:
        """Every registered callback (all pages)."""
        return list(self.iter_callbacks(page_size))

    def callbacks_frame(self) -> pd.DataFrame:
        """Every callback as a DataFrame (id, version, event_types, url, cred_type, ...)."""
        import pandas as pd

        rows = [cb.summary() for cb in self.callbacks()]
        frame = pd.DataFrame(rows, columns=["id", "version", "event_types", "url", "cred_type",
                                            "cred_key", "headers"])
        frame["version"] = frame["version"].astype("Int8")
        return frame.astype({c: "string" for c in frame.columns if c != "version"})

    def get_callback(self, callback_id: str) -> Callback:
        """One callback by id (the API has no single-item query, so this scans the list)."""
        _require_id(callback_id)
        for cb in self.iter_callbacks():
            if cb.id == callback_id:
                return cb
        error = NotFoundError("Error fetching data", code="not.found")
        error.detail = f"no callback with id {callback_id!r}"
        raise error

    def patch_callback(
        self,
        callback_id: str,
        *,
        url: str | None = None,
        event_types: Iterable[str | EventType] | None = None,
        version: int | None = None,
        cred_type: Any = _UNSET,
        cred_key: Any = _UNSET,
        cred_secret: Any = _UNSET,
        query_params: Any = None,
        additional_headers: Any = None,
    ) -> Callback:
        """Change a callback (``patchModelEventWebhookCallback``). Only what you pass changes;
        a secret left out keeps the stored one."""
        _require_id(callback_id)
        data: dict[str, Any] = {}
        if version is not None:
            check_version(version)
            data["version"] = version
        if event_types is not None:
            data["eventTypes"] = _types(event_types, version)
        cb: dict[str, Any] = {}
        if url is not None:
            fields = split_url(url)
            cb.update(scheme=fields["scheme"], host=fields["host"], port=fields["port"],
                      path=fields["path"])
            cb["queryParams"] = [kv.model_dump() for kv in fields["query_params"]]
        if query_params is not None:
            params = _kvs(query_params, "query_params")
            problem = query_params_problem([(kv.key, kv.value) for kv in params])
            if problem:
                raise ConfigurationError(f"query_params: {problem}")
            cb["queryParams"] = cb.get("queryParams", []) + [kv.model_dump() for kv in params]
        if additional_headers is not None:
            headers = _kvs(additional_headers, "additional_headers")
            problem = credentials_problem(None, None, None, [(kv.key, kv.value) for kv in headers])
            if problem:
                raise ConfigurationError(problem)
            cb["additionalHeaders"] = [kv.model_dump() for kv in headers]
        if cred_type is not _UNSET:
            kind = as_cred_type(cred_type)
            cb["credType"] = kind.value if kind is not None else None
        if cred_key is not _UNSET:
            if cred_key is not None and not isinstance(cred_key, str):
                raise ConfigurationError(f"cred_key: must be a string, got {type(cred_key).__name__}")
            cb["credKey"] = cred_key
        secret = as_secret(None if cred_secret is _UNSET else cred_secret, "cred_secret")
        if secret is not None:
            if not secret.get_secret_value():
                raise ConfigurationError(
                    "cred_secret: empty; leave it out to keep the stored secret")
            cb["credSecret"] = secret.get_secret_value()
        if cb:
            data["callback"] = cb
        if not data:
            raise ConfigurationError("patch_callback: nothing to change; pass url, event_types, "
                                     "version, credentials, query_params or additional_headers")
        result = self._execute_for(callback_id, ops.PATCH_CALLBACK, {"id": callback_id, "input": data})
        return Callback.model_validate(result["patchModelEventWebhookCallback"])

    def remove_callback(self, callback_id: str) -> bool:
        """Delete a callback (``removeModelEventWebhookCallback``)."""
        _require_id(callback_id)
        data = self._execute_for(callback_id, ops.REMOVE_CALLBACK, {"id": callback_id})
        return bool(data["removeModelEventWebhookCallback"])

    def ping_callback(self, callback_id: str) -> bool:
        """Deliver a test event (``pingModelEventWebhookCallback``); True if it was accepted."""
        _require_id(callback_id)
        data = self._execute_for(callback_id, ops.PING_CALLBACK, {"id": callback_id}, retry=True)
        return bool(data["pingModelEventWebhookCallback"])

    def add_event_types(self, callback_id: str, event_types: Iterable[str | EventType]) -> Callback:
        """Subscribe an existing callback to more types (``addModelEventToCallback``)."""
        _require_id(callback_id)
        types = _types(event_types, None)
        data = self._execute_for(callback_id, ops.ADD_EVENTS, {"id": callback_id, "eventTypes": types})
        return Callback.model_validate(data["addModelEventToCallback"])

    def remove_event_types(
        self, callback_id: str, event_types: Iterable[str | EventType]
    ) -> Callback:
        """Unsubscribe types (``removeModelEventFromCallback``)."""
        _require_id(callback_id)
        types = _types(event_types, None)
        data = self._execute_for(callback_id, ops.REMOVE_EVENTS, {"id": callback_id, "eventTypes": types})
        return Callback.model_validate(data["removeModelEventFromCallback"])


# ---------------------------------------------------------------------- helpers


def _types(event_types: Iterable[str | EventType] | None, version: int | None) -> list[str]:
    from .models import event_types_for

    if event_types is None:
        return list(event_types_for(version or 1))
    if isinstance(event_types, str | EventType):
        event_types = [event_types]
    out = []
    for t in event_types:
        value = t.value if isinstance(t, EventType) else str(t).strip()
        if value not in EventType.__members__:
            raise ConfigurationError(
                f"event_types: {value!r} is not a Matterport event type; known types: "
                + ", ".join(EventType.__members__))
        out.append(value)
    if not out:
        raise ConfigurationError("event_types: give at least one event type")
    if version is not None:
        check_event_types(out, version)
    return out


def _kvs(value: Any, field: str) -> list[KeyValue]:
    from .models import _pairs

    try:
        return [KeyValue.model_validate(kv) for kv in _pairs(value, field)]
    except ValidationError as exc:
        raise ConfigurationError(
            f"{field}: expected a dict or (key, value) pairs ({exc.errors()[0]['msg']})"
        ) from None


def _target(url: str, **kwargs: Any) -> CallbackTarget:
    try:
        return CallbackTarget.from_url(url, **{k: v for k, v in kwargs.items() if v is not None})
    except ValidationError as exc:
        raise ConfigurationError(_validation_message(exc)) from None


def _validation_message(exc: ValidationError) -> str:
    """``field: problem`` from pydantic's first error (our validators already name the field)."""
    first = exc.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    where = ".".join(str(p) for p in first["loc"])
    if not where or message.startswith(where):
        return message
    return f"{where}: {message}"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only), else None."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _require_id(callback_id: str) -> None:
    if not isinstance(callback_id, str):
        raise ConfigurationError(f"callback_id: must be a string (an id from client.callbacks()), "
                                 f"got {type(callback_id).__name__}")
    if not callback_id.strip():
        raise ConfigurationError("callback_id: empty; use an id from client.callbacks()")



def _first_message(errors: Any) -> str | None:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        msg = errors[0].get("message")
        return str(msg) if msg is not None else None
    return None


def _first_code(errors: Any) -> str | None:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        ext = errors[0].get("extensions") or {}
        code = ext.get("code") if isinstance(ext, dict) else None
        return str(code) if code is not None else None
    return None


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("***" if k in _SECRET_KEYS and v else _mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value
