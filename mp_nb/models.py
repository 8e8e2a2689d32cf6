"""Data shapes of the webhook-management API: event types, callbacks, pages, URL splitting.

Input models (what users build) forbid unknown fields so a typo fails loudly; output models
(what the server sends) keep unknown fields so new platform fields are never lost.
"""

from __future__ import annotations

from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .credentials import CredType
from .exceptions import ConfigurationError

__all__ = [
    "V1_EVENT_TYPES",
    "V2_EVENT_TYPES",
    "Callback",
    "CallbackEndpoint",
    "CallbackPage",
    "CallbackTarget",
    "CredType",
    "EventType",
    "KeyValue",
    "endpoint_url",
    "split_url",
]


class EventType(str, Enum):
    """``ModelEventType``: every literal of webhooks v1 and v2."""

    uploaded = "uploaded"
    inserted = "inserted"
    processed = "processed"
    updated = "updated"
    deleted = "deleted"
    bundle_requested = "bundle_requested"
    bundle_completed = "bundle_completed"
    created = "created"
    activation_state_changed = "activation_state_changed"
    visibility_changed = "visibility_changed"
    details_changed = "details_changed"
    bundle_updated = "bundle_updated"
    transferred_in = "transferred_in"
    transferred_out = "transferred_out"
    restored = "restored"

    def __str__(self) -> str:
        return self.value


V1_EVENT_TYPES: tuple[str, ...] = (
    "uploaded",
    "inserted",
    "processed",
    "updated",
    "deleted",
    "bundle_requested",
    "bundle_completed",
)
V2_EVENT_TYPES: tuple[str, ...] = (
    "created",
    "processed",
    "activation_state_changed",
    "visibility_changed",
    "details_changed",
    "bundle_updated",
    "transferred_in",
    "transferred_out",
    "restored",
    "deleted",
)


def event_types_for(version: int) -> tuple[str, ...]:
    """The event-type literals a callback of this webhook version may subscribe to."""
    return V2_EVENT_TYPES if version == 2 else V1_EVENT_TYPES


def check_event_types(event_types: list[str], version: int) -> None:
    """Raise ConfigurationError if a type does not belong to the webhook version."""
    allowed = event_types_for(version)
    wrong = [t for t in event_types if t not in allowed]
    if wrong:
        other = 1 if version == 2 else 2
        raise ConfigurationError(
            f"eventTypes: {', '.join(wrong)} not valid for webhook version {version}; "
            f"version {version} accepts {', '.join(allowed)}"
            + (f" (use version={other} for these)" if all(t in event_types_for(other) for t in wrong) else "")
        )


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class KeyValue(_Model):
    """A query parameter or an extra header."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str
    value: str


DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_url(
    scheme: str, host: str, port: int | None, path: str, query_params: list[KeyValue] | None = None
) -> str:
    """``scheme://host[:port]/path?query`` — the URL a delivery is POSTed to."""
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    url = f"{scheme}://{netloc}/{quote(path.lstrip('/'), safe='/%:@!$&()*+,;=-._~')}"
    if query_params:
        url += "?" + urlencode([(kv.key, kv.value) for kv in query_params])
    return url


def split_url(url: str) -> dict[str, Any]:
    """Split a callback URL into the API's ``scheme host port path queryParams`` fields.

    >>> split_url("https://example.com:8443/hooks/mp?team=a")["path"]
    'hooks/mp'
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("url: empty; give a URL like https://example.com/hooks/matterport")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"url: scheme must be http or https, got {parts.scheme or 'none'!r} in {url!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            "url: contains credentials (user:password@); pass them as cred_key/cred_secret "
            "so they are sent as a header and never shown"
        )
    if not parts.hostname:
        raise ConfigurationError(f"url: no host in {url!r}")
    if parts.fragment:
        raise ConfigurationError(f"url: fragments (#{parts.fragment}) are never sent; remove it")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"url: port out of range 1-65535 in {url!r}") from exc
    if port == 0:
        raise ConfigurationError(f"url: port out of range 1-65535 in {url!r}")
    return {
        "scheme": parts.scheme,
        "host": parts.hostname,
        "port": port,
        "path": parts.path.lstrip("/"),
        "query_params": [
            KeyValue(key=k, value=v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
    }


def _pairs(value: Any, field: str) -> Any:
    """Accept dicts and (key, value) tuples as well as KeyValue lists."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [{"key": str(k), "value": str(v)} for k, v in value.items()]
    out = []
    for item in value:
        if isinstance(item, tuple | list) and len(item) == 2:
            out.append({"key": str(item[0]), "value": str(item[1])})
        else:
            out.append(item)
    return out


