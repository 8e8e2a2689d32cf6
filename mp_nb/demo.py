"""The main job, ``mp-nb demo``: the whole webhook lifecycle, for real, on this machine.

Starts the local Model API and a receiver with basic credentials, registers a callback
(with query params) for every v1 event type, lists, patches and pings it, takes models
through every v1 event, waits for the deliveries, prints what arrived, removes the callback
and shows the list is empty.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import TextIO

import pandas as pd

from .client import ModelApiClient
from .local_api import LocalModelApi
from .models import V1_EVENT_TYPES
from .receiver import Receiver


def run_demo(models: int = 3, *, out: TextIO, db: str | Path | None = None, timeout: float = 20.0) -> int:
    """Run the demo, writing a readable report to ``out``; returns the process exit code."""
    started = time.perf_counter()

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    def step(n: int, name: str, text: str) -> None:
        say(f"{n}. {name:<9} {text}")

    db_path = Path(db) if db else Path(tempfile.mkdtemp(prefix="mp_nb_demo_")) / "events.sqlite3"
    hook_secret = secrets.token_urlsafe(18)
    say("mp-nb demo: the Matterport model-event webhook lifecycle, on this machine")
    with LocalModelApi() as api, Receiver(
        "/hooks/matterport", cred_type="basic", cred_key="mp-nb-demo", cred_secret=hook_secret, db=db_path
    ) as receiver, ModelApiClient(api.url, api.token_id, api.token_secret) as client:
        say(f"   local Model API  {api.url}  (token id {api.token_id})")
        say(f"   receiver         {receiver.url}  (basic credentials)")
        say(f"   event store      {receiver.db_path}")
        say()
        stored_before, rejected_before = receiver.count(), len(receiver.rejections())
        cb = client.add_callback(
            receiver.url + "?source=mp-nb-demo", list(V1_EVENT_TYPES),
            cred_type="basic", cred_key="mp-nb-demo", cred_secret=hook_secret,
        )
        step(1, "register", f"callback {cb.id} for {len(cb.event_types)} v1 event types")
        say(f"             -> {cb.url}")
        listed = client.callbacks()
        step(2, "list", f"{len(listed)} callback(s): " + ", ".join(c.id for c in listed))
        params = [(kv.key, kv.value) for kv in cb.callback.query_params] + [("team", "demo")]
        cb = client.patch_callback(cb.id, query_params=params)
        step(3, "patch", f"added a query param (patch merges): {cb.url}")
        ok = client.ping_callback(cb.id)
        step(4, "ping", f"endpoint answered 2xx: {ok}")
        ids = api.simulate.lifecycle(models, v2_steps=False)
        expected = models * len(V1_EVENT_TYPES)
        step(5, "simulate", f"{models} models through " + ", ".join(V1_EVENT_TYPES))
        receiver.wait_for(stored_before + expected, timeout=timeout)
        api.drain(timeout)
        events = receiver.events(model_id=ids)  # this run's models, even in a reused store
        verified = int((events["auth"] == "verified").sum())
        rejected = len(receiver.rejections()) - rejected_before
        step(6, "receive", f"{len(events)} events stored, {verified} with verified credentials, "
                           f"{rejected} rejected")
        say()
        say(_type_table(events))
        say()
        say(f"Timeline of model {ids[0]}:")
        say(_timeline(events, ids[0]))
        say()
        client.remove_callback(cb.id)
        left = client.callbacks()
        step(7, "remove", f"callback {cb.id} removed; {len(left)} callback(s) left")
        attempts = api.attempts()
        retried = int((attempts["attempt"] > 1).sum()) if len(attempts) else 0
        say(f"   deliveries: {len(attempts)} HTTP attempts, {retried} retries")
    elapsed = time.perf_counter() - started
    all_types = set(events["type"].astype(str)) >= set(V1_EVENT_TYPES)
    say(f"\nDone in {elapsed:.1f} s. Open the history later with "
        f"mp_nb.open_store({str(db_path)!r}).events()")
    return 0 if (ok and all_types and verified == len(events) and not left) else 1


def _type_table(events: pd.DataFrame) -> str:
    table = (
        events.groupby("type", observed=True)
        .agg(events=("id", "size"), models=("model_id", "nunique"),
             verified=("auth", lambda s: int((s == "verified").sum())))
        .reindex(list(V1_EVENT_TYPES))
        .fillna(0)
        .astype(int)
    )
    return table.to_string()


def _timeline(events: pd.DataFrame, model_id: str) -> str:
    rows = events[events["model_id"] == model_id].sort_values(["event_time", "id"])
    lines = []
    for _, row in rows.iterrows():
        extra = []
        if pd.notna(row["success"]):
            extra.append(f"success={bool(row['success'])}")
        if pd.notna(row["bundle_id"]):
            extra.append(f"bundle={row['bundle_id']}")
        when = row["event_time"].strftime("%H:%M:%S.%f")[:-3]
        lines.append(f"   {when}  {row['type']:<17} {' '.join(extra)}".rstrip())
    return "\n".join(lines)
