"""Model lifecycles for the local Model API: what happens to models, rendered as v1 and v2 events.

Each step (upload, process, update, bundle, delete …) produces *occurrences*; every
registered callback receives the rendering of its webhook version, if it subscribed to
that type. v1 payloads have exactly the fields of Matterport's samples; v2 payloads have
``modelId version webhookId webhookCustomKey timestamp type body``.

============================  ==========================  =================================
step                          v1 events                   v2 events
============================  ==========================  =================================
upload                        uploaded, inserted          created (type: processing)
process                       processed (data.success)    processed (status, error);
                                                          activation pending → active
update                        updated                     details_changed
set_visibility                —                           visibility_changed
request_bundle                bundle_requested            bundle_updated (requested)
complete_bundle               bundle_completed            bundle_updated (delivered/failed)
delete                        deleted                     deleted
restore / transfer_in / _out  —                           restored / transferred_in / _out
============================  ==========================  =================================
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

_MODEL_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass
class Occurrence:
    """One thing that happened to a model, in the shapes of both webhook versions."""

    model_id: str
    at: datetime
    model_version: int
    v1: tuple[str, dict[str, Any]] | None = None  # (type, payload)
    v2: tuple[str, dict[str, Any]] | None = None  # (type, body)

    def v1_payload(self) -> dict[str, Any] | None:
        return self.v1[1] if self.v1 else None

    def v2_payload(self, webhook_id: str, custom_key: str | None = None) -> dict[str, Any] | None:
        if self.v2 is None:
            return None
        etype, body = self.v2
        return {
            "modelId": self.model_id,
            "version": self.model_version,
            "webhookId": webhook_id,
            "webhookCustomKey": custom_key,
            "timestamp": self.at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "type": etype,
            "body": body,
        }


@dataclass
class SimModel:
    """What the simulator knows about one model."""

    id: str
    internal_id: str
    created_by: str
    revision: int = 1
    state: str = "pending"
    visibility: str = "private"
    details: dict[str, Any] = field(default_factory=dict)
    processed: bool = False
    deleted: bool = False


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class Simulator:
    """Drives model lifecycles and hands each occurrence to ``emit`` (the local API's dispatch).

    ``seed`` makes ids and random choices reproducible; ``clock`` supplies event times
    (``datetime.now`` by default; history generation passes explicit times).
    """

    def __init__(
        self,
        emit: Callable[[Occurrence], None],
        *,
        seed: int | None = None,
        actor: str = "owner@example.com",
        organization: str = "org-local",
    ) -> None:
        self._emit = emit
        self.random = random.Random(seed)
        self.actor = actor
        self.organization = organization
        self.models: dict[str, SimModel] = {}

    # ------------------------------------------------------------------ helpers

    def _new_id(self) -> str:
        return "".join(self.random.choice(_MODEL_ID_ALPHABET) for _ in range(11))

    def _model(self, model_id: str) -> SimModel:
        try:
            return self.models[model_id]
        except KeyError:
            raise KeyError(f"unknown model {model_id!r}; create one with upload()") from None

    def _occur(
        self,
        model: SimModel,
        at: datetime | None,
        v1: tuple[str, dict[str, Any]] | None = None,
        v2: tuple[str, dict[str, Any]] | None = None,
    ) -> Occurrence:
        occ = Occurrence(model.id, at or datetime.now(timezone.utc), model.revision, v1, v2)
        self._emit(occ)
        return occ

    def _v1_model_event(self, etype: str, model: SimModel, at: datetime, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return etype, {
            "type": etype,
            "modelId": model.id,
            "timestamp": _ms(at),
            "internalId": model.internal_id,
            "createdBy": model.created_by,
            "data": data,
        }

    def _v1_bundle_event(self, etype: str, model: SimModel, at: datetime, bundle_id: str,
                         options: dict[str, Any], success: bool | None = None) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {
            "timestamp": _ms(at),
            "modelId": model.id,
            "internalId": model.internal_id,
            "bundleId": bundle_id,
            "bundleOptions": options,
            "orderedBy": self.actor,
        }
        if success is not None:
            payload["success"] = success
        payload["type"] = etype
        return etype, payload

    @staticmethod
    def _now(at: datetime | None) -> datetime:
        return at or datetime.now(timezone.utc)

    # ------------------------------------------------------------------ steps

    def upload(self, *, model_id: str | None = None, name: str | None = None,
               at: datetime | None = None, created_type: str = "processing") -> str:
        """A new model is uploaded: v1 uploaded + inserted, v2 created. Returns its id."""
        mid = model_id or self._new_id()
        model = SimModel(id=mid, internal_id=f"internal-{mid}", created_by=self.actor,
                         details={"name": name or f"Model {mid}"})
        self.models[mid] = model
        t = self._now(at)
        self._occur(model, t, v1=self._v1_model_event("uploaded", model, t, {}),
                    v2=("created", {"type": created_type}))
        self._occur(model, t, v1=self._v1_model_event("inserted", model, t, {}))
        return mid

    def process(self, model_id: str, *, success: bool = True, error: str = "",
                activate: bool = True, at: datetime | None = None,
                activation_delay: timedelta = timedelta(seconds=2)) -> None:
        """Processing finishes: v1 processed (``data.success`` as the string Matterport sends),
        v2 processed, then, on success, activation pending → active."""
        model = self._model(model_id)
        t = self._now(at)
        model.processed = success
        model.revision += 1
        self._occur(
            model, t,
            v1=self._v1_model_event("processed", model, t, {"success": "true" if success else "false"}),
            v2=("processed", {"status": "succeeded" if success else "failed",
                              "error": "" if success else (error or "processing failed")}),
        )
        if success and activate:
            self.set_state(model_id, "active", at=t + activation_delay)

    def set_state(self, model_id: str, state: str, *, at: datetime | None = None) -> None:
        """Activation state changes (pending | active | inactive): v2 only."""
        model = self._model(model_id)
        previous, model.state = model.state, state
        self._occur(model, at, v2=("activation_state_changed",
                                   {"previous": {"state": previous}, "current": {"state": state}}))

    def set_visibility(self, model_id: str, visibility: str, *, at: datetime | None = None) -> None:
        """Access visibility changes (private | unlisted | public | password): v2 only."""
        model = self._model(model_id)
        previous, model.visibility = model.visibility, visibility
        self._occur(model, at, v2=("visibility_changed",
                                   {"previous": {"accessVisibility": previous},
                                    "current": {"accessVisibility": visibility}}))

    def update(self, model_id: str, *, at: datetime | None = None, **details: Any) -> None:
        """Model details change: v1 updated, v2 details_changed (previous/current)."""
        model = self._model(model_id)
        details = details or {"name": f"{model.details.get('name', model.id)} (renamed)"}
        previous = {k: model.details.get(k) for k in details}
        model.details.update(details)
        model.revision += 1
        t = self._now(at)
        self._occur(model, t, v1=self._v1_model_event("updated", model, t, {}),
                    v2=("details_changed", {"previous": previous, "current": dict(details)}))

    def request_bundle(self, model_id: str, bundle_id: str = "bim:cad", *,
                       options: dict[str, Any] | None = None, at: datetime | None = None) -> None:
        """An add-on is ordered: v1 bundle_requested, v2 bundle_updated (requested)."""
        model = self._model(model_id)
        t = self._now(at)
        opts = {"style": "mep"} if options is None else options
        self._occur(model, t, v1=self._v1_bundle_event("bundle_requested", model, t, bundle_id, opts),
                    v2=("bundle_updated", {"status": "requested", "bundleId": bundle_id}))

    def complete_bundle(self, model_id: str, bundle_id: str = "bim:cad", *, success: bool = True,
                        options: dict[str, Any] | None = None, at: datetime | None = None) -> None:
        """An add-on is done: v1 bundle_completed (``success``), v2 bundle_updated."""
        model = self._model(model_id)
        t = self._now(at)
        opts = {"style": "mep"} if options is None else options
        self._occur(model, t,
                    v1=self._v1_bundle_event("bundle_completed", model, t, bundle_id, opts, success),
                    v2=("bundle_updated", {"status": "delivered" if success else "failed",
                                           "bundleId": bundle_id}))

    def delete(self, model_id: str, *, at: datetime | None = None) -> None:
        model = self._model(model_id)
        model.deleted = True
        t = self._now(at)
        self._occur(model, t, v1=self._v1_model_event("deleted", model, t, {}), v2=("deleted", {}))

    def restore(self, model_id: str, *, at: datetime | None = None, restored_type: str = "unknown") -> None:
        model = self._model(model_id)
        model.deleted = False
        self._occur(model, at, v2=("restored", {"type": restored_type}))

    def transfer_out(self, model_id: str, destination: str = "org-partner", *, at: datetime | None = None) -> None:
        model = self._model(model_id)
        self._occur(model, at, v2=("transferred_out", {"destination": destination}))

    def transfer_in(self, source: str = "org-partner", *, model_id: str | None = None,
                    at: datetime | None = None) -> str:
        mid = model_id or self._new_id()
        model = self.models.get(mid) or SimModel(id=mid, internal_id=f"internal-{mid}",
                                                 created_by=self.actor)
        self.models[mid] = model
        self._occur(model, at, v2=("transferred_in", {"source": source}))
        return mid

    # ------------------------------------------------------------------ scripts

    def lifecycle(self, n_models: int = 3, *, bundle_id: str = "bim:cad", v2_steps: bool = True) -> list[str]:
        """Take ``n_models`` new models through every event type; returns their ids.

        Per model: upload (v1 uploaded + inserted, v2 created), process (processed, then v2
        activation), update, bundle requested and completed, delete. With ``v2_steps`` also
        the v2-only steps: visibility change, transfer out and back in, restore and a final
        delete. Each v1 callback then sees 7 events per model (8 with ``v2_steps``: the second
        delete), each v2 callback 7 (12 with ``v2_steps``).
        """
        ids = []
        for _ in range(n_models):
            mid = self.upload()
            self.process(mid, activation_delay=timedelta(milliseconds=50))
            self.update(mid)
            if v2_steps:
                self.set_visibility(mid, "public")
            self.request_bundle(mid, bundle_id)
            self.complete_bundle(mid, bundle_id)
            if v2_steps:
                self.transfer_out(mid)
                self.transfer_in(model_id=mid)
                self.delete(mid)
                self.restore(mid)
            self.delete(mid)
            ids.append(mid)
        return ids

    def history(
        self,
        *,
        n_models: int = 200,
        days: int = 28,
        start: datetime | None = None,
        failure_rate: float = 0.08,
        bundle_rate: float = 0.35,
        bundle_failure_rate: float = 0.05,
        update_rate: float = 0.5,
        delete_rate: float = 0.04,
        transfer_rate: float = 0.02,
        median_processing: timedelta = timedelta(hours=3),
        median_bundle: timedelta = timedelta(hours=20),
    ) -> list[Occurrence]:
        """A believable organization over ``days``: uploads spread over working hours,
        log-normal processing and bundle times, seeded failures, activation after processing,
        occasional updates, visibility changes, deletes and transfers. Emitted in time order.

        Returns the occurrences (also delivered to every subscribed callback).
        """
        if not 0 <= failure_rate <= 1:
            raise ValueError("failure_rate must be between 0 and 1")
        rng = self.random
        start = start or (datetime.now(timezone.utc) - timedelta(days=days)).replace(
            hour=0, minute=0, second=0, microsecond=0)
        plan: list[tuple[datetime, int, Callable[[datetime], None]]] = []
        seq = iter(range(10**9))

        def at(t: datetime, fn: Callable[[datetime], None]) -> None:
            plan.append((t, next(seq), fn))

        for _ in range(n_models):
            day = rng.randrange(days)
            upload_at = start + timedelta(days=day, hours=rng.uniform(8, 18))
            if upload_at.weekday() >= 5 and rng.random() < 0.7:  # fewer weekend uploads
                upload_at += timedelta(days=7 - upload_at.weekday())
            mid = self._new_id()
            processing = _lognormal(rng, median_processing, 0.6)
            failed = rng.random() < failure_rate
            done_at = upload_at + processing
            at(upload_at, lambda t, m=mid: self.upload(model_id=m, at=t))
            at(done_at, lambda t, m=mid, f=failed: self.process(
                m, success=not f, error="alignment failed" if f else "",
                at=t, activation_delay=timedelta(minutes=rng.uniform(1, 30))))
            if failed:
                continue
            if rng.random() < update_rate:
                at(done_at + timedelta(hours=rng.uniform(1, 72)),
                   lambda t, m=mid: self.update(m, at=t, name=f"Site {m[:4]}"))
            if rng.random() < 0.6:
                at(done_at + timedelta(hours=rng.uniform(1, 48)),
                   lambda t, m=mid: self.set_visibility(m, rng.choice(["public", "unlisted"]), at=t))
            if rng.random() < bundle_rate:
                req = done_at + timedelta(hours=rng.uniform(2, 96))
                bundle = rng.choice(["bim:cad", "bim:revit", "floorplan:schematic", "e57"])
                ok = rng.random() >= bundle_failure_rate
                at(req, lambda t, m=mid, b=bundle: self.request_bundle(m, b, at=t))
                at(req + _lognormal(rng, median_bundle, 0.5),
                   lambda t, m=mid, b=bundle, s=ok: self.complete_bundle(m, b, success=s, at=t))
            if rng.random() < transfer_rate:
                at(done_at + timedelta(days=rng.uniform(1, 10)),
                   lambda t, m=mid: self.transfer_out(m, at=t))
            elif rng.random() < delete_rate:
                at(done_at + timedelta(days=rng.uniform(1, 14)),
                   lambda t, m=mid: self.delete(m, at=t))
        out: list[Occurrence] = []
        original = self._emit

        def capture(occ: Occurrence) -> None:
            out.append(occ)
            original(occ)

        self._emit = capture
        try:
            for t, _, fn in sorted(plan, key=lambda p: (p[0], p[1])):
                fn(t)
        finally:
            self._emit = original
        return out


def _lognormal(rng: random.Random, median: timedelta, sigma: float) -> timedelta:
    import math

    return timedelta(seconds=median.total_seconds() * math.exp(rng.gauss(0, sigma)))


def iter_types(occurrences: list[Occurrence], version: int) -> Iterator[str]:
    """The event types a subscriber of ``version`` would see for these occurrences."""
    for occ in occurrences:
        part = occ.v1 if version == 1 else occ.v2
        if part is not None:
            yield part[0]
