"""mp_nb — Matterport model-event webhooks from Python and Jupyter.

The whole public surface:

* :class:`ModelApiClient` — manage callbacks through the Model API (real or local);
* :class:`Receiver` — the webhook endpoint on a background thread, storing every delivery;
* :class:`LocalModelApi` — the Model API's webhook operations and deliveries, offline;
* :func:`open_store` / :class:`EventStore` — history files, readable without a receiver;
* :func:`parse_event` — typed pydantic models for v1 and v2 payloads;
* :mod:`mp_nb.exceptions` — every error, in one hierarchy.

Widgets live in :mod:`mp_nb.widgets` (extra ``mp_nb[widgets]``).
"""

import logging as _logging
from importlib import import_module as _import_module
from typing import TYPE_CHECKING

from ._version import __version__

# Names are imported on first use, so ``mp-nb callbacks …`` starts without pandas,
# graphql or uvicorn; ``from mp_nb import X`` works as usual.
_LAZY = {
    "ModelApiClient": "client", "CredType": "credentials", "ModelEvent": "events",
    "parse_event": "events", "ApiError": "exceptions", "AuthenticationError": "exceptions",
    "ConfigurationError": "exceptions", "MpNbError": "exceptions", "NotFoundError": "exceptions",
    "WaitTimeout": "exceptions", "LocalModelApi": "local_api", "RetryPolicy": "local_api",
    "V1_EVENT_TYPES": "models", "V2_EVENT_TYPES": "models", "Callback": "models",
    "CallbackTarget": "models", "EventType": "models", "Receiver": "receiver",
    "EventStore": "store", "open_store": "store",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mp_nb' has no attribute {name!r}")
    value = getattr(_import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .client import ModelApiClient
    from .credentials import CredType
    from .events import ModelEvent, parse_event
    from .exceptions import (
        ApiError,
        AuthenticationError,
        ConfigurationError,
        MpNbError,
        NotFoundError,
        WaitTimeout,
    )
    from .local_api import LocalModelApi, RetryPolicy
    from .models import V1_EVENT_TYPES, V2_EVENT_TYPES, Callback, CallbackTarget, EventType
    from .receiver import Receiver
    from .store import EventStore, open_store

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "V1_EVENT_TYPES",
    "V2_EVENT_TYPES",
    "ApiError",
    "AuthenticationError",
    "Callback",
    "CallbackTarget",
    "ConfigurationError",
    "CredType",
    "EventStore",
    "EventType",
    "LocalModelApi",
    "ModelApiClient",
    "ModelEvent",
    "MpNbError",
    "NotFoundError",
    "Receiver",
    "RetryPolicy",
    "WaitTimeout",
    "__version__",
    "open_store",
    "parse_event",
]
