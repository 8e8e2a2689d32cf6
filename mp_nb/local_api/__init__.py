"""The local Model API: Matterport's webhook GraphQL operations and deliveries, offline.

:class:`LocalModelApi` is the embedded default for tutorials, CI and tests; see
:mod:`.server` (HTTP + GraphQL), :mod:`.registry` (callbacks), :mod:`.delivery` (retries and
the attempt log) and :mod:`.simulator` (model lifecycles and generated history).
"""

from .delivery import Attempt, RetryPolicy
from .server import GRAPH_PATH, LocalModelApi, api_schema, schema_sdl, validate_document
from .simulator import Occurrence, Simulator

__all__ = [
    "GRAPH_PATH",
    "Attempt",
    "LocalModelApi",
    "Occurrence",
    "RetryPolicy",
    "Simulator",
    "api_schema",
    "schema_sdl",
    "validate_document",
]
