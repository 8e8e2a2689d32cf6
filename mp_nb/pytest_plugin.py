"""pytest fixtures for testing your own Matterport webhook code offline.

Installed with mp_nb (entry point ``pytest11``), so any test suite that has mp_nb installed
can use them — no conftest, no imports::

    def test_my_service_handles_processed(mp_local_api, mp_client, mp_receiver):
        mp_client.add_callback(mp_receiver.url, ["processed"], **mp_receiver.credentials)
        model = mp_local_api.simulate.upload()
        mp_local_api.simulate.process(model)
        mp_receiver.wait_for(1, types="processed")
        assert mp_receiver.events()["model_id"].iloc[0] == model

* ``mp_local_api`` — a running :class:`~mp_nb.LocalModelApi` on a free loopback port with
  fast retries (3 attempts, 10 ms backoff, 5 s timeout); ``.simulate`` drives model
  lifecycles, ``.attempts()`` is the delivery log, ``.drain()`` waits for deliveries.
  Stopped after the test.
* ``mp_client`` — a :class:`~mp_nb.ModelApiClient` authenticated against it (point your
  own code at ``mp_local_api.url`` / ``.token_id`` / ``.token_secret`` the same way).
* ``mp_receiver`` — a running :class:`~mp_nb.Receiver` with basic credentials and its store
  in ``tmp_path``; ``mp_receiver.credentials`` holds the matching ``add_callback`` keyword
  arguments, so deliveries are authenticated end to end.

Webhooks v2 work the same way: ``mp_client.add_callback(url, version=2, ...)``.
See ``docs/testing-with-mp-nb.md`` for more examples.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .client import ModelApiClient
from .local_api import LocalModelApi, RetryPolicy
from .receiver import Receiver

#: The delivery policy of ``mp_local_api``: quick enough that a failing endpoint costs a test
#: a few tens of milliseconds, not seconds.
FIXTURE_RETRY = RetryPolicy(max_attempts=3, backoff=0.01, timeout=5.0)


@pytest.fixture
def mp_local_api() -> Iterator[LocalModelApi]:
    """A local Model API on a free loopback port."""
    api = LocalModelApi(retry=FIXTURE_RETRY)
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def mp_client(mp_local_api: LocalModelApi) -> Iterator[ModelApiClient]:
    """A client for ``mp_local_api``."""
    client = ModelApiClient(mp_local_api.url, mp_local_api.token_id, mp_local_api.token_secret,
                            timeout=10.0, backoff=0.01)
    try:
        yield client
    finally:
        client.close()


class _TestReceiver(Receiver):
    credentials: dict[str, Any]


@pytest.fixture
def mp_receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A receiver with basic credentials; ``.credentials`` are the add_callback kwargs."""
    secret = secrets.token_urlsafe(16)
    receiver = _TestReceiver(cred_type="basic", cred_key="mp-nb-test", cred_secret=secret,
                             db=tmp_path / "mp_nb_events.sqlite3")
    receiver.credentials = {"cred_type": "basic", "cred_key": "mp-nb-test", "cred_secret": secret}
    try:
        yield receiver
    finally:
        receiver.stop()
