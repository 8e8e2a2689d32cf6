"""The local Model API's callback registry: validation, patch-merge, paging.

Errors are :class:`graphql.GraphQLError` with the real API's ``extensions.code`` so the
GraphQL layer returns them as-is.
"""

from __future__ import annotations

import base64
import secrets
import string
import threading
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError
from pydantic import SecretStr

from ..credentials import CredType
from ..models import (
    API_NAMES,
    credentials_problem,
    endpoint_url,
    event_types_problem,
    host_problem,
    path_problem,
    query_params_problem,
)

NOT_FOUND_MESSAGE = "Error fetching data"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_callback_id() -> str:
    """25 lowercase alphanumerics, the shape of Matterport's callback ids."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(25))


def invalid(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "request.invalid", "httpStatus": 400})


def not_found() -> GraphQLError:
    return GraphQLError(NOT_FOUND_MESSAGE, extensions={"code": "not.found", "httpStatus": 404})


@dataclass
class StoredCallback:
    """One registered callback, secret included (never returned by a query)."""

    id: str
    event_types: list[str]
    version: int
    scheme: str
    host: str
    port: int | None
    path: str
    query_params: list[tuple[str, str]] = field(default_factory=list)
    additional_headers: list[tuple[str, str]] = field(default_factory=list)
    cred_type: CredType | None = None
    cred_key: str | None = None
    cred_secret: SecretStr | None = None
    seq: int = 0  # registration order: what list offsets point at

    @property
    def url(self) -> str:
        return endpoint_url(self.scheme, self.host, self.port, self.path, self.query_params)

    def to_graphql(self) -> dict[str, Any]:
        """The ``ModelEventWebhookCallback`` output object (no secret)."""
        return {
            "id": self.id,
            "eventTypes": list(self.event_types),
            "version": self.version,
            "callback": {
                "scheme": self.scheme,
                "host": self.host,
                "port": self.port,
                "path": self.path,
                "queryParams": [{"key": k, "value": v} for k, v in self.query_params],
                "additionalHeaders": [{"key": k, "value": v} for k, v in self.additional_headers],
                "credType": self.cred_type.value if self.cred_type else None,
                "credKey": self.cred_key,
            },
        }


def _pairs(items: list[dict[str, str]] | None) -> list[tuple[str, str]]:
    """``[{key, value}]`` as tuples; the names are checked by the rules of their field."""
    return [(kv["key"], kv["value"]) for kv in items or []]


def _check_version(version: Any) -> int:
    if version not in (1, 2):
        raise invalid(f"version: {version} is not a webhook version; use 1 or 2")
    return int(version)


def _check_types(types: list[str], version: int) -> list[str]:
    problem = event_types_problem(types, version, API_NAMES)
    if problem:
        raise invalid(problem)
    return list(dict.fromkeys(types))


def _apply_callback(target: StoredCallback, cb: dict[str, Any]) -> None:
    """Merge a ``WebhookCallbackInput`` into ``target``: only the keys present change.

    ``queryParams`` and ``additionalHeaders`` are replaced as a whole when given; a
    ``credSecret`` left out (or empty) keeps the stored one; ``credType: null`` clears the
    credentials.
    """
    if "scheme" in cb and cb["scheme"] is not None:
        if cb["scheme"] not in ("http", "https"):
            raise invalid(f"callback.scheme: {cb['scheme']!r} not supported; use http or https")
        target.scheme = cb["scheme"]
    if "host" in cb and cb["host"] is not None:
        host = cb["host"].strip()
        problem = host_problem(host)
        if problem:
            raise invalid(f"callback.host: {problem}")
        target.host = host
    if "port" in cb:
        port = cb["port"]
        if port is not None and not 1 <= port <= 65535:
            raise invalid(f"callback.port: {port} out of range 1-65535")
        target.port = port
    if "path" in cb and cb["path"] is not None:
        problem = path_problem(cb["path"])
        if problem:
            raise invalid(f"callback.path: {problem}")
        target.path = cb["path"].lstrip("/")
    if "queryParams" in cb:
        params = _pairs(cb["queryParams"])
        problem = query_params_problem(params)
        if problem:
            raise invalid(f"callback.queryParams: {problem}")
        target.query_params = params
    if "additionalHeaders" in cb:
        target.additional_headers = _pairs(cb["additionalHeaders"])
    if "credType" in cb:
        target.cred_type = CredType(cb["credType"]) if cb["credType"] else None
        if target.cred_type is None:
            target.cred_key = None
            target.cred_secret = None
    if "credKey" in cb:
        target.cred_key = cb["credKey"] or None
    if cb.get("credSecret"):
        target.cred_secret = SecretStr(cb["credSecret"])
    problem = credentials_problem(
        target.cred_type.value if target.cred_type else None,
        target.cred_key,
        target.cred_secret.get_secret_value() if target.cred_secret else None,
        target.additional_headers,
        API_NAMES,
    )
    if problem:
        raise invalid(problem)


class Registry:
    """Thread-safe store of callbacks for one organization."""

    def __init__(self) -> None:
        self._items: dict[str, StoredCallback] = {}  # in registration order
        self._lock = threading.RLock()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, callback_id: str) -> StoredCallback:
        with self._lock:
            item = self._items.get(callback_id)
        if item is None:
            raise not_found()
        return item

    def all(self) -> list[StoredCallback]:
        with self._lock:
            return list(self._items.values())

    def add(self, data: dict[str, Any]) -> StoredCallback:
        version = _check_version(data.get("version") if data.get("version") is not None else 1)
        cb = data.get("callback")
        if not cb or not cb.get("host"):
            raise invalid("callback.host: required; give the host that receives deliveries")
        types = _check_types(list(data.get("eventTypes") or []), version)
        item = StoredCallback(
            id=new_callback_id(), event_types=types, version=version,
            scheme="https", host="", port=None, path="",
        )
        _apply_callback(item, cb)
        with self._lock:
            self._seq += 1
            item.seq = self._seq
            self._items[item.id] = item
        return item

    def patch(self, callback_id: str, data: dict[str, Any]) -> StoredCallback:
        with self._lock:
            current = self.get(callback_id)
            draft = StoredCallback(**{**current.__dict__})
            draft.query_params = list(current.query_params)
            draft.additional_headers = list(current.additional_headers)
            if data.get("version") is not None:
                draft.version = _check_version(data["version"])
            if data.get("eventTypes") is not None:
                draft.event_types = list(data["eventTypes"])
            draft.event_types = _check_types(draft.event_types, draft.version)
            if data.get("callback"):
                _apply_callback(draft, data["callback"])
            self._items[callback_id] = draft
            return draft

    def remove(self, callback_id: str) -> bool:
        with self._lock:
            if self._items.pop(callback_id, None) is None:
                raise not_found()
        return True

    def add_events(self, callback_id: str, types: list[str]) -> StoredCallback:
        with self._lock:
            current = self.get(callback_id)
            current.event_types = _check_types(current.event_types + list(types), current.version)
            return current

    def remove_events(self, callback_id: str, types: list[str]) -> StoredCallback:
        with self._lock:
            current = self.get(callback_id)
            left = [t for t in current.event_types if t not in set(types)]
            if not left:
                raise invalid(
                    "eventTypes: removing these would leave no event type; "
                    "remove the callback instead"
                )
            current.event_types = left
            return current

    def page(self, offset: str | None, page_size: int | None) -> dict[str, Any]:
        size = 10 if page_size is None else page_size
        if not 1 <= size <= 1000:
            raise invalid(f"pageSize: {size} out of range 1-1000")
        after = decode_offset(offset)
        with self._lock:
            items = list(self._items.values())
        # a keyset, not a position: callbacks removed while someone pages never make the
        # next page skip one that is still there
        rest = [c for c in items if c.seq > after]
        chunk = rest[:size]
        more = len(rest) > size
        return {
            "nextOffset": encode_offset(chunk[-1].seq) if more else None,
            "totalResults": len(items),
            "results": [c.to_graphql() for c in chunk],
        }


def encode_offset(seq: int) -> str:
    """An opaque offset: the registration number of the last callback on the page."""
    return base64.urlsafe_b64encode(f"cb:{seq}".encode()).decode().rstrip("=")


def decode_offset(offset: str | None) -> int:
    if offset in (None, ""):
        return 0
    try:
        text = base64.urlsafe_b64decode(offset + "=" * (-len(offset) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "cb" or not number.isdigit():
            raise ValueError
        return int(number)
    except (ValueError, UnicodeDecodeError):
        raise invalid(
            f"offset: {offset!r} is not an offset this API returned; pass back nextOffset"
        ) from None
