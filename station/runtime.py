"""Wiring: build a Station from its config, watch the model registry, serve the app, score a sim run."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from station.classes import ClassMapper
from station.config import CLASSIFIERS, StationConfig
from station.pipeline import Station
from station.runs import new_run_id
from station.store.records import RunKind
from station.taxonomy import Taxonomy, load_taxonomy

if TYPE_CHECKING:
    from station.classify import CropClassifier
    from station.detect import Detector
    from station.simulator import Scorecard

log = logging.getLogger(__name__)


def load_detector(cfg: StationConfig, taxonomy: Taxonomy, path: Path | None = None, *,
                  check_classes: bool = True) -> Detector:
    """The configured detector; with ``check_classes`` a model whose classes cannot be placed is refused."""
    from station.detect import Detector, ModelError

    m = cfg.model
    threads = m.threads or max(1, (os.cpu_count() or 1) // cfg.pipeline.detect_worker_count())
    det = Detector(path or cfg.resolve(m.path), confidence=m.confidence, iou=m.iou, threads=threads,
                   providers=m.providers, taxonomy=taxonomy if check_classes and not m.class_map else None,
                   agnostic=m.agnostic_nms, spin=m.spin)
    if check_classes:
        try:
            ClassMapper(det.names, taxonomy, m.class_map)
        except ValueError as exc:
            raise ModelError(f"model file {det.path}: {exc}") from exc
    if m.hazard_floor is not None:  # hazard recall first: keep faint battery-hazard boxes
        placed = [m.class_map.get(name, name) for name in det.names]
        det.class_confidence = {i: m.hazard_floor for i, name in enumerate(placed)
                                if name in taxonomy.battery_hazards}
    det.warm_up()  # here, not on the first frame (or, for a swap, in the watcher's thread, not the hot path)
    return det


def load_classifier(cfg: StationConfig, taxonomy: Taxonomy, path: Path | None = None) -> CropClassifier | None:
    """The configured crop classifier (or the one at ``path``), warmed up; None when none is configured.
    Raises ModelError."""
    from station.classify import CropClassifier

    if cfg.model.classifier is None:
        return None
    clf = CropClassifier(path or cfg.resolve(cfg.model.classifier), taxonomy=taxonomy,
                         threads=cfg.model.classifier_threads, providers=cfg.model.providers)
    clf.warm_up()
    return clf


def promoted_model(registry: Path) -> tuple[str, Path] | None:
    """(version, onnx path) of the registry's promoted model, or None when nothing is promoted."""
    pointer = registry / "current.json"
    if not pointer.is_file():
        return None
    data = json.loads(pointer.read_text())
    version = str(data["version"])
    path = Path(data.get("path") or registry / version / "model.onnx")
    return version, path if path.is_absolute() else registry / path


def classifier_path(cfg: StationConfig) -> Path | None:
    """The crop classifier the station runs: the registry's promoted one while ``watch_registry`` is on and one
    is promoted, else the configured file; None when the config turns the second look off."""
    if cfg.model.classifier is None:
        return None
    if cfg.model.watch_registry:
        promoted = promoted_model(cfg.resolve(cfg.model.registry) / CLASSIFIERS)
        if promoted is not None:
            return promoted[1]
    return cfg.resolve(cfg.model.classifier)


def _mtime(path: Path | None) -> float | None:
    return path.stat().st_mtime if path is not None and path.is_file() else None