class CallbackTarget(_Model):
    """The ``callback`` input (``WebhookCallbackInput``): where and how to deliver.

    ``cred_secret`` is a ``SecretStr``: it never shows in a repr or a log line.
    """

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    scheme: str = "https"
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str = ""
    query_params: list[KeyValue] = Field(default_factory=list)
    additional_headers: list[KeyValue] = Field(default_factory=list)
    cred_type: CredType | None = None
    cred_key: str | None = None
    cred_secret: SecretStr | None = None

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if v not in ("http", "https"):
            raise ValueError("scheme must be 'http' or 'https'")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("host is empty; give a host name like example.com")
        if any(c in v for c in "/?#@ "):
            raise ValueError(f"host {v!r} must be a bare host name (no scheme, path or spaces)")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return v.lstrip("/")

    @field_validator("query_params", "additional_headers", mode="before")
    @classmethod
    def _kv(cls, v: Any, info: Any) -> Any:
        return _pairs(v, info.field_name)

    @model_validator(mode="after")
    def _creds(self) -> CallbackTarget:
        if self.cred_type is None and (self.cred_key or self.cred_secret):
            raise ValueError("cred_key/cred_secret given without cred_type ('basic' or 'token')")
        if self.cred_type is CredType.basic and not self.cred_key:
            raise ValueError("cred_type 'basic' needs cred_key (the user name)")
        if self.cred_type is not None and not (self.cred_secret and self.cred_secret.get_secret_value()):
            raise ValueError(f"cred_type {self.cred_type.value!r} needs a non-empty cred_secret")
        if self.cred_type is CredType.basic and self.cred_key and ":" in self.cred_key:
            raise ValueError("cred_key may not contain ':' for basic credentials (RFC 7617)")
        return self

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> CallbackTarget:
        """Build from a plain URL plus credential/header keyword arguments."""
        fields = split_url(url)
        extra_params = kwargs.pop("query_params", None)
        if extra_params:
            fields["query_params"] = fields["query_params"] + [
                KeyValue(**kv) if isinstance(kv, dict) else kv
                for kv in _pairs(extra_params, "query_params")
            ]
        return cls(**fields, **kwargs)

    @property
    def url(self) -> str:
        """The delivery URL (never contains credentials)."""
        return endpoint_url(self.scheme, self.host, self.port, self.path, self.query_params)

    def to_graphql(self, *, partial: bool = False) -> dict[str, Any]:
        """The GraphQL input object, secret included (only ever sent to the API)."""
        data = self.model_dump(
            by_alias=True, exclude_none=True, exclude_unset=partial, mode="json"
        )
        if self.cred_secret is not None:
            data["credSecret"] = self.cred_secret.get_secret_value()
        if self.cred_type is not None:
            data["credType"] = self.cred_type.value
        return data


class CallbackEndpoint(_Model):
    """The ``callback`` of a stored callback, as the API returns it (no secret)."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    scheme: str | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    query_params: list[KeyValue] = Field(default_factory=list)
    additional_headers: list[KeyValue] = Field(default_factory=list)
    cred_type: str | None = None
    cred_key: str | None = None

    @field_validator("query_params", "additional_headers", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v

    @property
    def url(self) -> str | None:
        if not (self.scheme and self.host):
            return None
        return endpoint_url(self.scheme, self.host, self.port, self.path or "", self.query_params)


class Callback(_Model):
    """A registered callback (``ModelEventWebhookCallback``)."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    id: str
    event_types: list[str] = Field(default_factory=list)
    callback: CallbackEndpoint = Field(default_factory=CallbackEndpoint)
    version: int | None = None

    @property
    def url(self) -> str | None:
        return self.callback.url

    def summary(self) -> dict[str, Any]:
        """One flat row for tables and DataFrames (never a secret: the API returns none)."""
        cb = self.callback
        return {
            "id": self.id,
            "version": self.version,
            "event_types": ", ".join(self.event_types),
            "url": cb.url,
            "cred_type": cb.cred_type,
            "cred_key": cb.cred_key,
            "headers": ", ".join(kv.key for kv in cb.additional_headers),
        }


class CallbackPage(_Model):
    """One page of ``modelEventWebhookCallbacks``."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    next_offset: str | None = None
    total_results: int | None = None
    results: list[Callback] = Field(default_factory=list)
