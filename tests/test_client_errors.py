"""How the client fails: one documented exception hierarchy, typed errors for every HTTP and
GraphQL failure, retries with backoff for reads and pings only. The local Model API
produces what it can (401, expired OAuth tokens); respx stands in for what a healthy local
server never does (429, 5xx, broken connections, garbage)."""

from __future__ import annotations

import inspect
import re

import httpx
import pytest
import respx

import mp_nb.client
from mp_nb import ModelApiClient, exceptions
from mp_nb.exceptions import (
    ApiError,
    AuthenticationError,
    InvalidRequestError,
    MpNbError,
    NotFoundError,
    PagingError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
)

URL = "http://127.0.0.1:9/api/models/graph"
EMPTY_PAGE = {"data": {"modelEventWebhookCallbacks": {"nextOffset": None, "totalResults": 0,
                                                      "results": []}}}
CALLBACK = {"id": "c" * 25, "eventTypes": ["processed"], "version": 1,
            "callback": {"scheme": "http", "host": "127.0.0.1", "port": 9, "path": "x",
                         "queryParams": [], "additionalHeaders": [], "credType": None,
                         "credKey": None}}


@pytest.fixture
def sleeps(monkeypatch):
    """The waits the client asks for between attempts (recorded instead of slept)."""
    waited: list[float] = []
    monkeypatch.setattr(mp_nb.client.time, "sleep", waited.append)
    return waited


@pytest.fixture
def client():
    with ModelApiClient(URL, "token-id", "token-secret", retries=3, backoff=0.5) as c:
        yield c


def graphql_error(code: str, message: str = "it failed", status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"data": None, "errors": [
        {"message": message, "extensions": {"code": code}}]})


# ---------------------------------------------------------------------- the hierarchy


def documented_tree() -> dict[str, str | None]:
    """class name -> parent name, read from the tree drawn in the module docstring."""
    doc = inspect.getdoc(exceptions) or ""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^([\s│├└─]*)([A-Z]\w+)\s", line + " ")
        if not match or not match.group(2).endswith(("Error", "Timeout")):
            continue
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(2)))
    return parents


def test_the_docstring_tree_is_the_real_hierarchy():
    tree = documented_tree()
    real = {name: cls for name, cls in vars(exceptions).items()
            if isinstance(cls, type) and issubclass(cls, MpNbError)}
    assert set(tree) == set(real)
    for name, parent in tree.items():
        if parent is None:
            assert name == "MpNbError"
        else:
            assert real[parent] in real[name].__bases__, (name, parent)


def test_codes_map_to_documented_classes():
    for code, cls in exceptions.CODE_TO_ERROR.items():
        assert issubclass(cls, ApiError) and cls.__name__ in documented_tree(), code


# ---------------------------------------------------------------------- retries


@respx.mock
def test_reads_are_retried_with_exponential_backoff(client, sleeps):
    route = respx.post(URL).mock(side_effect=[
        httpx.Response(503), httpx.ConnectError("refused"), httpx.Response(502),
        httpx.Response(200, json=EMPTY_PAGE)])
    assert client.callbacks() == []
    assert route.call_count == 4 and sleeps == [0.5, 1.0, 2.0]


@respx.mock
def test_retry_after_is_honoured_and_capped(client, sleeps):
    respx.post(URL).mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": "86400"}),
        httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        httpx.Response(200, json=EMPTY_PAGE)])
    client.callbacks_page()
    assert sleeps == [7.0, mp_nb.client.MAX_RETRY_AFTER, 2.0]


@respx.mock
def test_ping_is_retried_on_429_5xx_and_connection_errors(client, sleeps):
    route = respx.post(URL).mock(side_effect=[
        httpx.Response(429), httpx.ReadTimeout("slow"), httpx.Response(500),
        httpx.Response(200, json={"data": {"pingModelEventWebhookCallback": True}})])
    assert client.ping_callback("c" * 25) is True
    assert route.call_count == 4 and len(sleeps) == 3


@respx.mock
def test_retries_stop_after_the_limit_with_the_last_error(client, sleeps):
    route = respx.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransportError, match="cannot reach"):
        client.callbacks()
    assert route.call_count == 4 and sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("call", [
    lambda c: c.add_callback("http://127.0.0.1:9/x", ["processed"]),
    lambda c: c.patch_callback("c" * 25, event_types=["processed"]),
    lambda c: c.remove_callback("c" * 25),
    lambda c: c.add_event_types("c" * 25, ["processed"]),
    lambda c: c.remove_event_types("c" * 25, ["processed"]),
])
@pytest.mark.parametrize("failure", [httpx.Response(503), httpx.ConnectError("refused"),
                                     httpx.Response(429)])
@respx.mock
def test_writes_are_never_retried(client, sleeps, call, failure):
    route = respx.post(URL).mock(side_effect=[failure, httpx.Response(200, json={"data": {}})])
    with pytest.raises((ServerError, TransportError, RateLimitError)):
        call(client)
    assert route.call_count == 1 and sleeps == []


