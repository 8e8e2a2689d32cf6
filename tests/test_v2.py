"""Webhooks v2 end to end: a version-2 callback gets the v2 shape for each of the ten v2
event types and every documented body variant; each delivery becomes a typed model and a
row of the same DataFrame that holds v1 events."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest

from mp_nb import ModelApiClient, parse_event
from mp_nb.events import V1_MODELS, V2_MODELS, V2Event
from mp_nb.local_api.simulator import ACTIVATION_STATES, CREATED_TYPES, VISIBILITIES
from mp_nb.models import V1_EVENT_TYPES, V2_EVENT_TYPES

V2_KEYS = {"modelId", "version", "webhookId", "webhookCustomKey", "timestamp", "type", "body"}


def payloads(receiver, include_pings=False):
    frame = receiver.events(include_pings=include_pings)
    return frame, [json.loads(p) for p in frame["payload"]]


def test_a_v2_callback_receives_each_v2_type_as_a_typed_row(mp_local_api, mp_client,
                                                            mp_receiver):
    cb = mp_client.add_callback(mp_receiver.url, version=2, **mp_receiver.credentials)
    assert cb.version == 2 and cb.event_types == list(V2_EVENT_TYPES)
    (model,) = mp_local_api.simulate.lifecycle(1)
    mp_receiver.wait_for(11, timeout=10)
    frame, bodies = payloads(mp_receiver)
    assert set(frame["type"].astype(str)) == set(V2_EVENT_TYPES)
    assert len(V2_EVENT_TYPES) == 10
    for (_, row), payload in zip(frame.iterrows(), bodies, strict=True):
        assert set(payload) == V2_KEYS and payload["webhookCustomKey"] is None
        event = parse_event(payload)
        assert type(event) is V2_MODELS[payload["type"]] and isinstance(event, V2Event)
        assert event.webhook_id == cb.id and event.model_id == model
        assert event.model_version == payload["version"]
        assert payload["timestamp"].endswith("Z")
        assert event.event_time == datetime.fromisoformat(payload["timestamp"])
        assert event.event_time.utcoffset().total_seconds() == 0
        # the flattened row
        assert row["webhook_version"] == 2 and row["auth"] == "verified"
        assert row["model_id"] == model and row["webhook_id"] == cb.id
        assert row["model_version"] == payload["version"]
        assert row["event_time"] == pd.Timestamp(payload["timestamp"])
        assert pd.isna(row["actor"]) and pd.isna(row["internal_id"])
        body = payload["body"]
        if body:
            assert json.loads(row["data"]) == body
        else:
            assert pd.isna(row["data"])
        assert (row["status"] if pd.notna(row["status"]) else None) == body.get("status")
        assert (row["bundle_id"] if pd.notna(row["bundle_id"]) else None) == body.get("bundleId")
    by_type = frame.groupby(frame["type"].astype(str))
    processed = by_type.get_group("processed").iloc[0]
    assert processed["status"] == "succeeded" and bool(processed["success"]) is True
    bundles = by_type.get_group("bundle_updated")
    assert list(bundles["status"]) == ["requested", "delivered"]
    assert list(bundles["bundle_id"]) == ["bim:cad", "bim:cad"]
    # the model revision grows with processing and edits
    versions = dict(zip(frame["type"].astype(str), frame["model_version"], strict=False))
    assert versions["created"] < versions["processed"] < versions["details_changed"]


def test_live_steps_arrive_in_the_order_they_happened(mp_local_api, mp_client, mp_receiver):
    """One callback's queue delivers in order, and live steps are dated now: nothing is out
    of order, and the timeline follows the lifecycle."""
    mp_client.add_callback(mp_receiver.url, version=2, **mp_receiver.credentials)
    (model,) = mp_local_api.simulate.lifecycle(1)
    mp_receiver.wait_for(11, timeout=10)
    frame = mp_receiver.events()
    assert not frame["out_of_order"].any(), frame[["type", "event_time", "out_of_order"]]
    timeline = mp_receiver.timeline(model)["type"].astype(str).tolist()
    assert timeline[:3] == ["created", "processed", "activation_state_changed"]
    assert timeline[-2:] == ["deleted", "restored"]


def test_v2_callbacks_never_see_v1_only_types_and_vice_versa(mp_local_api, mp_client,
                                                            mp_receiver):
    mp_client.add_callback(mp_receiver.url, ["processed", "created"], version=2,
                           **mp_receiver.credentials)
    mp_client.add_callback(mp_receiver.url, ["processed", "uploaded"], version=1,
                           **mp_receiver.credentials)
    mp_local_api.simulate.lifecycle(1)
    mp_receiver.wait_for(4, timeout=10)
    assert mp_local_api.drain(10)
    frame = mp_receiver.events()
    seen = sorted(zip(frame["webhook_version"].astype(int), frame["type"].astype(str), strict=True))
    assert seen == [(1, "processed"), (1, "uploaded"), (2, "created"), (2, "processed")]


def test_every_documented_body_variant_arrives_typed(mp_local_api, mp_client, mp_receiver):
    cb = mp_client.add_callback(mp_receiver.url, version=2, **mp_receiver.credentials)
    sim = mp_local_api.simulate
    models = [sim.upload(created_type=t) for t in CREATED_TYPES]
    m = models[0]
    sim.process(m, activate=False)
    sim.process(models[1], success=False, error="alignment failed")
    for state in ACTIVATION_STATES:
        sim.set_state(m, state)
    for visibility in VISIBILITIES:
        sim.set_visibility(m, visibility)
    sim.update(m, name="Lobby", description="Ground floor",
               address={"city": "Sunnyvale"}, publication={"presentedBy": "Kim"})
    sim.request_bundle(m, "e57")
    sim.complete_bundle(m, "e57")
    sim.cancel_bundle(m, "bim:revit")
    sim.complete_bundle(m, "floorplan:schematic", success=False)
    sim.transfer_out(m, "org-b")
    sim.transfer_in("org-c", model_id=m)
    sim.delete(m)
    for t in CREATED_TYPES:
        sim.restore(m, restored_type=t)
    expected = 5 + 2 + 3 + 4 + 1 + 4 + 2 + 1 + 5
    mp_receiver.wait_for(expected, timeout=10)
    frame, bodies = payloads(mp_receiver)
    events = [parse_event(p) for p in bodies]
    assert all(e.webhook_id == cb.id for e in events)

    def of(kind):
        return [e for e in events if e.type == kind]

    assert [e.created_type for e in of("created")] == list(CREATED_TYPES)
    assert [e.created_type for e in of("restored")] == list(CREATED_TYPES)
    assert [(e.success, e.error) for e in of("processed")] == [(True, ""),
                                                              (False, "alignment failed")]
    states = of("activation_state_changed")
    assert [(e.previous_state, e.state) for e in states] == [
        ("pending", "pending"), ("pending", "active"), ("active", "inactive")]
    assert [e.visibility for e in of("visibility_changed")] == list(VISIBILITIES)
    assert of("visibility_changed")[0].previous_visibility == "private"
    (details,) = of("details_changed")
    assert details.changed_fields == ["address", "description", "name", "publication"]
    assert details.current["publication"] == {"presentedBy": "Kim"}
    assert [(e.status, e.bundle_id) for e in of("bundle_updated")] == [
        ("requested", "e57"), ("delivered", "e57"), ("canceled", "bim:revit"),
        ("failed", "floorplan:schematic")]
    assert of("transferred_out")[0].destination == "org-b"
    assert of("transferred_in")[0].source == "org-c"
    assert of("deleted")[0].body == {}
    # the DataFrame flattens the success of bundles and processing
    bundle_rows = frame[frame["type"] == "bundle_updated"]
    flags = [None if pd.isna(v) else bool(v) for v in bundle_rows["success"]]
    assert flags == [None, True, None, False]  # requested and canceled are neither


def test_v1_and_v2_events_share_one_table(mp_local_api, mp_client, mp_receiver):
    v1 = mp_client.add_callback(mp_receiver.url, ["processed", "bundle_completed"], version=1,
                                **mp_receiver.credentials)
    v2 = mp_client.add_callback(mp_receiver.url, ["processed", "bundle_updated"], version=2,
                                **mp_receiver.credentials)
    model = mp_local_api.simulate.upload()
    mp_local_api.simulate.process(model, activate=False)
    mp_local_api.simulate.complete_bundle(model)
    mp_receiver.wait_for(4, timeout=10)
    frame = mp_receiver.events()
    assert sorted(frame["webhook_version"].astype(int)) == [1, 1, 2, 2]
    assert (frame["model_id"] == model).all() and frame["success"].all()
    old = frame[frame["webhook_version"] == 1]
    new = frame[frame["webhook_version"] == 2]
    assert old["webhook_id"].isna().all() and (new["webhook_id"] == v2.id).all()
    assert old["actor"].notna().all() and new["actor"].isna().all()
    assert set(old["type"].astype(str)) == {"processed", "bundle_completed"}
    assert set(new["type"].astype(str)) == {"processed", "bundle_updated"}
    assert all(type(parse_event(p)) is V1_MODELS[t] for p, t in
               zip(old["payload"], old["type"].astype(str), strict=True))
    # both versions' event times are timezone-aware UTC in one column
    assert str(frame["event_time"].dtype) == "datetime64[ns, UTC]"
    assert frame["event_time"].notna().all()
    assert v1.id not in set(frame["webhook_id"].dropna())


def test_a_v2_ping_has_the_v2_shape_and_is_marked(mp_client, mp_receiver):
    cb = mp_client.add_callback(mp_receiver.url, ["visibility_changed"], version=2,
                                **mp_receiver.credentials)
    assert mp_client.ping_callback(cb.id) is True
    assert mp_receiver.count() == 0  # pings are kept out of the history by default
    frame, (payload,) = payloads(mp_receiver, include_pings=True)
    assert set(payload) >= V2_KEYS and payload["ping"] is True
    assert payload["webhookId"] == cb.id and payload["type"] == "visibility_changed"
    event = parse_event(payload)
    assert type(event) is V2_MODELS["visibility_changed"] and event.is_ping
    assert bool(frame["ping"].iloc[0]) and frame["webhook_version"].iloc[0] == 2


def test_mixing_versions_on_one_callback_is_refused_with_the_types_named(mp_client):
    with pytest.raises(ValueError, match=r"v1 types \(bundle_requested\) with v2 types "
                                         r"\(bundle_updated\)"):
        mp_client.add_callback("http://127.0.0.1:9/x", ["bundle_requested", "bundle_updated"],
                               version=2)
    assert set(V1_EVENT_TYPES) & set(V2_EVENT_TYPES) == {"processed", "deleted"}


def test_bearer_access_token_manages_v2_callbacks(mp_local_api, mp_receiver):
    with ModelApiClient(mp_local_api.url, access_token=mp_local_api.access_token) as client:
        cb = client.add_callback(mp_receiver.url, ["created"], version=2,
                                 **mp_receiver.credentials)
        assert [c.id for c in client.callbacks()] == [cb.id]
        assert "access_token=***" in repr(client)
        assert mp_local_api.access_token not in repr(client)
