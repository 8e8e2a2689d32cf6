"""A generic GraphQL client that knows nothing of mp_nb: it loads the schema by standard
introspection (as GraphiQL does), validates Matterport's own example documents against it
and runs them against the local Model API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from graphql import (
    build_client_schema,
    get_introspection_query,
    parse,
    print_schema,
    validate,
)
from graphql.utilities import lexicographic_sort_schema

from mp_nb import LocalModelApi
from mp_nb import operations as ops
from mp_nb.local_api import api_schema

SEED = Path(__file__).parent / "data"
SEED_ORDER = ["add", "list", "patch", "ping", "remove"]


@pytest.fixture(scope="module")
def api():
    with LocalModelApi() as local:
        yield local


@pytest.fixture(scope="module")
def http(api):
    with httpx.Client(trust_env=False, timeout=10, auth=(api.token_id, api.token_secret)) as c:
        yield c


@pytest.fixture(scope="module")
def client_schema(api, http):
    response = http.post(api.url, json={"query": get_introspection_query(
        descriptions=True, schema_description=True, specified_by_url=True,
        directive_is_repeatable=True, input_value_deprecation=True)})
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body
    return build_client_schema(body["data"])


def test_introspection_returns_the_whole_schema(client_schema):
    def printed(schema):
        return print_schema(lexicographic_sort_schema(schema))

    assert printed(client_schema) == printed(api_schema())


def test_introspection_works_over_get_too(api, http):
    response = http.get(api.url, params={"query": "{ __schema { queryType { name } "
                                                  "mutationType { name } } }"})
    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"},
                                                     "mutationType": {"name": "Mutation"}}}}


def test_type_lookup_like_graphiql_docs(http, api):
    query = '{ __type(name: "WebhookCredentialType") { kind enumValues { name } } }'
    body = http.post(api.url, json={"query": query}).json()
    assert body["data"]["__type"] == {"kind": "ENUM",
                                      "enumValues": [{"name": "basic"}, {"name": "token"}]}


def test_the_seed_documents_validate_and_run_against_the_introspected_schema(
    api, http, client_schema
):
    documents = {name: (SEED / f"seed_{name}.graphql").read_text() for name in SEED_ORDER}
    for name, text in documents.items():
        assert validate(client_schema, parse(text)) == [], name
    added = http.post(api.url, json={"query": documents["add"]}).json()
    callback_id = added["data"]["addModelEventWebhookCallback"]["id"]
    results = {"add": added}
    for name in SEED_ORDER[1:]:
        variables = {"callbackId": callback_id} if "$callbackId" in documents[name] else {}
        results[name] = http.post(api.url, json={"query": documents[name],
                                                 "variables": variables}).json()
    assert all("errors" not in body for body in results.values()), results
    listed = results["list"]["data"]["modelEventWebhookCallbacks"]
    assert [r["id"] for r in listed["results"]] == [callback_id]
    patched = results["patch"]["data"]["patchModelEventWebhookCallback"]
    assert patched["callback"]["path"] == "v2/my/api/path"
    # the seed registers a remote host: the local API refuses to deliver there
    assert results["ping"]["data"] == {"pingModelEventWebhookCallback": False}
    assert results["remove"]["data"] == {"removeModelEventWebhookCallback": True}


@pytest.mark.parametrize("name", sorted(ops.ALL))
def test_mp_nb_documents_validate_against_the_introspected_schema(client_schema, name):
    assert validate(client_schema, parse(ops.ALL[name])) == []
