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
    "as_cred_type",
    "as_secret",
    "check_event_types",
    "check_version",
    "credentials_problem",
    "endpoint_url",
    "event_types_for",
    "event_types_problem",
    "host_problem",
    "path_problem",
    "query_params_problem",
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


#: How a field is named in messages: the Python argument, or the GraphQL input path.
PYTHON_NAMES = {
    "eventTypes": "event_types", "version": "version", "credType": "cred_type",
    "credKey": "cred_key", "credSecret": "cred_secret", "additionalHeaders": "additional_headers",
}
API_NAMES = {
    "eventTypes": "eventTypes", "version": "version", "credType": "callback.credType",
    "credKey": "callback.credKey", "credSecret": "callback.credSecret",
    "additionalHeaders": "callback.additionalHeaders",
}


def event_types_problem(
    event_types: list[str], version: int, names: dict[str, str] = PYTHON_NAMES
) -> str | None:
    """Why these types cannot go on one callback of ``version``, or None.

    A callback delivers one payload shape (its version's), so v1-only and v2-only literals
    cannot be mixed; ``processed`` and ``deleted`` exist in both versions.
    """
    field, vname = names["eventTypes"], names["version"]
    if not event_types:
        return f"{field}: give at least one event type"
    v1_only = [t for t in event_types if t in V1_EVENT_TYPES and t not in V2_EVENT_TYPES]
    v2_only = [t for t in event_types if t in V2_EVENT_TYPES and t not in V1_EVENT_TYPES]
    if v1_only and v2_only:
        return (
            f"{field}: cannot mix webhook v1 types ({', '.join(v1_only)}) with v2 types "
            f"({', '.join(v2_only)}) on one callback; a callback delivers one payload shape. "
            f"Register one callback with {vname} 1 and one with {vname} 2"
        )
    allowed = event_types_for(version)
    wrong = [t for t in event_types if t not in allowed]
    if not wrong:
        return None
    other = 1 if version == 2 else 2
    fits_other = not set(wrong) - set(event_types_for(other))
    hint = f" (use {vname} {other} for these)" if fits_other else ""
    return (f"{field}: {', '.join(wrong)} not valid for webhook version {version}; "
            f"version {version} accepts {', '.join(allowed)}{hint}")


def check_event_types(event_types: list[str], version: int) -> None:
    """Raise ConfigurationError if the types do not fit one callback of ``version``."""
    problem = event_types_problem(list(event_types), version)
    if problem:
        raise ConfigurationError(problem)


_HEADER_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
)
#: Headers an ``additionalHeaders`` entry may never set: HTTP framing and the body's type.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding", "connection"}
)
#: Headers that carry credentials: only ``credType``/``credKey``/``credSecret`` may set them,
#: because extra headers are returned by every list.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})


def header_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an HTTP header name (RFC 9110 token), or None."""
    if not name:
        return "a header name is empty"
    if not set(name) <= _HEADER_NAME_CHARS:
        return f"{name!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"
    return None


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot travel as an HTTP header value, or None (printable ASCII only)."""
    if any(c in value for c in "\r\n\0"):
        return "has a line break or NUL"
    if not value.isascii() or any(not (c.isprintable() or c == "\t") for c in value):
        return "must be printable ASCII (HTTP header values cannot carry other characters)"
    return None


def as_secret(value: object, field: str) -> SecretStr | None:
    """``value`` as a SecretStr (None stays None); anything else but a string is refused
    with a message that names its type, never its value."""
    if value is None or isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    raise ConfigurationError(f"{field}: must be a string, got {type(value).__name__} (value not shown)")


def check_version(version: object) -> None:
    """Refuse anything but the webhook versions 1 and 2 (``True`` included, though it equals 1)."""
    if isinstance(version, bool) or version not in (1, 2):
        raise ConfigurationError(f"version: must be the integer 1 or 2, got {version!r}")


def as_cred_type(value: object, field: str = "cred_type") -> CredType | None:
    """``value`` as a CredType (None = no credentials), or a ConfigurationError naming both kinds."""
    if value is None or isinstance(value, CredType):
        return value
    if isinstance(value, str) and value in CredType.__members__:
        return CredType(value)
    raise ConfigurationError(f"{field}: {value!r} is not a credential type; use 'basic', 'token' or None")


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:[]")


