"""ModelApiClient against the local Model API over real loopback HTTP."""

from __future__ import annotations

import pytest

from mp_nb import ConfigurationError, ModelApiClient, NotFoundError
from mp_nb.exceptions import AuthenticationError, InvalidRequestError
from mp_nb.models import split_url


def test_add_splits_the_url(mp_client, mp_receiver):
    cb = mp_client.add_callback("http://127.0.0.1:8080/hooks/mp?team=a&empty=", ["processed", "deleted"])
    assert cb.callback.scheme == "http" and cb.callback.host == "127.0.0.1"
    assert cb.callback.port == 8080 and cb.callback.path == "hooks/mp"
    assert [(kv.key, kv.value) for kv in cb.callback.query_params] == [("team", "a"), ("empty", "")]
    assert cb.event_types == ["processed", "deleted"] and cb.version == 1
    assert cb.url == "http://127.0.0.1:8080/hooks/mp?team=a&empty="


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("", "url: empty"),
        ("ftp://example.com/x", "scheme must be http or https"),
        ("https://user:pw@example.com/x", "contains credentials"),
        ("https:///nohost", "no host"),
        ("https://example.com:99999/x", "port out of range"),
        ("https://example.com/x#frag", "fragments"),
    ],
)
def test_bad_urls_are_refused_before_sending(mp_client, url, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        mp_client.add_callback(url, ["processed"])
    assert mp_client.callbacks() == []


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("https://example.com:abc/x", "port 'abc' is not a number"),
        ("http://127.0.0.1:8080/hook\r\nX-Evil: 1", "'\\r' at position 26; a URL has no spaces"),
        ("http://127.0.0.1:8080/ho ok", "' ' at position 24; a URL has no spaces"),
        ("http://127.0.\t0.1:1/x", "'\\t' at position 13"),
        ("https://ex\u00e4mple.invalid/x", "non-ASCII letters; give its ASCII (xn--) form, e.g. xn--"),
        ("https://ex!ample.invalid/x", "only letters, digits"),
        ("https://-a.invalid/x", "no leading or trailing '-'"),
        ("https://a..invalid/x", "no empty parts"),
        ("https://example.com/x?a%0A=1", "control character"),
    ],
)
def test_urls_that_would_travel_altered_are_refused(mp_client, url, fragment):
    """Python's URL parser drops tabs and line breaks silently; the client refuses them."""
    with pytest.raises(ConfigurationError) as caught:
        mp_client.add_callback(url, ["processed"])
    assert str(caught.value).startswith("url: ") and fragment in str(caught.value)
    assert mp_client.callbacks() == []


def test_split_url_defaults():
    fields = split_url("https://example.com")
    assert (fields["scheme"], fields["host"], fields["port"], fields["path"]) == (
        "https",
        "example.com",
        None,
        "",
    )


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"event_types": ["teleported"]}, "not a Matterport event type"),
        ({"event_types": []}, "at least one event type"),
        ({"event_types": ["created"]}, "not valid for webhook version 1"),
        ({"event_types": ["uploaded"], "version": 2}, "not valid for webhook version 2"),
        ({"version": 3}, "version"),
        ({"cred_type": "basic", "cred_secret": "s"}, "cred_key"),
        ({"cred_type": "basic", "cred_key": "u"}, "cred_secret"),
        ({"cred_key": "u", "cred_secret": "s"}, "cred_type"),
        ({"cred_type": "oauth", "cred_secret": "s"}, "cred_type"),
    ],
)
def test_bad_arguments_name_the_field(mp_client, kwargs, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        mp_client.add_callback("http://127.0.0.1:9/x", **kwargs)


def test_lists_across_several_pages(mp_client):
    added = [mp_client.add_callback(f"http://127.0.0.1:9/hook/{i}", ["processed"]).id for i in range(23)]
    first = mp_client.callbacks_page(page_size=10)
    assert len(first.results) == 10 and first.total_results == 23 and first.next_offset
    assert [cb.id for cb in mp_client.callbacks(page_size=10)] == added
    assert [cb.id for cb in mp_client.callbacks(page_size=7)] == added
    frame = mp_client.callbacks_frame()
    assert list(frame["id"]) == added and str(frame["version"].dtype) == "Int8"


def test_patch_merges_and_keeps_the_secret(mp_client, mp_receiver, mp_local_api):
    cb = mp_client.add_callback(mp_receiver.url, ["processed"], **mp_receiver.credentials)
    patched = mp_client.patch_callback(cb.id, event_types=["processed", "deleted"])
    assert patched.event_types == ["processed", "deleted"]
    assert patched.url == cb.url and patched.callback.cred_key == "mp-nb-test"
    # the stored secret still works: ping is delivered with verified credentials
    assert mp_client.ping_callback(cb.id) is True
    assert mp_receiver.count(include_pings=True) == 1
    assert mp_receiver.events(include_pings=True)["auth"].iloc[0] == "verified"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.patch_callback("nosuchcallback", event_types=["processed"]),
        lambda c: c.remove_callback("nosuchcallback"),
        lambda c: c.ping_callback("nosuchcallback"),
        lambda c: c.add_event_types("nosuchcallback", ["processed"]),
        lambda c: c.remove_event_types("nosuchcallback", ["processed"]),
        lambda c: c.get_callback("nosuchcallback"),
    ],
)
def test_unknown_id_raises_typed_not_found(mp_client, call):
    with pytest.raises(NotFoundError) as info:
        call(mp_client)
    assert info.value.code == "not.found" and info.value.message == "Error fetching data"


def test_remove_then_list_is_empty(mp_client):
    cb = mp_client.add_callback("http://127.0.0.1:9/x", ["processed"])
    assert mp_client.remove_callback(cb.id) is True
    assert mp_client.callbacks() == []
    with pytest.raises(NotFoundError):
        mp_client.remove_callback(cb.id)


def test_wrong_token_secret_is_an_authentication_error(mp_local_api):
    with (
        ModelApiClient(mp_local_api.url, mp_local_api.token_id, "wrong", retries=0) as client,
        pytest.raises(AuthenticationError) as info,
    ):
        client.callbacks()
    assert info.value.status == 401 and info.value.code == "request.unauthenticated"


def test_invalid_page_size_is_a_typed_invalid_request(mp_client):
    with pytest.raises(InvalidRequestError, match="pageSize"):
        mp_client.callbacks_page(page_size=5000)


def test_no_credentials_is_a_configuration_error(monkeypatch):
    for name in ("MATTERPORT_TOKEN_ID", "MATTERPORT_TOKEN_SECRET", "MATTERPORT_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="MATTERPORT_TOKEN_ID"):
        ModelApiClient("http://127.0.0.1:9/api/models/graph")


def test_environment_configures_the_client(monkeypatch, mp_local_api):
    monkeypatch.setenv("MATTERPORT_API_URL", mp_local_api.url)
    monkeypatch.setenv("MATTERPORT_TOKEN_ID", mp_local_api.token_id)
    monkeypatch.setenv("MATTERPORT_TOKEN_SECRET", mp_local_api.token_secret)
    with ModelApiClient() as client:
        assert client.url == mp_local_api.url
        assert client.callbacks() == []
