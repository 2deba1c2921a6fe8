"""Prometheus metrics of the station, in a registry of their own (one per station, one per test)."""

from __future__ import annotations

import threading

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from station.events import Decision

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "sortloop"
INFERENCE_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 2.0, 5.0)


class StationMetrics:
    """The station's metrics. The pipeline calls the verbs (``frame()``, ``decision(…)``); the Prometheus
    objects are attributes named like the series they export; ``render()`` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.frames_total = Counter(f"{PREFIX}_frames", "Frames processed.", registry=r)
        self.frames_dropped_total = Counter(f"{PREFIX}_frames_dropped", "Frames dropped because a stage's queue "
                                            "was full.", ["stage"], registry=r)
        self.decisions_total = Counter(f"{PREFIX}_decisions", "Items decided.", ["stream", "reason"], registry=r)
        self.hazards_total = Counter(f"{PREFIX}_hazards", "Hazardous items decided.", ["kind"], registry=r)
        self.actuations_total = Counter(f"{PREFIX}_actuations", "Actuations by final status.", ["status"],
                                        registry=r)
        self.worker_restarts_total = Counter(f"{PREFIX}_worker_restarts", "Workers restarted after dying or "
                                             "stalling.", ["worker"], registry=r)
        self.alarms_total = Counter(f"{PREFIX}_alarms", "Alarms raised.", ["kind"], registry=r)
        self.fps = Gauge(f"{PREFIX}_fps", "Frames per second processed (recent average).", registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Items waiting in a queue.", ["queue"], registry=r)
        self.model_info = Gauge(f"{PREFIX}_model_info", "The loaded model version (value 1).", ["version"],
                                registry=r)
        self.inference_seconds = Histogram(f"{PREFIX}_inference_seconds", "Detector time per frame.",
                                           buckets=INFERENCE_BUCKETS, registry=r)
        self.frame_to_decision_seconds = Histogram(
            f"{PREFIX}_frame_to_decision_seconds", "From capture of the crossing frame to the durable, "
            "sent decision.", buckets=LATENCY_BUCKETS, registry=r)
        self.missed_actuations_total = Counter(f"{PREFIX}_missed_actuations", "Commands not sent; their items "
                                               "rode to the fail-safe bin.", ["cause"], registry=r)
        self.store_errors_total = Counter(f"{PREFIX}_store_errors", "Writes the store refused (kept in the "
                                          "spool).", registry=r)
        self.spool_written_total = Counter(f"{PREFIX}_spool_written", "Spooled entries written once the store "
                                           "was back.", registry=r)
        self.records_lost_total = Counter(f"{PREFIX}_records_lost", "Records the spool could not keep (full, "
                                          "no journal).", registry=r)
        self.spool_depth = Gauge(f"{PREFIX}_spool_depth", "Records, status changes and alarms waiting for the "
                                 "store.", registry=r)
        self.corrupt_frames_total = Counter(f"{PREFIX}_corrupt_frames", "Frames the source could not decode "
                                            "(skipped).", registry=r)
        self.health = Gauge(f"{PREFIX}_health", "Station health: 0 ok, 1 degraded, 2 failing.", registry=r)
        self.health_reason = Gauge(f"{PREFIX}_health_reason", "1 for each reason the station is not ok.",
                                   ["code"], registry=r)
        self.worker_state = Gauge(f"{PREFIX}_worker_state", "1 for each worker's current state.",
                                  ["worker", "state"], registry=r)
        self._dropped: dict[str, int] = {}
        self._lock = threading.Lock()

    def frame(self) -> None:
        self.frames_total.inc()

    def frames_dropped(self, total: int, stage: str = "capture") -> None:
        """Report a queue's running total of dropped frames (only the increase is counted)."""
        with self._lock:
            delta = total - self._dropped.get(stage, 0)
            if delta > 0:
                self._dropped[stage] = total
        if delta > 0:
            self.frames_dropped_total.labels(stage=stage).inc(delta)

    def observe_inference(self, seconds: float) -> None:
        self.inference_seconds.observe(seconds)

    def decision(self, decision: Decision, status: str | None = None, latency_s: float | None = None) -> None:
        """Count a decision (stream, reason, hazard), its actuation's status and its latency."""
        self.decisions_total.labels(stream=decision.stream.value, reason=decision.reason.value).inc()
        if decision.hazard:
            self.hazards_total.labels(kind=decision.hazard).inc()
        if status is not None:
            self.actuation(status)
        if latency_s is not None:
            self.frame_to_decision_seconds.observe(latency_s)

    def actuation(self, status: str) -> None:
        self.actuations_total.labels(status=str(status)).inc()

    def worker_restarted(self, worker: str) -> None:
        self.worker_restarts_total.labels(worker=worker).inc()

    def missed_actuation(self, cause: str) -> None:
        self.missed_actuations_total.labels(cause=cause).inc()

    def store_error(self) -> None:
        self.store_errors_total.inc()

    def spool_written(self, n: int) -> None:
        self.spool_written_total.inc(n)

    def record_lost(self) -> None:
        self.records_lost_total.inc()

    def corrupt_frame(self) -> None:
        self.corrupt_frames_total.inc()

    def set_health(self, level: int, reasons: list[str], workers: dict[str, str], spool: int) -> None:
        """Show the health model's level, its reason codes, each worker's state and the spool depth."""
        self.health.set(level)
        self.health_reason.clear()
        for code in reasons:
            self.health_reason.labels(code=code).set(1)
        self.worker_state.clear()
        for name, state in workers.items():
            self.worker_state.labels(worker=name, state=state).set(1)
        self.spool_depth.set(spool)

    def alarm(self, kind: str) -> None:
        self.alarms_total.labels(kind=kind).inc()

    def set_fps(self, fps: float) -> None:
        self.fps.set(fps)

    def set_queue(self, queue: str, depth: int) -> None:
        self.queue_depth.labels(queue=queue).set(depth)

    def set_model(self, version: str) -> None:
        """Show ``version`` as the one loaded model."""
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
