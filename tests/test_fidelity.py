"""Every operation, argument and enum literal of the Model API's webhook schema, through
ModelApiClient against the local Model API over real loopback HTTP — plus the details users
trip over: paging bounds, patch merging, unknown literals, GET, mixed versions."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from graphql import GraphQLEnumType, GraphQLInputObjectType
from pydantic import ValidationError

from mp_nb import ConfigurationError, LocalModelApi, ModelApiClient
from mp_nb import operations as ops
from mp_nb.credentials import CredType
from mp_nb.exceptions import InvalidRequestError
from mp_nb.local_api import api_schema, validate_document
from mp_nb.models import V1_EVENT_TYPES, V2_EVENT_TYPES, CallbackTarget, EventType

SCHEMA = api_schema()


@pytest.fixture(scope="module")
def api():
    with LocalModelApi() as local:
        yield local


@pytest.fixture
def client(api):
    """A client on a registry emptied before each test."""
    for cb in api.registry.all():
        api.registry.remove(cb.id)
    with ModelApiClient(api.url, api.token_id, api.token_secret, backoff=0.0) as c:
        yield c


def raw(api, query, variables=None, method="POST"):
    """Send a document without the client (to see exactly what the server answers)."""
    auth = (api.token_id, api.token_secret)
    with httpx.Client(trust_env=False, timeout=10) as http:
        if method == "GET":
            params = {"query": query}
            if variables is not None:
                params["variables"] = json.dumps(variables)
            return http.get(api.url, params=params, auth=auth)
        return http.post(api.url, json={"query": query, "variables": variables or {}}, auth=auth)


# ---------------------------------------------------------------------- schema <-> client


@pytest.mark.parametrize("name", sorted(ops.ALL))
def test_every_client_document_validates_against_the_sdl(name):
    assert validate_document(ops.ALL[name]) == []


def test_the_client_has_a_document_for_every_schema_operation():
    fields = set(SCHEMA.query_type.fields) | set(SCHEMA.mutation_type.fields)
    assert set(ops.ALL) == fields
    assert len(fields) == 7


def test_validate_document_reports_problems():
    (error,) = validate_document("query { modelEventWebhookCallbacks { nope } }")
    assert "nope" in error.message
    assert validate_document("query {")  # a syntax error is reported, not raised


def test_enums_match_the_python_names():
    event_enum = SCHEMA.type_map["ModelEventType"]
    cred_enum = SCHEMA.type_map["WebhookCredentialType"]
    assert isinstance(event_enum, GraphQLEnumType) and isinstance(cred_enum, GraphQLEnumType)
    assert set(event_enum.values) == {e.value for e in EventType}
    assert set(event_enum.values) == set(V1_EVENT_TYPES) | set(V2_EVENT_TYPES)
    assert set(cred_enum.values) == {c.value for c in CredType} == {"basic", "token"}


def test_input_fields_are_the_documented_ones():
    top = SCHEMA.type_map["ModelEventCallbackInput"]
    callback = SCHEMA.type_map["WebhookCallbackInput"]
    assert isinstance(top, GraphQLInputObjectType) and isinstance(callback, GraphQLInputObjectType)
    assert set(top.fields) == {"eventTypes", "callback", "version"}
    assert set(callback.fields) == {"scheme", "host", "port", "path", "queryParams",
                                    "additionalHeaders", "credType", "credKey", "credSecret"}
    out = SCHEMA.type_map["ModelEventWebhookCallback"]
    assert {"id", "eventTypes", "callback", "version"} <= set(out.fields)
    assert "credSecret" not in SCHEMA.type_map["WebhookCallback"].fields


# ---------------------------------------------------------------------- enum literals


@pytest.mark.parametrize(
    "version, event_type",
    [(1, t) for t in V1_EVENT_TYPES] + [(2, t) for t in V2_EVENT_TYPES],
)
def test_each_event_type_literal_registers(api, client, version, event_type):
    cb = client.add_callback("http://127.0.0.1:9/hook", [event_type], version=version)
    assert (cb.event_types, cb.version) == ([event_type], version)
    # as a bare literal in a document, exactly like Matterport's examples
    doc = (f'mutation {{ addModelEventWebhookCallback(input: {{eventTypes: [{event_type}], '
           f'version: {version}, callback: {{scheme: "http", host: "127.0.0.1", port: 9}}}}) '
           "{ eventTypes version } }")
    body = raw(api, doc).json()
    assert body["data"]["addModelEventWebhookCallback"] == {"eventTypes": [event_type],
                                                           "version": version}


@pytest.mark.parametrize("cred_type", ["basic", "token"])
def test_each_credential_type_literal_registers(client, cred_type):
    cb = client.add_callback("http://127.0.0.1:9/hook", ["processed"], cred_type=cred_type,
                             cred_key="user" if cred_type == "basic" else None,
                             cred_secret="s3cret")
    assert cb.callback.cred_type == cred_type
    assert "s3cret" not in json.dumps(client.callbacks()[0].model_dump(mode="json"))


def test_an_unknown_literal_is_a_graphql_validation_error(api, client):
    response = raw(api, 'mutation { addModelEventWebhookCallback(input: {eventTypes: [teleported]'
                        ', callback: {host: "127.0.0.1"}}) { id } }')
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert "teleported" in error["message"] and "ModelEventType" in error["message"]
    assert error["extensions"]["code"] == "request.invalid" and error["locations"]
    bad_cred = raw(api, 'mutation { addModelEventWebhookCallback(input: {eventTypes: [processed]'
                        ', callback: {host: "h", credType: oauth, credSecret: "x"}}) { id } }')
    assert bad_cred.status_code == 400 and "oauth" in bad_cred.json()["errors"][0]["message"]
    # the same literal in a variable, through the client: a typed error, nothing stored
    with pytest.raises(InvalidRequestError, match="teleported"):
        client.execute(ops.ADD_EVENTS, {"id": "x", "eventTypes": ["teleported"]})
    assert client.callbacks() == []


# ---------------------------------------------------------------------- add


def test_add_with_every_argument(client):
    cb = client.add_callback(
        "http://127.0.0.1:8080/hooks/mp?team=a", ["uploaded", "processed"], version=1,
        cred_type="basic", cred_key="hook-user", cred_secret="pa:ss word",
        query_params={"extra": "1"}, additional_headers={"X-Team": "blue", "X-Env": "test"},
    )
    assert cb.version == 1 and cb.event_types == ["uploaded", "processed"]
    e = cb.callback
    assert (e.scheme, e.host, e.port, e.path) == ("http", "127.0.0.1", 8080, "hooks/mp")
    assert [(kv.key, kv.value) for kv in e.query_params] == [("team", "a"), ("extra", "1")]
    assert [(kv.key, kv.value) for kv in e.additional_headers] == [("X-Team", "blue"),
                                                                   ("X-Env", "test")]
    assert (e.cred_type, e.cred_key) == ("basic", "hook-user")
    assert "pa:ss word" not in client.last_graphql and "***" in client.last_graphql
    assert client.callbacks() == [cb]


@pytest.mark.parametrize("url, fields", [
    ("https://127.0.0.1/a/b", ("https", None, "a/b")),
    ("https://127.0.0.1:8443/", ("https", 8443, "")),
    ("http://localhost/hook", ("http", None, "hook")),
    ("http://[::1]:9000/h?x=%20y", ("http", 9000, "h")),
])
def test_scheme_host_port_and_path_round_trip(client, url, fields):
    cb = client.add_callback(url, ["processed"])
    assert (cb.callback.scheme, cb.callback.port, cb.callback.path) == fields
    assert cb.url == url and client.callbacks()[0].url == url


def test_matterports_v2_add_example_runs_as_written(api, client):
    doc = """mutation {
      addModelEventWebhookCallback(input: {
        eventTypes: [created, deleted],
        callback: {scheme: "http", host: "myawesomeapi.com", port: 9090, path: "testWebhook",
                   credType: basic, credKey: "Your API Key", credSecret: "Your API Secret",
                   additionalHeaders: [{key: "header1", value: "value1"},
                                       {key: "header2", value: "value2"}],
                   queryParams: [{key: "key1", value: "value1"}, {key: "key2", value: "value2"}]},
        version: 2}) { id eventTypes callback { scheme host port path } version } }"""
    body = raw(api, doc).json()
    added = body["data"]["addModelEventWebhookCallback"]
    assert added["eventTypes"] == ["created", "deleted"] and added["version"] == 2
    assert added["callback"] == {"scheme": "http", "host": "myawesomeapi.com", "port": 9090,
                                 "path": "testWebhook"}
    (stored,) = client.callbacks()
    assert [kv.key for kv in stored.callback.additional_headers] == ["header1", "header2"]


def test_version_left_out_is_1_and_other_versions_are_refused(api, client):
    doc = ('mutation { addModelEventWebhookCallback(input: {eventTypes: [processed], '
           'callback: {host: "127.0.0.1"}}) { version callback { scheme port } } }')
    added = raw(api, doc).json()["data"]["addModelEventWebhookCallback"]
    assert added == {"version": 1, "callback": {"scheme": "https", "port": None}}
    refused = raw(api, doc.replace("eventTypes:", "version: 3, eventTypes:")).json()
    assert "version" in refused["errors"][0]["message"]
    with pytest.raises(ConfigurationError, match="version"):
        client.add_callback("http://127.0.0.1:9/x", ["processed"], version=3)


def test_mixing_v1_and_v2_types_is_a_clear_error(api, client):
    with pytest.raises(ConfigurationError, match=r"cannot mix webhook v1 types \(uploaded\) with "
                                                 r"v2 types \(created\)"):
        client.add_callback("http://127.0.0.1:9/x", ["uploaded", "created"], version=1)
    response = raw(api, 'mutation { addModelEventWebhookCallback(input: {eventTypes: [uploaded, '
                        'created], version: 2, callback: {host: "127.0.0.1"}}) { id } }')
    (error,) = response.json()["errors"]
    assert error["message"].startswith("eventTypes: cannot mix webhook v1 types (uploaded)")
    assert error["extensions"]["code"] == "request.invalid"
    assert client.callbacks() == []


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("path", "x\r\nEvil: 1", "percent-encode it"),
        ("path", "x?y=1", "give query params separately"),
        ("path", "x#z", "fragments are never sent"),
        ("host", "exa mple.invalid", "bare host name"),
        ("host", "ex\u00e4mple.invalid", "non-ASCII"),
        ("queryParams", [{"key": "a\r\n", "value": "1"}], "control character"),
        ("queryParams", [{"key": "", "value": "1"}], "name is empty"),
    ],
)
def test_fields_that_would_travel_altered_are_refused_on_both_ends(api, client, field, value,
                                                                   fragment):
    cb: dict = {"scheme": "http", "host": "127.0.0.1", field: value}
    body = raw(api, ops.ADD_CALLBACK, {"input": {"eventTypes": ["processed"], "callback": cb}}).json()
    (error,) = body["errors"]
    assert error["message"].startswith(f"callback.{field}: ") and fragment in error["message"]
    assert error["extensions"]["code"] == "request.invalid"
    python = {"path": "path", "host": "host", "queryParams": "query_params"}[field]
    with pytest.raises(ValidationError, match=fragment) as caught:
        CallbackTarget(**{"host": "127.0.0.1", python: value, "cred_type": "basic",
                          "cred_key": "u", "cred_secret": "never-echoed"})
    assert "never-echoed" not in str(caught.value)  # pydantic errors show no input values
    assert client.callbacks() == []


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"cred_type": "token", "cred_secret": "tök"}, "printable ASCII"),
        ({"cred_type": "token", "cred_key": "X Key", "cred_secret": "t"}, "header name"),
        ({"cred_type": "basic", "cred_key": "a:b", "cred_secret": "t"}, "may not contain ':'"),
        ({"cred_type": "basic", "cred_key": "u", "cred_secret": "t",
          "additional_headers": {"Authorization": "Bearer x"}}, "carries credentials"),
        ({"additional_headers": {"Authorization": "Basic bWU6YWJj"}}, "carries credentials"),
        ({"additional_headers": {"proxy-authorization": "Basic x"}}, "carries credentials"),
        ({"cred_type": "token", "cred_key": "X-Api-Key", "cred_secret": "t",
          "additional_headers": {"x-api-key": "other"}}, "replace the credential header"),
        ({"additional_headers": {"Content-Type": "text/plain"}}, "cannot be overridden"),
        ({"additional_headers": {"X-Note": "caf\u00e9"}}, "printable ASCII"),
        ({"additional_headers": {"Bad Name": "x"}}, "not a valid header name"),
    ],
)
def test_credential_and_header_rules_hold_on_both_ends(api, client, kwargs, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        client.add_callback("http://127.0.0.1:9/x", ["processed"], **kwargs)
    # the server applies the same rule to a document that skips the client's checks
    cb: dict = {"scheme": "http", "host": "127.0.0.1"}
    if "cred_type" in kwargs:
        cb.update(credType=kwargs["cred_type"], credSecret=kwargs["cred_secret"])
        if "cred_key" in kwargs:
            cb["credKey"] = kwargs["cred_key"]
    cb["additionalHeaders"] = [{"key": k, "value": v}
                               for k, v in kwargs.get("additional_headers", {}).items()]
    body = raw(api, ops.ADD_CALLBACK, {"input": {"eventTypes": ["processed"],
                                                 "callback": cb}}).json()
    assert fragment in body["errors"][0]["message"]
    assert body["errors"][0]["message"].startswith(("callback.", "eventTypes"))
    assert client.callbacks() == []


def test_the_credential_secret_is_write_only(api, client):
    client.add_callback("http://127.0.0.1:9/x", ["processed"], cred_type="token",
                        cred_secret="never-shown-123")
    listed = raw(api, ops.LIST_CALLBACKS, {}).text
    assert "never-shown-123" not in listed
    bad = raw(api, "query { modelEventWebhookCallbacks { results { callback { credSecret } } } }")
    assert bad.status_code == 400 and "credSecret" in bad.json()["errors"][0]["message"]


# ---------------------------------------------------------------------- list / paging


def test_paging_offsets_are_opaque_and_the_last_page_has_no_next_offset(api, client):
    ids = [client.add_callback(f"http://127.0.0.1:9/h/{i}", ["processed"]).id for i in range(20)]
    first = client.callbacks_page(page_size=10)
    assert first.total_results == 20 and [c.id for c in first.results] == ids[:10]
    assert first.next_offset and not first.next_offset.isdigit()
    second = client.callbacks_page(first.next_offset, 10)
    assert [c.id for c in second.results] == ids[10:] and second.next_offset is None
    assert [c.id for c in client.callbacks(page_size=3)] == ids
    # pageSize left out: the documented default of 10
    page = raw(api, "{ modelEventWebhookCallbacks { nextOffset results { id } } }").json()
    assert len(page["data"]["modelEventWebhookCallbacks"]["results"]) == 10
    # the list sample exactly as documented (no arguments at all) still works
    assert raw(api, "{ modelEventWebhookCallbacks { totalResults } }").json()["data"] == {
        "modelEventWebhookCallbacks": {"totalResults": 20}}


def test_removing_while_paging_skips_no_callback(api, client):
    """Offsets point at the last callback listed, not at a position: the obvious clean-up
    loop removes everything, and a concurrent removal never hides a survivor."""
    for i in range(25):
        client.add_callback(f"http://127.0.0.1:9/h/{i}", ["processed"])
    for cb in client.iter_callbacks(page_size=10):
        client.remove_callback(cb.id)
    assert client.callbacks() == []
    ids = [client.add_callback(f"http://127.0.0.1:9/k/{i}", ["processed"]).id for i in range(30)]
    first = client.callbacks_page(page_size=10)
    for gone in ids[:5] + ids[12:14]:  # another client removes some, listed or not yet
        client.remove_callback(gone)
    rest = client.callbacks_page(first.next_offset, 100)
    assert [c.id for c in rest.results] == [i for i in ids[10:] if i not in ids[12:14]]


@pytest.mark.parametrize("size, ok", [(0, False), (1, True), (1000, True), (1001, False),
                                      (-5, False)])
def test_page_size_bounds(client, size, ok):
    client.add_callback("http://127.0.0.1:9/h", ["processed"])
    if ok:
        assert len(client.callbacks_page(page_size=size).results) == 1
    else:
        with pytest.raises(InvalidRequestError, match=r"pageSize: .* out of range 1-1000"):
            client.execute(ops.LIST_CALLBACKS, {"pageSize": size})


@pytest.mark.parametrize("offset", ["garbage", base64.urlsafe_b64encode(b"x:1").decode(), "%%"])
def test_an_offset_the_api_did_not_issue_is_refused(client, offset):
    with pytest.raises(InvalidRequestError, match=r"offset: .*pass back nextOffset"):
        client.callbacks_page(offset)


def test_get_with_query_runs_queries_and_refuses_mutations(api, client):
    client.add_callback("http://127.0.0.1:9/h", ["processed"])
    got = raw(api, "query($n: Int) { modelEventWebhookCallbacks(pageSize: $n) { totalResults } }",
              {"n": 5}, method="GET")
    assert got.status_code == 200
    assert got.json()["data"]["modelEventWebhookCallbacks"]["totalResults"] == 1
    mutation = raw(api, 'mutation { removeModelEventWebhookCallback(id: "x") }', method="GET")
    assert mutation.status_code == 405 and mutation.headers["allow"] == "POST"
    assert "POST" in mutation.json()["errors"][0]["message"]
    with httpx.Client(trust_env=False) as http:
        no_query = http.get(api.url, auth=(api.token_id, api.token_secret))
    assert no_query.status_code == 400 and "query=" in no_query.json()["errors"][0]["message"]
    assert len(client.callbacks()) == 1


# ---------------------------------------------------------------------- patch


def test_patch_merges_every_field_left_out(client):
    cb = client.add_callback("http://127.0.0.1:9/old?q=1", ["processed", "deleted"],
                             cred_type="basic", cred_key="u", cred_secret="s",
                             additional_headers={"X-A": "1"})
    moved = client.patch_callback(cb.id, url="http://127.0.0.1:10/new")
    assert moved.url == "http://127.0.0.1:10/new"
    assert moved.event_types == ["processed", "deleted"] and moved.version == 1
    assert moved.callback.cred_type == "basic" and moved.callback.cred_key == "u"
    assert [kv.key for kv in moved.callback.additional_headers] == ["X-A"]
    retyped = client.patch_callback(cb.id, event_types=["uploaded"])
    assert retyped.event_types == ["uploaded"] and retyped.url == moved.url
    headers = client.patch_callback(cb.id, additional_headers={"X-B": "2"})
    assert [kv.key for kv in headers.callback.additional_headers] == ["X-B"]
    cleared = client.patch_callback(cb.id, cred_type=None)
    assert cleared.callback.cred_type is None and cleared.callback.cred_key is None
    assert client.callbacks() == [cleared]


def test_patch_can_switch_the_webhook_version(client):
    cb = client.add_callback("http://127.0.0.1:9/h", ["processed"])
    with pytest.raises(InvalidRequestError, match="not valid for webhook version 2"):
        client.execute(ops.PATCH_CALLBACK, {"id": cb.id, "input": {"version": 2,
                                                                   "eventTypes": ["uploaded"]}})
    switched = client.patch_callback(cb.id, version=2, event_types=["created", "processed"])
    assert (switched.version, switched.event_types) == (2, ["created", "processed"])
    # processed exists in both versions, so switching back alone is fine
    assert client.patch_callback(cb.id, version=1, event_types=["processed"]).version == 1


def test_patch_with_nothing_to_change_is_refused_before_sending(client):
    cb = client.add_callback("http://127.0.0.1:9/h", ["processed"])
    with pytest.raises(ConfigurationError, match="nothing to change"):
        client.patch_callback(cb.id)


# ---------------------------------------------------------------------- event types, remove


def test_add_and_remove_event_types(client):
    cb = client.add_callback("http://127.0.0.1:9/h", ["processed"], version=2)
    more = client.add_event_types(cb.id, ["created", "processed", "bundle_updated"])
    assert more.event_types == ["processed", "created", "bundle_updated"]  # no duplicates
    fewer = client.remove_event_types(cb.id, ["processed"])
    assert fewer.event_types == ["created", "bundle_updated"]
    with pytest.raises(InvalidRequestError, match="cannot mix webhook v1 types"):
        client.add_event_types(cb.id, ["uploaded"])
    with pytest.raises(InvalidRequestError, match="leave no event type"):
        client.remove_event_types(cb.id, ["created", "bundle_updated"])
    assert client.callbacks()[0].event_types == ["created", "bundle_updated"]


def test_remove_and_ping(client, mp_receiver):
    cb = client.add_callback(mp_receiver.url, ["processed"], **mp_receiver.credentials)
    assert client.ping_callback(cb.id) is True
    assert client.remove_callback(cb.id) is True
    assert client.callbacks() == []
