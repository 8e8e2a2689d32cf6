"""Every GraphQL example of Matterport's webhook document runs unchanged against the local
Model API and gets the documented response shape."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def doc(name: str) -> str:
    return (DATA / f"seed_{name}.graphql").read_text()


def post(http, api, query, variables=None):
    response = http.post(
        api.url, json={"query": query, "variables": variables or {}}, auth=(api.token_id, api.token_secret)
    )
    return response.status_code, response.json()


def test_add_example_returns_documented_shape(http, mp_local_api):
    status, body = post(http, mp_local_api, doc("add"))
    assert status == 200 and "errors" not in body
    added = body["data"]["addModelEventWebhookCallback"]
    assert set(added) == {"id", "eventTypes", "callback"}
    assert len(added["id"]) == 25 and added["id"].isalnum() and added["id"].islower()
    assert sorted(added["eventTypes"]) == ["deleted", "inserted", "updated"]
    assert added["callback"] == {
        "scheme": "https",
        "host": "myawesomeapi.com",
        "path": "my/api/path",
        "queryParams": [{"key": "key1", "value": "value1"}, {"key": "key2", "value": "value2"}],
    }


def test_list_example_returns_documented_shape(http, mp_local_api):
    post(http, mp_local_api, doc("add"))
    status, body = post(http, mp_local_api, doc("list"))
    assert status == 200 and "errors" not in body
    page = body["data"]["modelEventWebhookCallbacks"]
    assert set(page) == {"nextOffset", "totalResults", "results"}
    assert page["totalResults"] == 1 and page["nextOffset"] is None
    (result,) = page["results"]
    assert set(result) == {"id", "eventTypes", "callback"}
    assert set(result["callback"]) == {"scheme", "port", "path"}
    assert result["callback"]["path"] == "my/api/path"


def test_patch_example_with_variables(http, mp_local_api):
    _, added = post(http, mp_local_api, doc("add"))
    cid = added["data"]["addModelEventWebhookCallback"]["id"]
    status, body = post(http, mp_local_api, doc("patch"), {"callbackId": cid})
    assert status == 200 and "errors" not in body
    patched = body["data"]["patchModelEventWebhookCallback"]
    assert patched["id"] == cid
    assert patched["callback"] == {"scheme": "https", "host": "myawesomeapi.com", "path": "v2/my/api/path"}
    # patch merges: the event types it did not mention are kept
    assert sorted(patched["eventTypes"]) == ["deleted", "inserted", "updated"]


def test_remove_example(http, mp_local_api):
    _, added = post(http, mp_local_api, doc("add"))
    cid = added["data"]["addModelEventWebhookCallback"]["id"]
    status, body = post(http, mp_local_api, doc("remove"), {"callbackId": cid})
    assert (status, body) == (200, {"data": {"removeModelEventWebhookCallback": True}})
    _, listed = post(http, mp_local_api, doc("list"))
    assert listed["data"]["modelEventWebhookCallbacks"]["totalResults"] == 0


def test_ping_example_refuses_a_remote_host_at_once(http, mp_local_api):
    # The seed registers myawesomeapi.com; the local API never sends traffic off this machine.
    _, added = post(http, mp_local_api, doc("add"))
    cid = added["data"]["addModelEventWebhookCallback"]["id"]
    status, body = post(http, mp_local_api, doc("ping"), {"callbackId": cid})
    assert (status, body) == (200, {"data": {"pingModelEventWebhookCallback": False}})
    log = mp_local_api.attempts()
    assert list(log["outcome"].astype(str)) == ["refused"]
    assert "non-loopback" in log["error"].iloc[0]


@pytest.mark.parametrize("name", ["patch", "remove", "ping"])
def test_unknown_id_gives_error_fetching_data(http, mp_local_api, name):
    status, body = post(http, mp_local_api, doc(name), {"callbackId": "doesnotexist"})
    assert status == 200
    (error,) = body["errors"]
    assert error["message"] == "Error fetching data"
    assert error["extensions"]["code"] == "not.found"


def test_without_credentials_http_401(http, mp_local_api):
    response = http.post(mp_local_api.url, json={"query": doc("list")})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "request.unauthenticated"
    wrong = http.post(mp_local_api.url, json={"query": doc("list")}, auth=(mp_local_api.token_id, "wrong"))
    assert wrong.status_code == 401