# ---------------------------------------------------------------------- typed failures


@pytest.mark.parametrize("code, cls", [
    ("request.unauthenticated", AuthenticationError),
    ("request.unauthorized", PermissionDeniedError),
    ("not.found", NotFoundError),
    ("request.invalid", InvalidRequestError),
    ("GRAPHQL_VALIDATION_FAILED", InvalidRequestError),
    ("error.internal", ServerError),
    ("quota.exceeded", ApiError),
])
@respx.mock
def test_graphql_error_codes_become_typed_exceptions(client, code, cls):
    respx.post(URL).mock(return_value=graphql_error(code, "Nope"))
    with pytest.raises(cls) as info:
        client.add_callback("http://127.0.0.1:9/x", ["processed"])
    assert type(info.value) is cls
    assert (info.value.code, info.value.message, info.value.status) == (code, "Nope", 200)
    assert info.value.errors[0]["extensions"]["code"] == code
    assert str(info.value) == f"Nope | code={code} | HTTP 200"


@respx.mock
def test_http_403_is_permission_denied(client):
    respx.post(URL).mock(return_value=httpx.Response(403, text="Forbidden"))
    with pytest.raises(PermissionDeniedError, match="may not manage webhooks") as info:
        client.callbacks()
    assert info.value.status == 403 and info.value.code == "request.unauthorized"


@respx.mock
def test_http_401_without_a_graphql_body_is_an_authentication_error(client, sleeps):
    route = respx.post(URL).mock(return_value=httpx.Response(401, text="Unauthorized"))
    with pytest.raises(AuthenticationError, match="MATTERPORT_TOKEN_SECRET") as info:
        client.callbacks()
    assert info.value.status == 401 and route.call_count == 1 and sleeps == []


@pytest.mark.parametrize("response, fragment", [
    (httpx.Response(200, text="<html>proxy login</html>"), "not a GraphQL response"),
    (httpx.Response(200, json={"data": None}), "without data"),
    (httpx.Response(404, json={"message": "nothing here"}), "HTTP 404"),
])
@respx.mock
def test_answers_that_are_not_graphql_are_clear_errors(client, response, fragment):
    respx.post(URL).mock(return_value=response)
    with pytest.raises(ApiError, match=fragment):
        client.add_callback("http://127.0.0.1:9/x", ["processed"])


@respx.mock
def test_a_server_repeating_next_offset_is_stopped(client):
    page = {"data": {"modelEventWebhookCallbacks": {"nextOffset": "same", "totalResults": 9,
                                                    "results": [CALLBACK]}}}
    respx.post(URL).mock(return_value=httpx.Response(200, json=page))
    with pytest.raises(PagingError, match="nextOffset 'same' twice"):
        client.callbacks()


@respx.mock
def test_a_runaway_list_is_stopped_at_max_pages():
    counter = iter(range(1000))

    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": {"modelEventWebhookCallbacks": {
            "nextOffset": f"o{next(counter)}", "totalResults": 1, "results": [CALLBACK]}}})

    respx.post(URL).mock(side_effect=endless)
    with ModelApiClient(URL, "i", "s", max_pages=5) as client, \
            pytest.raises(PagingError, match="more than 5 pages"):
        client.callbacks()


# ---------------------------------------------------------------------- real server


def test_an_expired_access_token_is_an_authentication_error(mp_local_api, sleeps):
    old = mp_local_api.access_token
    with ModelApiClient(mp_local_api.url, access_token=old, retries=3) as client:
        assert client.callbacks() == []
        mp_local_api.expire_access_token()
        with pytest.raises(AuthenticationError, match="expired or revoked") as info:
            client.callbacks()
    assert (info.value.code, info.value.status) == ("invalid_grant", 400)
    assert sleeps == []  # not retried: waiting does not renew a token
    with ModelApiClient(mp_local_api.url, access_token=mp_local_api.access_token) as renewed:
        assert renewed.callbacks() == []


def test_an_unknown_access_token_is_http_401(mp_local_api):
    with ModelApiClient(mp_local_api.url, access_token="made-up") as client, \
            pytest.raises(AuthenticationError, match="OAuth access token") as info:
        client.callbacks()
    assert info.value.status == 401 and info.value.code == "request.unauthenticated"


def test_nothing_listening_is_a_transport_error(sleeps):
    with ModelApiClient("http://127.0.0.1:1/api/models/graph", "i", "s", retries=1) as client, \
            pytest.raises(TransportError, match="cannot reach"):
        client.callbacks()
    assert sleeps == [0.5]


def test_secrets_stay_out_of_the_client_repr():
    with ModelApiClient(URL, "token-id", "token-secret-value") as basic:
        assert "token-secret-value" not in repr(basic) and "token-id" in repr(basic)
    with ModelApiClient(URL, access_token="bearer-value") as bearer:
        assert "bearer-value" not in repr(bearer)
