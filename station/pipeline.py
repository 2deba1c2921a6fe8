"""The station: capture → detect → track → decide → route → record → actuate, as supervised workers.

Workers joined by bounded queues: ``capture`` reads the source; ``detect-1`` … ``detect-N`` run the
detector on successive frames at once, and whichever delivers the next frame in order tracks it and decides
(tracking needs frames in order; the detector is the cost); ``act`` makes each decision durable and then
hands its command to the actuator. A watchdog restarts dead workers and alarms; a fault anywhere routes to
the fail-safe (manual) bin.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from station.classes import ClassMapper
from station.config import StationConfig
from station.decide import DecisionLine
from station.detections import Detections
from station.events import Actuation, ActuationStatus, Alarm, Decision, Severity
from station.frames import Frame
from station.health import Health, HealthInputs, StatusSnapshot, assess, growth_within, probe
from station.record import STORE_ERRORS, Recorder
from station.route import BeltSpeed, Router
from station.spool import Spool, SpooledAlarm, SpooledRecord
from station.taxonomy import Taxonomy
from station.track import Tracker
from station.workers import Closed, DropOldestQueue, Supervisor, Worker

if TYPE_CHECKING:
    from station.actuate import Actuator
    from station.capture import Source
    from station.classify import CropClassifier
    from station.detect import Detector
    from station.live import LiveView
    from station.metrics import StationMetrics
    from station.store import Store

log = logging.getLogger(__name__)


@dataclass
class _Routed:
    decision: Decision
    actuation: Actuation
    frame_captured: float


@dataclass
class RunStats:
    """Counters of one run, for the scorecard, the benchmark and /health."""

    frames: int = 0
    decisions: int = 0
    started: float = field(default_factory=time.monotonic)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    fps: float = 0.0
    source_ok: bool = True
    last_error: str = ""
    corrupt_frames: int = 0


class Station:
    """Owns the workers; ``start()``, ``wait()``/``stop()``. Thread-safe ``snapshot()`` for the API."""

    def __init__(self, cfg: StationConfig, taxonomy: Taxonomy, *, source: Source, detector: Detector,
                 actuator: Actuator, store: Store, metrics: StationMetrics, live: LiveView | None = None,
                 keep_results: bool = False, classifier: CropClassifier | None = None) -> None:
        self.cfg, self.taxonomy = cfg, taxonomy
        self.source, self.actuator, self.store = source, actuator, store
        self.metrics, self.live = metrics, live
        self._pending_model: Detector | None = None
        self._pending_classifier: CropClassifier | None = None
        self._stopped = False
        self._model_lock = threading.Lock()
        self.belt = BeltSpeed(cfg.routing)
        self.router = Router(cfg.routing, self.belt)
        self.line = DecisionLine(cfg.decision, taxonomy, station_id=cfg.station_id)
        self._model = (detector, ClassMapper(detector.names, taxonomy, cfg.model.class_map))
        """The detector and its class mapping, swapped together; each detect worker reads both per frame."""
        self.line.set_model(detector.version)
        self.line.set_second_look(classifier)
        hazards = [] if cfg.model.hazard_floor is None else sorted(map(taxonomy.index, taxonomy.battery_hazards))
        self.tracker = Tracker(cfg.tracker, fps=cfg.source.fps if cfg.source.kind != "simulator" else cfg.simulator.fps,
                               hazard_classes=hazards, hazard_confidence=cfg.model.hazard_confidence)
        self._belt_x = 0.0  # belt travel (px) since the start: the tracker works in belt coordinates
        self._last_t: float | None = None
        self.frames: DropOldestQueue[Frame] = DropOldestQueue(cfg.pipeline.queue_size)
        self.routed: DropOldestQueue[_Routed] = DropOldestQueue(10_000)
        self.stats = RunStats()
        self.keep_results = keep_results
        self.decisions: list[Decision] = []
        """With ``keep_results`` (a scored simulator run): every decision, without its crop (bounded memory)."""
        self.actuations: list[Actuation] = []
        self.failsafe_reasons: dict[str, str] = {}
        self._failsafe_lock = threading.Lock()
        journal = cfg.store.journal
        self.spool = Spool(cfg.store.spool_size, cfg.store.spool_crops, None if journal is None else
                           cfg.resolve(journal), retry_initial_s=cfg.store.retry_initial_s,
                           retry_max_s=cfg.store.retry_max_s)
        self.recorder = Recorder(cfg, store, actuator, metrics, self.spool, alarm=self._alarm,
                                 failsafe=self._failsafe, hold=self._hold_reason)
        self._holding: _Routed | None = None  # the decision the act worker has in hand
        self._alarm_store = store.sibling(0.2)  # an alarm never stalls its thread on a locked database
        self._actuator_ok = True
        self._lost_marks = deque([(time.monotonic(), 0)])  # (when, running total) for "in the last minutes"
        self._drop_marks = deque([(time.monotonic(), 0)])
        self._stop = threading.Event()
        self._source_done = threading.Event()
        self._block_capture = not cfg.source.realtime
        self._n_detect = cfg.pipeline.detect_worker_count()
        self._take_lock = threading.Lock()  # a frame and its sequence number are taken together
        self._taken = 0
        self._order_lock = threading.Lock()  # the in-order stage: track, decide, route
        self._done_lock = threading.Lock()
        self._done: dict[int, tuple[Frame, Detections | None]] = {}
        self._next_out = 0
        self._detect_closed: set[str] = set()
        detect = [Worker(f"detect-{i + 1}", self._detect) for i in range(self._n_detect)]
        self.workers = [Worker("capture", self._capture), *detect, Worker("act", self._act)]
        self.supervisor = Supervisor(self.workers, limit_per_min=cfg.pipeline.worker_restart_limit,
                                     stuck_after_s=cfg.pipeline.heartbeat_timeout_s, on_event=self._worker_event,
                                     retry_dead_s=cfg.pipeline.dead_retry_s, settle_s=cfg.pipeline.settle_s)
        self._watchdog = threading.Thread(target=self._watch, name="sortloop-watchdog", daemon=True)
        self.last_frame: Frame | None = None
        self._started = False
        self._started_wall: float | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.metrics.set_model(self._detector.version)
        self._started, self._started_wall = True, time.time()
        self._resend_after_restart()
        self._check_actuator(at_start=True)
        for w in self.workers:
            w.start()
        self._watchdog.start()
        log.info("station %s running: source %s, model %s", self.cfg.station_id, self.source.name,
                 self._detector.version)

    def stop(self) -> None:
        """Stop and join the workers, keep what the store did not take; a second call does nothing."""
        with self._model_lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop.set()
        self.source.close()
        self.frames.close()
        for w in self.workers:
            w.join(5)
        self.routed.close()
        if len(self.spool):  # a last try at the store, then what is left goes to the journal for the next start
            self.spool.flush(self.store, STORE_ERRORS)
        if len(self.spool):
            moved = self.spool.persist()
            log.error("stopping with %d record(s) the store did not take: %s", len(self.spool),
                      f"{moved} moved from memory to the journal {self.cfg.store.journal}, the next start writes "
                      f"them" if self.cfg.store.journal else "no journal (store.journal), those in memory are lost")
        if self._alarm_store is not self.store:
            self._alarm_store.close()
        try:
            self.store.end_run()
        except STORE_ERRORS as exc:  # the run stays open in the store; its items are all there
            log.warning("could not note the end of run %s: %s", self.store.run_id, exc)

    def wait(self, duration: float | None = None) -> None:
        """Block until the source ends and all work drained, or ``duration`` seconds passed."""
        end = None if duration is None else time.monotonic() + duration
        while not self._stop.is_set():
            if end is not None and time.monotonic() >= end:
                break
            if self._source_done.is_set() and all(w.finished or not w.alive for w in self.workers):
                break
            time.sleep(0.05)
        self.stop()

    def swap_model(self, detector: Detector) -> None:
        """Hand a validated model to the inference worker; it swaps between two frames."""
        with self._model_lock:
            self._pending_model = detector

    def swap_classifier(self, classifier: CropClassifier) -> None:
        """Hand a validated crop classifier to the in-order stage; it swaps between two frames."""
        with self._model_lock:
            self._pending_classifier = classifier

    @property
    def classifier_version(self) -> str | None:
        look = self.line.second_look
        return None if look is None else look.version

    @property
    def _detector(self) -> Detector:
        return self._model[0]

    @property
    def model_version(self) -> str:
        return self._detector.version

    def health(self) -> Health:
        """The one health model (/health, /metrics, the console), from the current state."""
        now = time.monotonic()
        lat = sorted(list(self.stats.latencies_ms)[-100:])
        with self._failsafe_lock:
            failsafe = dict(self.failsafe_reasons)
        return assess(HealthInputs(
            running=self._started and not self._stop.is_set() and not self._source_done.is_set(),
            source_ok=self.stats.source_ok, failsafe=failsafe, workers=self.worker_states(),
            actuator_connected=self._actuator_ok, spool=len(self.spool), store_error=self.spool.last_error,
            records_lost_recent=growth_within(self._lost_marks, self.spool.lost, now, 300),
            dropped_recent=growth_within(self._drop_marks, self.frames.dropped, now, 60),
            latency_p99_s=lat[int(0.99 * (len(lat) - 1))] / 1000 if lat else None,
            latency_limit_s=self.cfg.pipeline.latency_limit_s))

    def worker_states(self) -> dict[str, str]:
        return {w.name: self.supervisor.state(w) for w in self.workers}

    def snapshot(self) -> StatusSnapshot:
        """What /health reports: running, source, model, fps, counts, workers, health and its reasons."""
        h = self.health()
        running = self._started and not self._stop.is_set() and not self._source_done.is_set()
        return StatusSnapshot(
            running=running, source_ok=self.stats.source_ok, model_version=self._detector.version,
            classifier_version=self.classifier_version,
            fps=round(self.stats.fps, 2), frames=self.stats.frames, dropped=self.frames.dropped,
            decisions=self.stats.decisions, workers=self.worker_states(), last_error=h.last_error,
            started_at=self._started_wall, status=h.level.label, reasons=[r.code for r in h.reasons],
            spool=len(self.spool), missed_actuations=self.recorder.missed, corrupt_frames=self.stats.corrupt_frames,
        )

    # --- workers ---------------------------------------------------------------------------------------
    def _capture(self, w: Worker) -> None:
        limit = self.cfg.source.max_frames
        for frame in self.source:
            w.beat()
            if self._stop.is_set():
                return
            if limit is not None and frame.index >= limit:
                break
            self.frames.put(frame, block=self._block_capture)
            self.metrics.frames_dropped(self.frames.dropped)
        self._source_done.set()
        self.frames.close()

    def _detect(self, w: Worker) -> None:
        while not self._stop.is_set():
            w.beat()
            try:
                taken = self._take()
            except Closed:
                self._detect_done(w)
                return
            if taken is None:
                continue
            seq, frame = taken
            dets = None
            try:  # the frame is handed on even if detection fails, so the frames behind it are not held up
                detector, classes = self._model
                t0 = time.perf_counter()
                dets = classes(detector(frame.image))
                self.metrics.observe_inference(time.perf_counter() - t0)
            finally:
                self._deliver(seq, frame, dets)

    def _take(self) -> tuple[int, Frame] | None:
        """The next frame with its sequence number (frames dropped from the queue leave no gap)."""
        with self._take_lock:
            frame = self.frames.get(timeout=0.2)
            if frame is None:
                return None
            self._taken += 1
            return self._taken - 1, frame

    def _deliver(self, seq: int, frame: Frame, dets: Detections | None) -> None:
        """Hand in a detected frame; run the in-order stage over every frame now ready in sequence."""
        with self._done_lock:
            self._done[seq] = (frame, dets)
        with self._order_lock:
            while True:
                with self._done_lock:
                    ready = self._done.pop(self._next_out, None)
                if ready is None:
                    return
                self._next_out += 1  # before processing: a frame whose processing fails is not retried
                self._process(*ready)

    def _detect_done(self, w: Worker) -> None:
        """The frame queue is closed and drained: the last detect worker to see it closes the next queue."""
        with self._done_lock:
            self._detect_closed.add(w.name)
            last = len(self._detect_closed) == self._n_detect
        if last:
            self.routed.close()

    def _process(self, frame: Frame, dets: Detections | None) -> None:
        """The in-order stage for one frame: belt travel, tracking, decisions, routing, the live view."""
        self._maybe_swap()
        if dets is not None:  # None: detection failed on this frame (its worker is restarted and alarmed)
            self.belt.update(frame)
            if self._last_t is not None:
                self._belt_x += self.belt.px_per_s * max(0.0, frame.timestamp - self._last_t)
            self._last_t = frame.timestamp
            tracked = self.tracker.update(dets, timestamp=frame.timestamp, belt_x=self._belt_x)
            decisions = self.line.update(frame, tracked, self.belt)
            for d in decisions:
                a = self.router.route(d, now_source=frame.timestamp)
                self.routed.put(_Routed(d, a, frame.captured), block=True)
            for h in self.line.take_hazards():
                sev = Severity.CRITICAL if h.hazard == "battery" else Severity.WARNING
                self._alarm(f"hazard.{h.hazard}.on_item", f"a {h.part_class} lies on item {h.item_id} "
                            f"({h.item_class or 'unknown'}), already sent to its bin without a {h.hazard} hazard: "
                            "take it off there", sev, h.item_id)
            if self.live is not None:
                self.live.publish(frame, tracked, self.taxonomy.names, decisions, self.cfg.decision.line_x)
        self.stats.frames += 1
        self.last_frame = frame
        self.metrics.frame()

    def _maybe_swap(self) -> None:
        with self._model_lock:
            new, self._pending_model = self._pending_model, None
            clf, self._pending_classifier = self._pending_classifier, None
        if clf is not None:
            old_clf = self.classifier_version
            self.line.set_second_look(clf)
            self.store.record_model(clf.version, str(clf.path), clf.metadata, kind="classifier")
            self._alarm("model.swapped", f"crop classifier {old_clf or 'none'} → {clf.version}", Severity.INFO)
        if new is None:
            return
        old = self._detector.version
        self._model = (new, ClassMapper(new.names, self.taxonomy, self.cfg.model.class_map))
        self.line.set_model(new.version)
        self.metrics.set_model(new.version)
        self.store.record_model(new.version, str(new.path), dict(new.metadata))
        self._alarm("model.swapped", f"model {old} → {new.version}", Severity.INFO)

    def _act(self, w: Worker) -> None:
        held, self._holding = self._holding, None
        if held is not None:  # the last run of this worker died holding it: record it, never fire it
            d, a = held.decision, held.actuation
            self.spool.put(SpooledRecord(d, a, ActuationStatus.MISSED, "not sent: the act worker died holding it",
                                         self.cfg.routing.failsafe_bin))
            self._finish(held, ActuationStatus.MISSED)
        while True:
            w.beat()
            try:
                r = self.routed.get(timeout=0.2)
            except Closed:
                self.recorder.drain(self.cfg.store.retry_max_s * 2, w.beat, self._stop)
                return
            if r is None:
                self.recorder.flush()
                if self._stop.is_set():
                    return
                continue
            self._holding = r
            self._finish(r, self.recorder.handle(r.decision, r.actuation))
            self._holding = None

    def _finish(self, r: _Routed, status: ActuationStatus) -> None:
        """Count a handled decision and raise its hazard alarm (naming the bin the item really went to)."""
        d, a = r.decision, r.actuation
        latency = (time.monotonic() - r.frame_captured) * 1000
        self.stats.latencies_ms.append(latency)
        self.stats.decisions += 1
        self.metrics.decision(d, status.value, latency / 1000)
        sent = status is ActuationStatus.SENT
        where = a.bin if sent else f"{self.cfg.routing.failsafe_bin} (command to {a.bin} {status.value})"
        if d.hazard is not None:
            sev = Severity.CRITICAL if d.hazard == "battery" or not sent else Severity.WARNING
            self._alarm(f"hazard.{d.hazard}", f"{d.hazard} hazard: {d.class_name or 'unknown'} → bin {where}",
                        sev, d.item_id)
        if self.keep_results:
            self.decisions.append(dataclasses.replace(d, crop=None))
            self.actuations.append(a)

    def _resend_after_restart(self) -> None:
        result = self.store.reconcile(time.time(), failsafe_bin=self.cfg.routing.failsafe_bin)
        if result.missed or result.in_doubt:
            self._alarm("store.reconciled", f"after restart: {result.missed} actuation(s) past their ejector time "
                        f"marked missed, {result.in_doubt} in doubt not re-sent", Severity.WARNING)
        for a in result.resend:
            try:
                self.store.mark_actuation(a.actuation_id, ActuationStatus.SENDING)
                self.actuator.fire(a)
                self.store.mark_actuation(a.actuation_id, ActuationStatus.SENT, "re-sent after restart")
            except Exception as exc:  # the peer may still be away: leave it failed, alarm
                self.store.mark_actuation(a.actuation_id, ActuationStatus.FAILED, str(exc))
                self._enter_failsafe("actuator", f"re-send after restart failed: {exc}")

    # --- supervision, alarms, fail-safe ------------------------------------------------------------------
    def _watch(self) -> None:
        last_frames, last_t, last_probe = 0, time.monotonic(), time.monotonic()
        while not self._stop.wait(0.5):
            self.supervisor.check()
            now = time.monotonic()
            self.stats.fps = (self.stats.frames - last_frames) / (now - last_t)
            last_frames, last_t = self.stats.frames, now
            self.metrics.set_fps(self.stats.fps)
            self.metrics.set_queue("frames", len(self.frames))
            if now - last_probe >= 1.0:
                last_probe = now
                self._check_actuator()
            h = self.health()
            self.metrics.set_health(int(h.level), [r.code for r in h.reasons], self.worker_states(), len(self.spool))

    def _check_actuator(self, at_start: bool = False) -> None:
        """Probe the actuator's link: not connected → fail-safe until it is (at start: wait for it a moment)."""
        timeout = self.cfg.actuator.timeout_s if at_start else 0.0
        end = time.monotonic() + timeout
        while True:
            ok = probe(self.actuator)
            if ok or time.monotonic() >= end:
                break
            time.sleep(0.05)
        self._actuator_ok = ok
        if ok:
            self._clear_failsafe("actuator.link")
        else:
            when = "at start" if at_start else "now"
            self._enter_failsafe("actuator.link", f"actuator not connected {when}")

    def _worker_event(self, kind: str, w: Worker, detail: str) -> None:
        if kind in ("restarted", "retrying"):
            self.metrics.worker_restarted(w.name)
        if kind == "recovered":
            self._clear_failsafe(f"worker.{w.name}")
            self._alarm(f"worker.{kind}", f"worker {w.name}: {detail}", Severity.INFO)
            return
        state = "dead" if kind == "gave_up" else kind
        self._enter_failsafe(f"worker.{w.name}", f"worker {w.name} {state}: {detail}", force_alarm=True)

    def source_status(self, ok: bool, detail: str) -> None:
        """Called by sources when they lose or regain the stream (or a file turns corrupt)."""
        self.stats.source_ok = ok
        if ok:
            self._clear_failsafe("source")
            self._alarm("source.restored", detail, Severity.INFO)
        else:
            self._enter_failsafe("source", detail)

    def corrupt_frame(self, detail: str) -> None:
        """Called by sources for each frame they could not decode (skipped, counted)."""
        self.stats.corrupt_frames += 1
        self.metrics.corrupt_frame()
        log.debug("corrupt frame: %s", detail)

    def _hold_reason(self) -> str | None:
        """Why no command may be sent now: a fail-safe reason other than a failed command (whose recovery a
        command that goes through proves), or None."""
        with self._failsafe_lock:
            held = [detail for key, detail in self.failsafe_reasons.items() if key != "actuator"]
        return "; ".join(held) or None

    def _failsafe(self, key: str, detail: str | None) -> None:
        if detail is None:
            self._clear_failsafe(key)
        else:
            self._enter_failsafe(key, detail)

    def _enter_failsafe(self, key: str, detail: str, force_alarm: bool = False) -> None:
        """Route to manual: items without a command ride to the end of the belt (the manual bin)."""
        with self._failsafe_lock:
            first = key not in self.failsafe_reasons
            self.failsafe_reasons[key] = detail
        self.stats.last_error = detail
        if first or force_alarm:
            self._alarm(f"failsafe.{key}", f"{detail} — routing to manual inspection", Severity.CRITICAL)
        if first:
            try:
                self.actuator.set_failsafe(True, detail)
            except Exception as exc:  # the actuator may be the fault itself
                log.warning("could not signal fail-safe to the actuator: %s", exc)

    def _clear_failsafe(self, key: str) -> None:
        with self._failsafe_lock:
            cleared = self.failsafe_reasons.pop(key, None) is not None and not self.failsafe_reasons
        if cleared:
            try:
                self.actuator.set_failsafe(False, "recovered")
            except Exception as exc:  # stays in fail-safe on the PLC side; harmless
                log.warning("could not clear fail-safe on the actuator: %s", exc)

    def _alarm(self, kind: str, message: str, severity: Severity, item_id: str | None = None) -> None:
        """Raise an alarm; one the store cannot take now waits in the spool (an alarm is never lost quietly)."""
        alarm = Alarm(kind=kind, message=message, severity=severity, item_id=item_id)
        (log.warning if severity is not Severity.INFO else log.info)("alarm %s: %s", kind, message)
        self.metrics.alarm(kind)
        if len(self.spool):  # the store is refusing writes: do not block on it, wait in order
            self.spool.put(SpooledAlarm(alarm))
            return
        try:
            self._alarm_store.add_alarm(alarm)
        except STORE_ERRORS as exc:
            log.warning("alarm %s kept in the spool: %s", kind, exc)
            self.spool.put(SpooledAlarm(alarm))