class ModelWatcher:
    """Polls the registry's pointer files (detectors, crop classifiers) and the configured crop classifier's file;
    loads a newly promoted model or a changed classifier and hands it to the station.

    A model that fails to load is refused with an alarm; the station keeps its last good model.
    """

    def __init__(self, station: Station, registry: Path, interval_s: float = 1.0) -> None:
        self._station, self._registry, self._interval = station, registry, interval_s
        self._seen: float | None = self._mtime()
        self._classifier_seen = self._classifier_stamp()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sortloop-model-watcher", daemon=True)

    def _mtime(self) -> float | None:
        return _mtime(self._registry / "current.json")

    def _classifier_stamp(self) -> tuple[Path, float] | None:
        """The classifier file in effect and its mtime: a promotion, a rollback or a new file changes it."""
        path = classifier_path(self._station.cfg)
        mtime = _mtime(path)
        return None if path is None or mtime is None else (path, mtime)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self._station.cfg.model.watch_registry:
                self.poll()
            self.poll_classifier()

    def poll_classifier(self) -> bool:
        """Check the crop classifier once (the promoted one, else the configured file); True when a changed
        classifier was handed over. A file that went away leaves the loaded classifier in place (the next file
        written there is loaded)."""
        stamp = self._classifier_stamp()
        if stamp is None or stamp == self._classifier_seen:
            return False
        self._classifier_seen = stamp
        from station.detect import ModelError
        from station.events import Severity

        st = self._station
        try:
            clf = load_classifier(st.cfg, st.taxonomy, stamp[0])
        except (ModelError, OSError, ValueError) as exc:
            st._alarm("model.rejected", f"crop classifier {stamp[0]} not loaded, keeping "
                      f"{st.classifier_version or 'none'}: {exc}", Severity.CRITICAL)
            return False
        if clf is None:
            return False
        st.swap_classifier(clf)
        return True

    def poll(self) -> bool:
        """Check once; True when a new model was handed over."""
        mtime = self._mtime()
        if mtime is None or mtime == self._seen:
            return False
        self._seen = mtime
        from station.detect import ModelError
        from station.events import Severity

        try:
            found = promoted_model(self._registry)
            if found is None or found[0] == self._station.model_version:
                return False
            det = load_detector(self._station.cfg, self._station.taxonomy, found[1])
        except (ModelError, OSError, ValueError, KeyError) as exc:
            self._station._alarm("model.rejected", f"promoted model not loaded, keeping "
                                 f"{self._station.model_version}: {exc}", Severity.CRITICAL)
            return False
        self._station.swap_model(det)
        return True


@dataclass
class Built:
    station: Station
    watcher: ModelWatcher | None
    source_is_sim: bool


def build_station(cfg: StationConfig, *, keep_results: bool = False, run_kind: RunKind = "live",
                  run_id: str | None = None) -> Built:
    """Open every part named by the config and begin a run of ``run_kind`` in its store (``run_id``, default a
    new one; ``station.runs.plan_run`` gives a non-live run its own store); errors name the part and the fix."""
    from station.actuate import make_actuator
    from station.capture import open_source
    from station.live import LiveView
    from station.metrics import StationMetrics
    from station.store import Store

    taxonomy = load_taxonomy(cfg.taxonomy_file())
    registry = cfg.resolve(cfg.model.registry)
    promoted = promoted_model(registry) if cfg.model.watch_registry else None
    detector = load_detector(cfg, taxonomy, promoted[1] if promoted else None)
    classifier = load_classifier(cfg, taxonomy, classifier_path(cfg))
    store = Store.from_config(cfg)
    store.begin_run(run_id or new_run_id(run_kind), run_kind, cfg.station_id, _describe_source(cfg))
    store.record_model(detector.version, str(detector.path), dict(detector.metadata))
    if classifier is not None:
        store.record_model(classifier.version, str(classifier.path), classifier.metadata, kind="classifier")
    holder: list[Station] = []
    source = open_source(cfg, taxonomy, on_status=lambda ok, d: holder[0].source_status(ok, d) if holder else None,
                         on_corrupt=lambda d: holder[0].corrupt_frame(d) if holder else None)
    station = Station(cfg, taxonomy, source=source, detector=detector, actuator=make_actuator(cfg.actuator),
                      store=store, metrics=StationMetrics(), live=LiveView(taxonomy), keep_results=keep_results,
                      classifier=classifier)
    holder.append(station)
    watcher = ModelWatcher(station, registry) if cfg.model.watch_registry or cfg.model.classifier else None
    return Built(station, watcher, cfg.source.kind == "simulator")


def _describe_source(cfg: StationConfig) -> str:
    """The source as the run records it: kind and location, without a stream URL's user and password."""
    from urllib.parse import urlsplit

    uri = cfg.source.uri
    parts = urlsplit(uri)
    if parts.hostname is not None and "@" in parts.netloc:
        uri = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return "simulator" if cfg.source.kind == "simulator" else f"{cfg.source.kind}:{uri}"


def scorecard(built: Built, end: float) -> Scorecard:
    """Score a simulator run's decisions and actuations against its ground truth."""
    from station.capture import SimulatorSource
    from station.simulator import score

    st = built.station
    assert isinstance(st.source, SimulatorSource)
    warmup = st.cfg.decision.line_x * st.cfg.simulator.width / st.belt.px_per_s
    bins = {name: b.distance_m for name, b in st.cfg.routing.bins.items()}
    return score(st.source.sim.truth, st.decisions, st.actuations, start=warmup, end=end - 0.5,
                 bin_distances=bins, ticks_to_time=st.source.sim.time_at_ticks)


def wait_for_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot bind {host}:{port} ({exc.strerror}); stop the other process or pass --port") from exc