def _unprintable(text: str) -> str | None:
    """The first control or whitespace character in ``text`` (as shown in messages), or None."""
    for i, c in enumerate(text):
        if c.isspace() or not c.isprintable():
            return f"{c!r} at position {i}"
    return None


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be a callback's host (a bare DNS name or IP address), or None."""
    if not host:
        return "host is empty; give a host name like example.com"
    if any(c in host for c in "/?#@") or _unprintable(host):
        return f"host {host!r} must be a bare host name (no scheme, path, credentials or spaces)"
    if not host.isascii():
        return (f"host {host!r} has non-ASCII letters; give its ASCII (xn--) form, e.g. "
                f"{host.encode('idna').decode() if _idna_ok(host) else 'xn--...'}")
    if not set(host) <= _HOST_CHARS:
        return f"host {host!r}: only letters, digits, '-', '.', '_' (or an IP address)"
    if ":" not in host and "[" not in host:  # a DNS name or IPv4 address: check its labels
        labels = host.removesuffix(".").split(".")
        if any(not label or label.startswith("-") or label.endswith("-") for label in labels):
            return (f"host {host!r}: each dot-separated part needs a letter or digit at both "
                    "ends (no empty parts, no leading or trailing '-')")
    return None


def _idna_ok(host: str) -> bool:
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a callback's path, or None (spaces and control characters would
    travel altered; ``?`` and ``#`` belong to the query params and to nobody)."""
    bad = _unprintable(path)
    if bad:
        return f"path {path!r} has {bad}; percent-encode it (a space is %20)"
    for c, where in (("?", "give query params separately"), ("#", "fragments are never sent")):
        if c in path:
            return f"path {path!r} contains {c!r}; {where}"
    return None


def query_params_problem(pairs: list[tuple[str, str]]) -> str | None:
    """Why these query params cannot be sent, or None (names non-empty, no control characters)."""
    for key, value in pairs:
        if not key:
            return "a query parameter name is empty"
        for text in (key, value):
            if any(not (c.isprintable() or c == " ") for c in text):
                return f"{text!r} has a control character (line break, tab, NUL ...)"
    return None


def credentials_problem(
    cred_type: str | None,
    cred_key: str | None,
    cred_secret: str | None,
    additional_headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    names: dict[str, str] = PYTHON_NAMES,
) -> str | None:
    """Why a callback's credentials and extra headers cannot work together, or None.

    The rules follow from how credentials travel (:mod:`mp_nb.credentials`): basic needs a
    user name without ``:``; token secrets and header names travel as raw header text; no
    extra header may replace the credential header or the HTTP framing headers.
    """
    t, k, s, h = (names[n] for n in ("credType", "credKey", "credSecret", "additionalHeaders"))
    seen: set[str] = set()
    for name, value in additional_headers:
        problem = header_name_problem(name)
        if problem is None and name.lower() in seen:
            problem = f"{name!r} given twice (header names ignore case); give each once"
        seen.add(name.lower())
        if problem is None:
            vp = header_value_problem(value)
            problem = f"value of {name!r} {vp}" if vp else None
        if problem is None and name.lower() in RESERVED_HEADERS:
            problem = f"{name!r} is set by the delivery itself and cannot be overridden"
        if problem is None and name.lower() in CREDENTIAL_HEADERS:
            problem = (f"{name!r} carries credentials, and extra headers are listed back in "
                       f"clear; use {t}/{k}/{s} instead, which are never shown")
        if problem:
            return f"{h}: {problem}"
    if cred_type is None:
        if cred_key or cred_secret:
            return f"{t}: {k}/{s} given without {t}; use 'basic' or 'token'"
        return None
    if cred_type not in ("basic", "token"):
        return f"{t}: {cred_type!r} is not a credential type; use 'basic' or 'token'"
    if not cred_secret:
        return f"{s}: {t} {cred_type!r} needs a non-empty {s}"
    if cred_type == "basic":
        if not cred_key:
            return f"{k}: {t} 'basic' needs {k} (the user name)"
        if ":" in cred_key:
            return f"{k}: may not contain ':' for basic credentials (RFC 7617); the password may"
        header = "authorization"
    else:
        if cred_key and header_name_problem(cred_key):
            return f"{k}: for {t} 'token' it names the header; {header_name_problem(cred_key)}"
        if cred_key and cred_key.lower() in RESERVED_HEADERS:
            return (f"{k}: {cred_key!r} is set by the delivery itself and cannot carry the "
                    f"token; name another header (e.g. X-Api-Key) or leave {k} out to send "
                    "Authorization: Bearer")
        problem = header_value_problem(cred_secret)
        if problem:
            return (f"{s}: a 'token' secret travels as a header value and {problem}; "
                    "use basic credentials for other passwords")
        header = (cred_key or "authorization").lower()
    for name, _ in additional_headers:
        if name.lower() == header:
            return (f"{h}: {name!r} would replace the credential header of {t} "
                    f"{cred_type!r}; remove it or drop the credentials")
    return None


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class KeyValue(_Model):
    """A query parameter or an extra header."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    key: str
    value: str


DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_url(
    scheme: str,
    host: str,
    port: int | None,
    path: str,
    query_params: list[KeyValue] | list[tuple[str, str]] | None = None,
) -> str:
    """``scheme://host[:port]/path?query`` — the URL a delivery is POSTed to."""
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    url = f"{scheme}://{netloc}/{quote(path.lstrip('/'), safe='/%:@!$&()*+,;=-._~')}"
    if query_params:
        url += "?" + urlencode(
            [(kv.key, kv.value) if isinstance(kv, KeyValue) else kv for kv in query_params],
            quote_via=quote,  # spaces as %20, which every server reads (``+`` is form-only)
        )
    return url


