"""Delivered webhook payloads: typed pydantic models for v1 and v2, and one flat row per event.

* :func:`parse_event` picks the model by ``type`` (and by shape: v2 has ``body`` and an ISO
  ``timestamp``; v1 an epoch-millisecond ``timestamp``). Unknown types become
  :class:`UnknownEvent`; unknown fields are kept on every model (``model_extra``).
* :func:`event_fields` flattens a payload into the columns the event store keeps. It is plain
  dict work (no validation) so the receiver can call it on every request cheaply.

Documented quirks are normalised: v1 ``processed`` sends ``data.success`` as the *string*
``"true"`` while ``bundle_completed`` sends a boolean; both become ``success: bool``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "ModelEvent",
    "UnknownEvent",
    "V1Event",
    "V2Event",
    "event_fields",
    "parse_event",
    "webhook_version_of",
]

#: The modelId a ping delivers: obviously not a real model.
PING_MODEL_ID = "PING0000000"


def _to_bool(value: Any) -> bool | None:
    """``True``/``"true"``/``1`` → True, ``False``/``"false"``/``0`` → False, else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        return None
    if isinstance(value, int | float):
        return bool(value)
    return None


def _epoch_ms_to_utc(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _iso_to_utc(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def webhook_version_of(payload: dict[str, Any]) -> int:
    """2 for the v2 shape (``body``/``webhookId``/ISO timestamp), else 1."""
    if "body" in payload or "webhookId" in payload or isinstance(payload.get("timestamp"), str):
        return 2
    return 1


# --------------------------------------------------------------------------- flat rows


def event_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """The analysis columns of one payload (any version, any type, never raises)."""
    version = webhook_version_of(payload)
    etype = payload.get("type")
    row: dict[str, Any] = {
        "type": etype if isinstance(etype, str) else None,
        "webhook_version": version,
        "model_id": _str_or_none(payload.get("modelId")),
        "ping": payload.get("ping") is True or payload.get("modelId") == PING_MODEL_ID,
    }
    if version == 1:
        row["event_time"] = _epoch_ms_to_utc(payload.get("timestamp"))
        row["actor"] = _str_or_none(payload.get("createdBy") or payload.get("orderedBy"))
        row["bundle_id"] = _str_or_none(payload.get("bundleId"))
        data = payload.get("data")
        if "success" in payload:
            row["success"] = _to_bool(payload["success"])
        elif isinstance(data, dict) and "success" in data:
            row["success"] = _to_bool(data["success"])
        else:
            row["success"] = None
        row["status"] = None
        row["webhook_id"] = None
        row["model_version"] = None
        detail = data if isinstance(data, dict) else {}
        if "bundleOptions" in payload:
            detail = {**detail, "bundleOptions": payload["bundleOptions"]}
    else:
        body = payload.get("body") if isinstance(payload.get("body"), dict) else {}
        row["event_time"] = _iso_to_utc(payload.get("timestamp"))
        row["actor"] = None
        row["bundle_id"] = _str_or_none(body.get("bundleId"))
        status = body.get("status")
        row["status"] = _str_or_none(status)
        row["success"] = {"succeeded": True, "delivered": True, "failed": False}.get(
            status if isinstance(status, str) else ""
        )
        row["webhook_id"] = _str_or_none(payload.get("webhookId"))
        mv = payload.get("version")
        row["model_version"] = mv if isinstance(mv, int) and not isinstance(mv, bool) else None
        detail = body
    row["internal_id"] = _str_or_none(payload.get("internalId"))
    row["data"] = json.dumps(detail, sort_keys=True, separators=(",", ":")) if detail else None
    return row


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------- typed models


class ModelEvent(BaseModel):
    """Base of every payload model; unknown fields are kept in ``model_extra``."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    webhook_version: ClassVar[int] = 0
    type: str
    model_id: str | None = None

    @property
    def event_time(self) -> datetime | None:  # pragma: no cover - overridden
        return None

    @property
    def is_ping(self) -> bool:
        return bool((self.model_extra or {}).get("ping")) or self.model_id == PING_MODEL_ID


class UnknownEvent(ModelEvent):
    """A payload whose ``type`` mp_nb does not know; everything is kept."""


class V1Event(ModelEvent):
    """Webhooks v1 (deprecated) payload: epoch-millisecond ``timestamp``."""

    webhook_version: ClassVar[int] = 1
    timestamp: int | None = None
    internal_id: str | None = None

    @property
    def event_time(self) -> datetime | None:
        """``timestamp`` as a timezone-aware UTC datetime."""
        return _epoch_ms_to_utc(self.timestamp)


class _V1ModelEvent(V1Event):
    created_by: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Uploaded(_V1ModelEvent):
    type: Literal["uploaded"] = "uploaded"


class Inserted(_V1ModelEvent):
    type: Literal["inserted"] = "inserted"


class Updated(_V1ModelEvent):
    type: Literal["updated"] = "updated"


class Deleted(_V1ModelEvent):
    type: Literal["deleted"] = "deleted"


class Processed(_V1ModelEvent):
    """``data.success`` arrives as ``"true"`` in Matterport's sample; ``success`` is a bool."""

    type: Literal["processed"] = "processed"

    @property
    def success(self) -> bool | None:
        return _to_bool(self.data.get("success"))


class _V1BundleEvent(V1Event):
    bundle_id: str | None = None
    bundle_options: dict[str, Any] = Field(default_factory=dict)
    ordered_by: str | None = None


class BundleRequested(_V1BundleEvent):
    type: Literal["bundle_requested"] = "bundle_requested"


class BundleCompleted(_V1BundleEvent):
    type: Literal["bundle_completed"] = "bundle_completed"
    success: bool | None = None

    @field_validator("success", mode="before")
    @classmethod
    def _bool(cls, v: Any) -> bool | None:
        return _to_bool(v)


class V2Event(ModelEvent):
    """Webhooks v2 payload: ``version`` is the model's revision, ``timestamp`` a DateTime."""

    webhook_version: ClassVar[int] = 2
    model_version: int | None = Field(
        default=None, validation_alias=AliasChoices("version", "model_version")
    )
    webhook_id: str | None = None
    webhook_custom_key: str | None = None
    timestamp: datetime | None = None
    body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp", mode="after")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)

    @property
    def event_time(self) -> datetime | None:
        return self.timestamp


class _ChangeEvent(V2Event):
    """A v2 event whose body is ``{"previous": {...}, "current": {...}}``."""

    @property
    def previous(self) -> dict[str, Any]:
        value = self.body.get("previous")
        return value if isinstance(value, dict) else {}

    @property
    def current(self) -> dict[str, Any]:
        value = self.body.get("current")
        return value if isinstance(value, dict) else {}


class _CreationEvent(V2Event):
    @property
    def created_type(self) -> str | None:
        """``body.type``: copy | demo | transfer | processing | unknown."""
        value = self.body.get("type")
        return value if isinstance(value, str) else None


class Created(_CreationEvent):
    """A model was created: ``body.type`` copy | demo | transfer | processing | unknown."""

    type: Literal["created"] = "created"


class Restored(_CreationEvent):
    """A deleted model was restored: ``body.type`` as for :class:`Created`."""

    type: Literal["restored"] = "restored"


class ProcessedV2(V2Event):
    """``body.status``: succeeded | failed, ``body.error``: text."""

    type: Literal["processed"] = "processed"

    @property
    def success(self) -> bool | None:
        return {"succeeded": True, "failed": False}.get(self.body.get("status", ""))

    @property
    def error(self) -> str | None:
        """``body.error``: why processing failed ("" on success)."""
        value = self.body.get("error")
        return value if isinstance(value, str) else None


class ActivationStateChanged(_ChangeEvent):
    """``body.previous.state`` → ``body.current.state`` (pending | active | inactive)."""

    type: Literal["activation_state_changed"] = "activation_state_changed"

    @property
    def state(self) -> str | None:
        """The new activation state."""
        return self.current.get("state")

    @property
    def previous_state(self) -> str | None:
        return self.previous.get("state")


class VisibilityChanged(_ChangeEvent):
    """``body.previous/current.accessVisibility`` (private | unlisted | public | password)."""

    type: Literal["visibility_changed"] = "visibility_changed"

    @property
    def visibility(self) -> str | None:
        """The new access visibility."""
        return self.current.get("accessVisibility")

    @property
    def previous_visibility(self) -> str | None:
        return self.previous.get("accessVisibility")


class DetailsChanged(_ChangeEvent):
    """``body.previous`` / ``body.current``: the detail fields that changed (address,
    description, image, internalId, mls, name, publication)."""

    type: Literal["details_changed"] = "details_changed"

    @property
    def changed_fields(self) -> list[str]:
        """Names of the detail fields in ``previous`` or ``current``."""
        return sorted(set(self.previous) | set(self.current))


class BundleUpdated(V2Event):
    """``body.status``: requested | delivered | canceled | failed; ``body.bundleId``."""

    type: Literal["bundle_updated"] = "bundle_updated"

    @property
    def status(self) -> str | None:
        value = self.body.get("status")
        return value if isinstance(value, str) else None

    @property
    def bundle_id(self) -> str | None:
        value = self.body.get("bundleId")
        return value if isinstance(value, str) else None


class TransferredIn(V2Event):
    """The model arrived from another organization (``body.source``)."""

    type: Literal["transferred_in"] = "transferred_in"

    @property
    def source(self) -> str | None:
        return _str_or_none(self.body.get("source"))


class TransferredOut(V2Event):
    """The model left for another organization (``body.destination``)."""

    type: Literal["transferred_out"] = "transferred_out"

    @property
    def destination(self) -> str | None:
        return _str_or_none(self.body.get("destination"))


class DeletedV2(V2Event):
    """The model was deleted (empty body)."""

    type: Literal["deleted"] = "deleted"


V1_MODELS: dict[str, type[V1Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (Uploaded, Inserted, Processed, Updated, Deleted, BundleRequested, BundleCompleted)
}
V2_MODELS: dict[str, type[V2Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        Created,
        ProcessedV2,
        ActivationStateChanged,
        VisibilityChanged,
        DetailsChanged,
        BundleUpdated,
        TransferredIn,
        TransferredOut,
        Restored,
        DeletedV2,
    )
}


def parse_event(payload: dict[str, Any] | str | bytes) -> ModelEvent:
    """The typed model for one delivered payload (JSON text or an already-parsed dict)."""
    if isinstance(payload, str | bytes):
        payload = json.loads(payload)
    if not isinstance(payload, dict):
        raise TypeError(f"an event payload is a JSON object, got {type(payload).__name__}")
    table: dict[str, Any] = V2_MODELS if webhook_version_of(payload) == 2 else V1_MODELS
    cls = table.get(payload.get("type"), UnknownEvent)  # type: ignore[arg-type]
    if cls is UnknownEvent and not isinstance(payload.get("type"), str):
        payload = {**payload, "type": str(payload.get("type"))}
    return cls.model_validate(payload)
