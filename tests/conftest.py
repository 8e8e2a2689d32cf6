"""Shared fixtures. The mp_local_api / mp_client / mp_receiver fixtures come from mp_nb's own
pytest plugin (mp_nb/pytest_plugin.py), exactly as other projects get them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

SEED_PAYLOADS: dict = json.loads((Path(__file__).parent / "data" / "seed_payloads.json").read_text())


@pytest.fixture
def seed_payloads() -> dict:
    """The six sample payloads of Matterport's webhook document, by type."""
    return json.loads(json.dumps(SEED_PAYLOADS))


@pytest.fixture
def http() -> httpx.Client:
    """A plain HTTP client for talking to our servers directly (loopback only)."""
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        yield client
