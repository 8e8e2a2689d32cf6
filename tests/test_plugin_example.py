"""How another project tests its webhook code with mp_nb's pytest fixtures.

This file uses nothing but the fixtures the installed plugin provides (``mp_local_api``,
``mp_client``, ``mp_receiver``) — no conftest, no test helpers — exactly as a suite outside
this repository would. The first test is the example from the plugin's docstring.
"""


def test_my_service_handles_processed(mp_local_api, mp_client, mp_receiver):
    mp_client.add_callback(mp_receiver.url, ["processed"], **mp_receiver.credentials)
    model = mp_local_api.simulate.upload()
    mp_local_api.simulate.process(model)
    mp_receiver.wait_for(1, types="processed")
    assert mp_receiver.events()["model_id"].iloc[0] == model


def ready_models(events):
    """Code under test: the models that are both processed and active (Matterport's advice
    for v2: act only on models that are both)."""
    processed = set(events.loc[(events["type"] == "processed") & events["success"].fillna(False),
                               "model_id"])
    states = events[events["type"] == "activation_state_changed"]
    active = {m for m, data in zip(states["model_id"], states["data"], strict=True)
              if '"current":{"state":"active"}' in data}
    return processed & active


def test_v2_only_processed_and_active_models_are_ready(mp_local_api, mp_client, mp_receiver):
    mp_client.add_callback(mp_receiver.url, ["processed", "activation_state_changed"],
                           version=2, **mp_receiver.credentials)
    sim = mp_local_api.simulate
    good, failed, waiting = sim.upload(), sim.upload(), sim.upload()
    sim.process(good)  # processed, then pending -> active
    sim.process(failed, success=False)
    sim.process(waiting, activate=False)  # processed, still pending
    mp_receiver.wait_for(4, timeout=10)
    assert ready_models(mp_receiver.events()) == {good}


def test_deliveries_to_a_dead_endpoint_are_retried_and_logged(mp_local_api, mp_client,
                                                              mp_receiver):
    cb = mp_client.add_callback(mp_receiver.url, ["uploaded"], **mp_receiver.credentials)
    mp_receiver.stop()  # your endpoint is down
    assert mp_client.ping_callback(cb.id) is False
    mp_local_api.simulate.upload()
    assert mp_local_api.drain(timeout=10)
    log = mp_local_api.attempts()
    deliveries = log[~log["ping"]]
    assert list(deliveries["attempt"]) == [1, 2, 3]
    assert deliveries["outcome"].astype(str).iloc[-1] == "failed"
