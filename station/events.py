"""Typed payloads that cross stage boundaries: decisions, actuation commands, alarms."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from station.taxonomy import Stream


def new_id() -> str:
    return uuid.uuid4().hex


class Reason(StrEnum):
    """Why a decision went where it went."""

    OK = "ok"
    SHORT_TRACK = "short_track"
    LOW_CONFIDENCE = "low_confidence"
    HAZARD_DOUBT = "hazard_doubt"
    FAULT = "fault"


@dataclass(frozen=True)
class Decision:
    """One decision per physical item, made when its track crosses the decision line."""

    item_id: str
    station_id: str
    track_id: int
    frame_index: int
    crossed_at: float
    """Source-clock seconds at which the item's centre crossed the decision line."""
    crossed_ticks: int | None
    class_name: str | None
    stream: Stream
    hazard: str | None
    confidence: float
    """Vote share of the winning class (0..1)."""
    votes: dict[str, float]
    observations: int
    reason: Reason
    box: tuple[float, float, float, float]
    model_version: str
    detail: str = ""
    decided_at_wall: float = field(default_factory=time.time)
    crop: npt.NDArray[np.uint8] | None = field(default=None, repr=False, compare=False)
    crop_scores: dict[str, float] = field(default_factory=dict)
    """The crop classifier's class probabilities on ``crop`` (≥ 0.001), where it was consulted."""
    classifier_version: str = ""
    """The crop classifier's version, where it was consulted."""

    @property
    def needs_manual(self) -> bool:
        return self.stream is Stream.MANUAL


class ActuationStatus(StrEnum):
    PENDING = "pending"          # durable, not yet handed to the actuator
    SENDING = "sending"          # handed over; a crash now must not resend it
    SENT = "sent"                # actuator acknowledged
    FAILED = "failed"            # actuator refused or unreachable
    MISSED = "missed"            # its ejector time passed before it could be sent (e.g. after a crash)


@dataclass(frozen=True)
class Actuation:
    """An ejector command: fire ``channel`` when the item reaches its ejector."""

    actuation_id: str
    item_id: str
    bin: str
    channel: int
    fire_at: float
    """Source-clock seconds at which the item reaches its ejector."""
    fire_at_ticks: int | None
    fire_at_wall: float
    """Wall-clock estimate of the same moment (time.time() seconds), used after a restart."""


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Alarm:
    """Something an operator must know: a hazard on the belt, a lost camera, a dead worker."""

    kind: str
    """e.g. hazard.battery, source.lost, worker.restarted, actuator.unreachable, model.rejected"""
    message: str
    severity: Severity = Severity.WARNING
    item_id: str | None = None
    alarm_id: str = field(default_factory=new_id)
    raised_at: float = field(default_factory=time.time)