def split_url(url: str) -> dict[str, Any]:
    """Split a callback URL into the API's ``scheme host port path queryParams`` fields.

    >>> split_url("https://example.com:8443/hooks/mp?team=a")["path"]
    'hooks/mp'
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"url: must be a string like https://example.com/hooks/matterport, "
                                 f"got {type(url).__name__}")
    if not url.strip():
        raise ConfigurationError("url: empty; give a URL like https://example.com/hooks/matterport")
    url = url.strip()
    bad = _unprintable(url)
    if bad:
        raise ConfigurationError(
            f"url: {url!r} has {bad}; a URL has no spaces or control characters "
            "(percent-encode a space as %20)"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        hint = "" if "://" in url else "; start the URL with http:// or https://"
        raise ConfigurationError(
            f"url: scheme must be http or https, got {parts.scheme or 'none'!r} in {url!r}{hint}"
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
    raw_port = parts.netloc.rpartition("]")[2].rpartition(":")[2] if ":" in parts.netloc else ""
    try:
        port = parts.port
    except ValueError:
        port = None
        if raw_port.isdigit():
            raise ConfigurationError(f"url: port out of range 1-65535 ({raw_port}) in {url!r}") from None
        raise ConfigurationError(f"url: port {raw_port!r} is not a number in {url!r}") from None
    if port == 0:
        raise ConfigurationError(f"url: port out of range 1-65535 in {url!r}")
    path = parts.path.lstrip("/")
    query = parse_qsl(parts.query, keep_blank_values=True)
    for problem in (host_problem(parts.hostname), path_problem(path), query_params_problem(query)):
        if problem:
            raise ConfigurationError(f"url: {problem}")
    return {
        "scheme": parts.scheme,
        "host": parts.hostname,
        "port": port,
        "path": path,
        "query_params": [KeyValue(key=k, value=v) for k, v in query],
    }


def _pairs(value: Any, field: str) -> Any:
    """Accept dicts and (key, value) tuples as well as KeyValue lists."""
    if value is None:
        return []
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ConfigurationError(
            f"{field}: expected a dict or (key, value) pairs, got {type(value).__name__}")
    items = value.items() if isinstance(value, dict) else value
    out = []
    for item in items:
        if isinstance(item, tuple | list) and len(item) == 2:
            if item[1] is None:
                raise ConfigurationError(f"{field}: {item[0]!r} has no value (None); give a "
                                         "string, '' for an empty one")
            out.append({"key": str(item[0]), "value": str(item[1])})
        else:
            out.append(item)
    return out


class CallbackTarget(_Model):
    """The ``callback`` input (``WebhookCallbackInput``): where and how to deliver.

    ``cred_secret`` is a ``SecretStr``: it never shows in a repr or a log line.
    """

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              hide_input_in_errors=True)  # errors never echo a secret

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
        problem = host_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        problem = path_problem(v)
        if problem:
            raise ValueError(problem)
        return v.lstrip("/")

    @field_validator("query_params")
    @classmethod
    def _query(cls, v: list[KeyValue]) -> list[KeyValue]:
        problem = query_params_problem([(kv.key, kv.value) for kv in v])
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("query_params", "additional_headers", mode="before")
    @classmethod
    def _kv(cls, v: Any, info: Any) -> Any:
        return _pairs(v, info.field_name)

    @model_validator(mode="after")
    def _creds(self) -> CallbackTarget:
        problem = credentials_problem(
            self.cred_type.value if self.cred_type else None,
            self.cred_key,
            self.cred_secret.get_secret_value() if self.cred_secret else None,
            [(kv.key, kv.value) for kv in self.additional_headers],
        )
        if problem:
            raise ValueError(problem)
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
