"""Every error mp_nb raises on purpose, in one hierarchy.

::

    MpNbError                       anything below; catch this to catch them all
    ├── ConfigurationError          bad arguments given to mp_nb itself (also a ValueError)
    ├── ApiError                    the Model API did not do what was asked (other codes too,
    │   │                           e.g. quota.exceeded, come as a plain ApiError)
    │   ├── TransportError          no HTTP answer: refused, timed out, broken connection
    │   ├── AuthenticationError     HTTP 401, request.unauthenticated, or an expired OAuth token
    │   │                           (HTTP 400 {"error": "invalid_grant"}, code invalid_grant)
    │   ├── PermissionDeniedError   HTTP 403 or request.unauthorized
    │   ├── NotFoundError           not.found: e.g. an unknown callback id
    │   ├── InvalidRequestError     request.invalid / GraphQL validation errors (unknown enum
    │   │                           literal, bad variable, bad argument such as pageSize)
    │   ├── RateLimitError          HTTP 429 (.retry_after from the Retry-After header)
    │   └── ServerError             HTTP 5xx or error.internal
    ├── PagingError                 a list that never ends (nextOffset repeats or runs away)
    ├── ReceiverError               the receiver could not start, or its store failed
    └── WaitTimeout                 wait_for() ran out of time (also a TimeoutError)

An :class:`ApiError` carries ``code`` (the GraphQL ``extensions.code``), ``message``,
``status`` (the HTTP status) and ``errors`` (the raw GraphQL error list), so handlers can
branch on data rather than text.

:class:`~mp_nb.ModelApiClient` retries reads (listing) and pings, with exponential backoff,
on :class:`TransportError`, :class:`RateLimitError` and :class:`ServerError`; it never
retries adds (a retried add could register the callback twice), patches or removes.
"""

from __future__ import annotations

from typing import Any


class MpNbError(Exception):
    """Base class of every error raised by mp_nb."""


class ConfigurationError(MpNbError, ValueError):
    """Arguments that cannot work, caught before anything is sent (names the field and fix)."""


class ApiError(MpNbError):
    """The Model API answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.errors = errors or []
        #: What mp_nb knows about the failure beyond the server's words (e.g. which id).
        self.detail: str | None = None

    def __str__(self) -> str:
        parts = [self.message]
        if self.detail:
            parts[0] += f" ({self.detail})"
        if self.code:
            parts.append(f"code={self.code}")
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        return " | ".join(parts)


class TransportError(ApiError):
    """No usable HTTP answer: connection refused, timeout, protocol error."""


class AuthenticationError(ApiError):
    """Credentials missing, wrong or expired (HTTP 401, or 400 ``invalid_grant``)."""


class PermissionDeniedError(ApiError):
    """The credentials are valid but not allowed to do this (``request.unauthorized``)."""


class NotFoundError(ApiError):
    """The object does not exist (``not.found``, message ``Error fetching data``)."""


class InvalidRequestError(ApiError):
    """The GraphQL document or its variables were rejected (``request.invalid``)."""


class RateLimitError(ApiError):
    """HTTP 429: too many requests. ``retry_after``: seconds the server asked to wait, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    """The server failed (HTTP 5xx or ``error.internal``)."""


class PagingError(MpNbError):
    """Listing did not terminate: the server kept returning pages past any sane bound."""


class ReceiverError(MpNbError):
    """The receiver could not start (port taken, bad bind address) or its store failed."""


class WaitTimeout(MpNbError, TimeoutError):
    """``wait_for`` gave up; the message says what did arrive."""


#: GraphQL ``extensions.code`` → exception class.
CODE_TO_ERROR: dict[str, type[ApiError]] = {
    "request.unauthenticated": AuthenticationError,
    "request.unauthorized": PermissionDeniedError,
    "not.found": NotFoundError,
    "request.invalid": InvalidRequestError,
    "GRAPHQL_VALIDATION_FAILED": InvalidRequestError,
    "error.internal": ServerError,
}
