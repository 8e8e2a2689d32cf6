"""How callback credentials travel on a delivery: the one rule, used by both ends.

Matterport documents ``credType`` / ``credKey`` / ``credSecret`` but not how they reach the
endpoint. mp_nb decides (and the README documents):

* ``basic``  → ``Authorization: Basic base64(credKey:credSecret)`` (UTF-8, split on the first ``:``)
* ``token``  → ``Authorization: Bearer <credSecret>``; if ``credKey`` is set, it is the header
  name instead: ``<credKey>: <credSecret>``.

The local Model API calls :func:`credential_header` to send; the receiver calls
:func:`check_credentials` to verify. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable, Mapping
from enum import Enum

REDACTED = "<redacted>"

#: Header names whose values are always redacted before anything is stored or shown.
ALWAYS_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


class CredType(str, Enum):
    """``credType`` of a callback (the API's ``WebhookCredentialType``)."""

    basic = "basic"
    token = "token"

    def __str__(self) -> str:
        return self.value


def _secret_value(secret: object) -> str:
    """Accept ``str`` or pydantic ``SecretStr`` without importing pydantic here."""
    getter = getattr(secret, "get_secret_value", None)
    return getter() if callable(getter) else str(secret)


def credential_header(
    cred_type: CredType | str | None, cred_key: str | None, cred_secret: object | None
) -> tuple[str, str] | None:
    """The ``(name, value)`` header a delivery carries for these credentials, or None."""
    if cred_type is None or cred_secret is None:
        return None
    kind = CredType(cred_type)
    secret = _secret_value(cred_secret)
    if kind is CredType.basic:
        raw = f"{cred_key or ''}:{secret}".encode()
        return "Authorization", "Basic " + base64.b64encode(raw).decode("ascii")
    if cred_key:
        return cred_key, secret
    return "Authorization", f"Bearer {secret}"


def credential_header_name(cred_type: CredType | str | None, cred_key: str | None) -> str | None:
    """Lower-cased name of the header that carries the credential (for redaction)."""
    if cred_type is None:
        return None
    if CredType(cred_type) is CredType.token and cred_key:
        return cred_key.lower()
    return "authorization"


def check_credentials(
    headers: Mapping[str, str],
    cred_type: CredType | str | None,
    cred_key: str | None,
    cred_secret: object | None,
) -> str | None:
    """Verify a request's headers (lower-cased names). Returns None if accepted, else why not."""
    if cred_type is None:
        return None
    kind = CredType(cred_type)
    secret = _secret_value(cred_secret) if cred_secret is not None else ""
    if kind is CredType.token and cred_key:
        got = headers.get(cred_key.lower())
        if got is None:
            return f"missing {cred_key} header"
        return None if _same(got, secret) else f"wrong token in {cred_key} header"
    auth = headers.get("authorization")
    if auth is None:
        return "missing Authorization header"
    scheme, _, value = auth.strip().partition(" ")
    value = value.strip()
    if kind is CredType.token:
        if scheme.lower() != "bearer":
            return f"expected Bearer credentials, got {scheme or 'nothing'}"
        return None if _same(value, secret) else "wrong bearer token"
    if scheme.lower() != "basic":
        return f"expected Basic credentials, got {scheme or 'nothing'}"
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "malformed Basic credentials (not base64)"
    user, sep, password = decoded.partition(b":")
    if not sep:
        return "malformed Basic credentials (no ':')"
    user_ok = hmac.compare_digest(user, (cred_key or "").encode())
    password_ok = hmac.compare_digest(password, secret.encode())
    return None if (user_ok and password_ok) else "wrong username or password"


def _same(got: str, expected: str) -> bool:
    return hmac.compare_digest(got.encode("utf-8", "surrogateescape"), expected.encode())


def redact_headers(
    headers: Iterable[tuple[str, str]], secret_names: Iterable[str] = ()
) -> dict[str, str]:
    """Headers as a dict with credential values replaced by ``<redacted>``."""
    hidden = ALWAYS_SECRET_HEADERS | {n.lower() for n in secret_names}
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        shown = REDACTED if key in hidden else value
        out[key] = f"{out[key]}, {shown}" if key in out else shown
    return out
