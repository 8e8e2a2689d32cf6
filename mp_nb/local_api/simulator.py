"""Model lifecycles for the local Model API: what happens to models, rendered as v1 and v2 events.

Each step (upload, process, update, bundle, delete …) produces *occurrences*; every
registered callback receives the rendering of its webhook version, if it subscribed to
that type. v1 payloads have exactly the fields of Matterport's samples; v2 payloads have
``modelId version webhookId webhookCustomKey timestamp type body``.

============================  ==========================  =================================
step                          v1 events                   v2 events
============================  ==========================  =================================
upload                        uploaded, inserted          created (type: processing …)
process                       processed (data.success)    processed (status, error);
                                                          activation pending → active
set_state                     —                           activation_state_changed
update                        updated                     details_changed
set_visibility                —                           visibility_changed
request_bundle                bundle_requested            bundle_updated (requested)
complete_bundle               bundle_completed            bundle_updated (delivered/failed)
cancel_bundle                 —                           bundle_updated (canceled)
delete                        deleted                     deleted
restore / transfer_in / _out  —                           restored / transferred_in / _out
============================  ==========================  =================================

:meth:`Simulator.lifecycle` runs every step for a few models right now;
:meth:`Simulator.history` generates weeks of a believable organization, seeded.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..exceptions import ConfigurationError

_MODEL_ID_ALPHABET = string.ascii_letters + string.digits
#: Documented values of v2 bodies (``created``/``restored`` type, activation, visibility).
CREATED_TYPES = ("copy", "demo", "transfer", "processing", "unknown")
ACTIVATION_STATES = ("pending", "active", "inactive")
VISIBILITIES = ("private", "unlisted", "public", "password")


def _check(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigurationError(f"{field}: {value!r} is not one of {', '.join(allowed)}")


def iso_utc(at: datetime) -> str:
    """``2024-11-21T12:00:00.000Z``: how v2 payloads carry their ``DateTime`` timestamp."""
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
            "timestamp": iso_utc(self.at),
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

    Single steps are not checked against a model's state (a ``process`` after ``delete``
    is sent as asked), so tests can drive the odd sequences a real platform may produce;
    only unknown model ids and unknown literals are refused.
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

    def _v1_model_event(
        self, etype: str, model: SimModel, at: datetime, data: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return etype, {
            "type": etype,
            "modelId": model.id,
            "timestamp": _ms(at),
            "internalId": model.internal_id,
            "createdBy": model.created_by,
            "data": data,
        }

    def _v1_bundle_event(
        self, etype: str, model: SimModel, at: datetime, bundle_id: str,
        options: dict[str, Any], ordered_by: str | None, success: bool | None = None,
    ) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {
            "timestamp": _ms(at),
            "modelId": model.id,
            "internalId": model.internal_id,
            "bundleId": bundle_id,
            "bundleOptions": options,
            "orderedBy": ordered_by or self.actor,
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
               at: datetime | None = None, created_type: str = "processing",
               created_by: str | None = None) -> str:
        """A new model is uploaded: v1 uploaded + inserted, v2 created (``body.type``:
        copy | demo | transfer | processing | unknown). Returns its id."""
        _check("created_type", created_type, CREATED_TYPES)
        mid = model_id or self._new_id()
        model = SimModel(id=mid, internal_id=f"internal-{mid}", created_by=created_by or self.actor,
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
        v2 processed, then, on success, activation pending → active.

        With ``at`` (a history being written), the activation is dated ``activation_delay``
        later; without it, everything happens now, so a live callback never gets an event
        dated in the future (which would make the next one look out of order).
        """
        model = self._model(model_id)
        t = self._now(at)
        model.processed = success
        model.revision += 1
        self._occur(
            model, t,
            v1=self._v1_model_event("processed", model, t,
                                    {"success": "true" if success else "false"}),
            v2=("processed", {"status": "succeeded" if success else "failed",
                              "error": "" if success else (error or "processing failed")}),
        )
        if success and activate:
            self.set_state(model_id, "active", at=t + activation_delay if at is not None else None)

    def set_state(self, model_id: str, state: str, *, at: datetime | None = None) -> None:
        """Activation state changes (pending | active | inactive): v2 only."""
        _check("state", state, ACTIVATION_STATES)
        model = self._model(model_id)
        previous, model.state = model.state, state
        self._occur(model, at, v2=("activation_state_changed",
                                   {"previous": {"state": previous}, "current": {"state": state}}))

    def set_visibility(self, model_id: str, visibility: str, *, at: datetime | None = None) -> None:
        """Access visibility changes (private | unlisted | public | password): v2 only."""
        _check("visibility", visibility, VISIBILITIES)
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
                       options: dict[str, Any] | None = None, at: datetime | None = None,
                       ordered_by: str | None = None) -> None:
        """An add-on is ordered: v1 bundle_requested, v2 bundle_updated (requested)."""
        model = self._model(model_id)
        t = self._now(at)
        opts = {"style": "mep"} if options is None else options
        self._occur(model, t,
                    v1=self._v1_bundle_event("bundle_requested", model, t, bundle_id, opts,
                                             ordered_by),
                    v2=("bundle_updated", {"status": "requested", "bundleId": bundle_id}))

    def complete_bundle(self, model_id: str, bundle_id: str = "bim:cad", *, success: bool = True,
                        options: dict[str, Any] | None = None, at: datetime | None = None,
                        ordered_by: str | None = None) -> None:
        """An add-on is done: v1 bundle_completed (``success``), v2 bundle_updated
        (delivered, or failed)."""
        model = self._model(model_id)
        t = self._now(at)
        opts = {"style": "mep"} if options is None else options
        self._occur(model, t,
                    v1=self._v1_bundle_event("bundle_completed", model, t, bundle_id, opts,
                                             ordered_by, success),
                    v2=("bundle_updated", {"status": "delivered" if success else "failed",
                                           "bundleId": bundle_id}))

    def cancel_bundle(self, model_id: str, bundle_id: str = "bim:cad", *,
                      at: datetime | None = None) -> None:
        """An add-on order is canceled: v2 bundle_updated (canceled); v1 has no such event."""
        model = self._model(model_id)
        self._occur(model, at, v2=("bundle_updated", {"status": "canceled", "bundleId": bundle_id}))

    def delete(self, model_id: str, *, at: datetime | None = None) -> None:
        """The model is deleted: v1 deleted, v2 deleted (empty body)."""
        model = self._model(model_id)
        model.deleted = True
        t = self._now(at)
        self._occur(model, t, v1=self._v1_model_event("deleted", model, t, {}), v2=("deleted", {}))

    def restore(self, model_id: str, *, at: datetime | None = None,
                restored_type: str = "unknown") -> None:
        """A deleted model comes back: v2 restored (``body.type`` as for created)."""
        _check("restored_type", restored_type, CREATED_TYPES)
        model = self._model(model_id)
        model.deleted = False
        self._occur(model, at, v2=("restored", {"type": restored_type}))

    def transfer_out(self, model_id: str, destination: str = "org-partner", *,
                     at: datetime | None = None) -> None:
        """The model moves to another organization: v2 transferred_out (``destination``)."""
        model = self._model(model_id)
        self._occur(model, at, v2=("transferred_out", {"destination": destination}))

    def transfer_in(self, source: str = "org-partner", *, model_id: str | None = None,
                    at: datetime | None = None) -> str:
        """A model arrives from another organization: v2 transferred_in (``source``)."""
        mid = model_id or self._new_id()
        model = self.models.get(mid) or SimModel(id=mid, internal_id=f"internal-{mid}",
                                                 created_by=self.actor)
        self.models[mid] = model
        self._occur(model, at, v2=("transferred_in", {"source": source}))
        return mid

    # ------------------------------------------------------------------ scripts

    def lifecycle(
        self, n_models: int = 3, *, bundle_id: str = "bim:cad", v2_steps: bool = True
    ) -> list[str]:
        """Take ``n_models`` new models through every event type; returns their ids.

        Per model: upload (v1 uploaded + inserted, v2 created), process (processed, then v2
        activation), update, bundle requested and completed, delete. With ``v2_steps`` also
        the v2-only steps: a visibility change, a transfer out and back in before the delete,
        and a restore after it. Each v1 callback sees 7 events per model either way; each v2
        callback 7, or 11 with ``v2_steps``.
        """
        if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 0:
            raise ConfigurationError(f"n_models: must be a count of models (0 or more), got {n_models!r}")
        ids = []
        for _ in range(n_models):
            mid = self.upload()
            self.process(mid)
            self.update(mid)
            if v2_steps:
                self.set_visibility(mid, "public")
            self.request_bundle(mid, bundle_id)
            self.complete_bundle(mid, bundle_id)
            if v2_steps:
                self.transfer_out(mid)
                self.transfer_in(model_id=mid)
            self.delete(mid)
            if v2_steps:
                self.restore(mid)
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
        visibility_rate: float = 0.6,
        archive_rate: float = 0.03,
        delete_rate: float = 0.04,
        restore_rate: float = 0.25,
        transfer_rate: float = 0.02,
        median_processing: timedelta = timedelta(hours=3),
        median_activation: timedelta = timedelta(minutes=4),
        median_bundle: timedelta = timedelta(hours=20),
    ) -> list[Occurrence]:
        """A believable organization over ``days``, emitted in time order; returns the
        occurrences (each also delivered to every subscribed callback).

        How it is drawn (all from the simulator's seeded random generator, so the same
        ``seed`` gives the same history):

        * uploads: a uniformly chosen day, weekends thinned to 30 %, at a normally
          distributed hour around 12:30 (sd 2.5 h, clipped to 07:00-20:00), by one of a few
          team members; each upload is v1 ``uploaded`` + ``inserted`` and v2 ``created``;
        * processing: log-normal, median ``median_processing`` (sigma 0.6); it fails with
          probability ``failure_rate`` (v1 ``data.success "false"``, v2 ``status failed``);
        * activation: a processed model goes pending → active after a log-normal delay
          (median ``median_activation``); ``archive_rate`` of them are archived (→ inactive)
          days later;
        * after processing: details edited (``update_rate``), visibility changed
          (``visibility_rate``), an add-on ordered (``bundle_rate``, one of four bundle
          kinds) and delivered after a log-normal turnaround (median ``median_bundle``,
          sigma 0.5) or failed (``bundle_failure_rate``);
        * endings: ``transfer_rate`` of models are transferred out, ``delete_rate`` deleted
          (failed ones three times as often); ``restore_rate`` of deletions are undone within
          two days. Nothing happens to a model after it left; a few models also arrive by
          transfer from a partner organization.

        Events that would fall after the window (``start + days``) have not happened yet and
        are left out, like a real account's history read today.
        """
        for name, rate in (("failure_rate", failure_rate), ("bundle_rate", bundle_rate),
                           ("bundle_failure_rate", bundle_failure_rate),
                           ("update_rate", update_rate), ("visibility_rate", visibility_rate),
                           ("archive_rate", archive_rate), ("delete_rate", delete_rate),
                           ("restore_rate", restore_rate), ("transfer_rate", transfer_rate)):
            if not 0 <= rate <= 1:
                raise ConfigurationError(f"{name}: {rate!r} is not a probability; use 0 to 1")
        if not isinstance(n_models, int) or n_models < 0:
            raise ConfigurationError(f"n_models: {n_models!r}; give a count >= 0")
        if not isinstance(days, int) or days < 1:
            raise ConfigurationError(f"days: {days!r}; give a whole number of days >= 1")
        rng = self.random
        start = start or (datetime.now(timezone.utc) - timedelta(days=days)).replace(
            hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=days)
        hours = timedelta(hours=1)
        plan: list[tuple[datetime, int, Callable[[datetime], object]]] = []

        def schedule(steps: list[tuple[datetime, Callable[[datetime], object]]]) -> None:
            for t, fn in steps:
                if t <= end:
                    plan.append((t, len(plan), fn))

        team = [self.actor, "alex@example.com", "sam@example.com", "kim@example.com"]
        for _ in range(n_models):
            upload_at = _upload_time(rng, start, days)
            mid = self._new_id()
            who = rng.choice(team)
            created_type = rng.choices(["processing", "copy", "demo"], [0.94, 0.05, 0.01])[0]
            failed = rng.random() < failure_rate
            done_at = upload_at + _lognormal(rng, median_processing, 0.6)
            steps: list[tuple[datetime, Callable[[datetime], object]]] = [
                (upload_at, lambda t, m=mid, w=who, c=created_type: self.upload(
                    model_id=m, at=t, created_by=w, created_type=c)),
                (done_at, lambda t, m=mid, f=failed: self.process(
                    m, success=not f, error="alignment failed" if f else "", activate=False,
                    at=t)),
            ]
            if not failed:
                steps.append((done_at + _lognormal(rng, median_activation, 0.8),
                              lambda t, m=mid: self.set_state(m, "active", at=t)))
                if rng.random() < update_rate:
                    steps.append((done_at + hours * rng.uniform(1, 72),
                                  lambda t, m=mid: self.update(m, at=t, name=f"Site {m[:4]}")))
                if rng.random() < visibility_rate:
                    vis = rng.choice(["public", "unlisted", "password"])
                    steps.append((done_at + hours * rng.uniform(1, 48),
                                   lambda t, m=mid, v=vis: self.set_visibility(m, v, at=t)))
                if rng.random() < bundle_rate:
                    ordered = done_at + hours * rng.uniform(2, 96)
                    bundle = rng.choice(["bim:cad", "bim:revit", "floorplan:schematic", "e57"])
                    ok = rng.random() >= bundle_failure_rate
                    steps.append((ordered, lambda t, m=mid, b=bundle, w=who: self.request_bundle(
                        m, b, at=t, ordered_by=w)))
                    steps.append((ordered + _lognormal(rng, median_bundle, 0.5),
                                  lambda t, m=mid, b=bundle, s=ok, w=who: self.complete_bundle(
                                      m, b, success=s, at=t, ordered_by=w)))
                if rng.random() < archive_rate:
                    steps.append((done_at + timedelta(days=rng.uniform(3, 20)),
                                  lambda t, m=mid: self.set_state(m, "inactive", at=t)))
            gone_at: datetime | None = None
            if not failed and rng.random() < transfer_rate:
                gone_at = done_at + timedelta(days=rng.uniform(1, 10))
                steps.append((gone_at, lambda t, m=mid: self.transfer_out(m, at=t)))
            elif rng.random() < delete_rate * (3 if failed else 1):
                gone_at = done_at + timedelta(days=rng.uniform(0.5, 14))
                steps.append((gone_at, lambda t, m=mid: self.delete(m, at=t)))
                if rng.random() < restore_rate:
                    back = gone_at + hours * rng.uniform(1, 48)
                    steps.append((back, lambda t, m=mid: self.restore(m, at=t)))
                    gone_at = None  # restored: its later events happen after all
            if gone_at is not None:
                steps = [(t, fn) for t, fn in steps if t <= gone_at]
            schedule(steps)
        for _ in range(round(n_models * transfer_rate)):
            arrived = start + timedelta(days=rng.uniform(0, days))
            mid = self._new_id()
            schedule([
                (arrived, lambda t, m=mid: self.transfer_in("org-partner", model_id=m, at=t)),
                (arrived + _lognormal(rng, median_activation, 0.8),
                 lambda t, m=mid: self.set_state(m, "active", at=t)),
            ])
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


def _upload_time(rng: random.Random, start: datetime, days: int) -> datetime:
    """A working-hours upload time: weekends thinned to 30 %, hour ~ N(12.5, 2.5) in 7-20."""
    while True:
        day = start + timedelta(days=rng.randrange(days))
        if day.weekday() < 5 or rng.random() < 0.3:
            break
    hour = min(20.0, max(7.0, rng.gauss(12.5, 2.5)))
    return day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=hour)


def _lognormal(rng: random.Random, median: timedelta, sigma: float) -> timedelta:
    """A log-normal duration with this median (``sigma`` on the log scale)."""
    return timedelta(seconds=median.total_seconds() * math.exp(rng.gauss(0, sigma)))


def iter_types(occurrences: list[Occurrence], version: int) -> Iterator[str]:
    """The event types a subscriber of ``version`` would see for these occurrences."""
    for occ in occurrences:
        part = occ.v1 if version == 1 else occ.v2
        if part is not None:
            yield part[0]
