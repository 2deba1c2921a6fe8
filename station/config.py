"""Station configuration: YAML → pydantic models that forbid unknown keys.

Every field carries a description (``sortloop config schema`` prints them); errors name the YAML path
and the fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from station.resources import checkout_root
from station.taxonomy import Stream, default_taxonomy

ROOT = checkout_root() or Path.cwd()
"""What relative paths in a config are relative to: the source checkout the station runs from, or for an
installed station the folder it is started in."""


class ConfigError(ValueError):
    """The configuration is invalid; the message names the YAML path and the fix."""


_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _safe_id(value: str, where: str) -> str:
    """A station id is one MQTT topic level and a file-name part: letters, digits, '.', '_', '-'."""
    if not _SAFE_ID.fullmatch(value):
        raise ValueError(f"{where} {value!r} is not a safe id (it goes into MQTT topics and file names); use "
                         "letters, digits, '.', '_' or '-' (no '/', '+', '#' or spaces), e.g. station-1")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ReconnectConfig(_Model):
    initial_s: float = Field(0.5, gt=0, description="First wait before reconnecting a lost stream (s).")
    max_s: float = Field(10.0, gt=0, description="Longest wait between reconnect attempts (s).")
    factor: float = Field(2.0, ge=1, description="Back-off multiplier between attempts.")


class SourceConfig(_Model):
    kind: Literal["simulator", "video", "images", "stream", "usb"] = Field(
        "simulator", description="Frame source: the conveyor simulator, a video file, an image folder, "
        "an RTSP/HTTP stream or a USB camera.")
    uri: str = Field("", description="Video path, image folder, stream URL or USB device index.")
    fps: float = Field(30.0, gt=0, description="Frame rate for image folders, and the nominal rate of others.")
    loop: bool = Field(False, description="Restart a video file or image folder at its end.")
    realtime: bool = Field(True, description="Pace files and the simulator at their frame rate (False: "
                           "as fast as the pipeline takes them, without dropping frames).")
    max_frames: int | None = Field(None, ge=1, description="Stop after this many frames (None: run until the "
                                   "source ends or the station is stopped).")
    max_bad_frames: int = Field(30, ge=1, description="Frames in a row of a video file that do not decode before "
                                "the file is given up (each is skipped, counted and alarmed).")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig,
                                       description="Back-off for lost streams and cameras.")


class SimulatorConfig(_Model):
    width: int = Field(1280, ge=160, description="Frame width (px).")
    height: int = Field(720, ge=120, description="Frame height (px).")
    fps: float = Field(30.0, gt=0, description="Camera frame rate (frames/s).")
    belt_speed_mps: float = Field(0.5, gt=0, description="Belt speed (m/s).")
    px_per_m: float = Field(1000.0, gt=0, description="Image scale on the belt plane (px per metre).")
    ticks_per_m: float = Field(2000.0, gt=0, description="Encoder ticks per metre of belt travel.")
    items_per_min: float = Field(40.0, gt=0, description="Mean arrival rate (items per minute).")
    touching_prob: float = Field(0.08, ge=0, le=1, description="Chance an item arrives touching the previous one.")
    motion_blur: float = Field(0.3, ge=0, le=1, description="Strength of motion blur (0 = none).")
    lighting_jitter: float = Field(0.15, ge=0, le=1, description="Random brightness/colour change per item.")
    seed: int = Field(0, description="Random seed: the same seed gives the same items and frames.")
    sprites: str | None = Field(None, description="Folder of RGBA cut-outs (class/*.png) to use instead of "
                                "the built-in procedural items.")
    classes: list[str] | None = Field(None, description="Restrict items to these taxonomy classes.")


CLASSIFIERS = "classifiers"
"""The crop classifiers' registry: this folder inside ``model.registry`` (pointer ``current.json`` as for detectors)."""


class ModelConfig(_Model):
    path: str = Field("models/sortloop-default.onnx", description="ONNX detector (Ultralytics export).")
    registry: str = Field("models/registry", description="Model registry folder; the station watches its "
                          "promoted model and swaps to it without a restart.")
    watch_registry: bool = Field(True, description="Swap to a newly promoted model while running.")
    classifier: str | None = Field("models/sortloop-crops.onnx", description="Crop classifier (Ultralytics "
                                   "classification ONNX export with the taxonomy's classes) run once per decision "
                                   "on the item's evidence crop, its probabilities fused with the track's vote by "
                                   "geometric mean before the decision rule (hazard doubt included). Empty: the "
                                   "track vote alone. A classifier promoted in the registry (its `classifiers` "
                                   "folder) takes this file's place while `watch_registry` is on. The station "
                                   "reloads it when the file or the promotion changes; one that does not load is "
                                   "refused and the last good one kept.")
    classifier_threads: int = Field(1, ge=1, description="Intra-op threads for the crop classifier (it runs "
                                    "once per item, beside the detector).")
    confidence: float = Field(0.25, ge=0, le=1, description="Detection score threshold.")
    hazard_confidence: float = Field(0.1, ge=0, le=1, description="Score threshold for the battery-hazard "
                                     "classes (taxonomy hazard: battery). A box scoring this for one of them is "
                                     "kept, tracked and decided although under `confidence`: hazard recall first, "
                                     "a faint battery goes to the hazard bin or a person, never unseen to a "
                                     "material bin. Set it to `confidence` or above to turn this off.")
    iou: float = Field(0.5, gt=0, le=1, description="NMS IoU threshold (models that need NMS).")
    agnostic_nms: bool = Field(True, description="Class-agnostic NMS: one box per object whatever its class, so "
                               "one item never becomes two tracks (its per-class scores still vote).")
    threads: int = Field(0, ge=0, description="Intra-op threads for onnxruntime (0 = the CPU cores shared "
                         "out among `pipeline.detect_workers`).")
    spin: bool | None = Field(None, description="Let onnxruntime's idle threads busy-wait between operators: "
                              "faster inference when cores are free, much slower when they fight the capture and "
                              "storage workers for them. Empty: on with at least 4 CPU cores, off below.")
    class_map: dict[str, str] = Field(default_factory=dict, description="Map model class names onto taxonomy "
                                      "classes, for a model trained on another label set (e.g. COCO 'cell phone': "
                                      "phone). When set, model classes neither in the taxonomy nor mapped are "
                                      "ignored.")
    providers: list[str] = Field(default_factory=lambda: ["CUDAExecutionProvider", "OpenVINOExecutionProvider",
                                                          "CPUExecutionProvider"],
                                 description="onnxruntime providers in order of preference; absent ones "
                                 "are skipped.")

    @property
    def hazard_floor(self) -> float | None:
        """``hazard_confidence`` where it lowers the bar for battery-hazard boxes; None where it is turned off."""
        return self.hazard_confidence if self.hazard_confidence < self.confidence else None


class TrackerConfig(_Model):
    activation_threshold: float = Field(0.3, ge=0, le=1, description="Score a detection needs to start a track.")
    high_confidence: float = Field(0.3, ge=0, le=1, description="ByteTrack's first-stage (high) score threshold. "
                                   "Only a detection at or above it starts a track: an item the model finds but "
                                   "cannot name with confidence (its score split between classes) must still get "
                                   "a track, to be decided (manual inspection at worst) rather than missed.")
    lost_track_buffer: int = Field(30, ge=1, description="Frames a lost track is kept for re-association.")
    minimum_iou: float = Field(0.1, gt=0, le=1, description="Least IoU between a track and a detection to match.")
    minimum_consecutive_frames: int = Field(1, ge=1, description="Frames before a track is confirmed.")


class DecisionConfig(_Model):
    line_x: float = Field(0.5, gt=0, lt=1, description="Decision line position as a fraction of frame width "
                          "(the belt moves left → right).")
    min_track_frames: int = Field(3, ge=1, description="Fewer observations than this → manual inspection.")
    min_confidence: float = Field(0.45, ge=0, le=1, description="Vote share of the winning class below "
                                  "this → manual inspection.")
    hazard_doubt: float = Field(0.15, ge=0, le=1, description="A hazard class holding at least this vote "
                                "share without winning → manual inspection (a battery in doubt is never "
                                "sorted as material).")
    duplicate_gate_px: float = Field(60.0, gt=0, description="A crossing within this distance (belt "
                                     "coordinates, px) of an item already decided is the same item.")
    lost_grace_s: float = Field(0.3, ge=0, description="A track lost before the line is decided this long after "
                                "its predicted crossing, unless another track of the same item crossed first.")
    crop_padding: float = Field(0.1, ge=0, le=1, description="Evidence crop padding, as a fraction of box size.")


class BinConfig(_Model):
    channel: int = Field(ge=0, description="Actuator channel (Modbus coil / MQTT channel) of the ejector.")
    distance_m: float = Field(gt=0, description="Distance from the decision line to the ejector (m).")
    streams: list[Stream] = Field(default_factory=list, description="Streams sorted to this bin.")


def _default_bins() -> dict[str, BinConfig]:
    return {
        "electronics": BinConfig(channel=0, distance_m=0.6, streams=[Stream.ELECTRONICS]),
        "plastic": BinConfig(channel=1, distance_m=0.9, streams=[Stream.PLASTIC]),
        "metal": BinConfig(channel=2, distance_m=1.2, streams=[Stream.METAL]),
        "textile": BinConfig(channel=3, distance_m=1.5, streams=[Stream.TEXTILE]),
        "hazard": BinConfig(channel=4, distance_m=0.4, streams=[]),
        "residual": BinConfig(channel=5, distance_m=1.8, streams=[Stream.RESIDUAL]),
        # the fail-safe bin sits at the end of the belt: an item that gets no command lands there
        "manual": BinConfig(channel=6, distance_m=2.1, streams=[Stream.MANUAL]),
    }


class RoutingConfig(_Model):
    bins: dict[str, BinConfig] = Field(default_factory=_default_bins, description="Bins by name.")
    hazard_bin: str = Field("hazard", description="Bin for hazards (batteries); overrides the stream.")
    failsafe_bin: str = Field("manual", description="Bin for any fault or doubt (manual inspection).")
    belt_speed_source: Literal["config", "encoder"] = Field(
        "encoder", description="Where belt speed comes from: the encoder when the source has one, else config.")
    belt_speed_mps: float = Field(0.5, gt=0, description="Belt speed used when no encoder reading is available.")
    px_per_m: float = Field(1000.0, gt=0, description="Image scale on the belt plane (px per metre).")
    ticks_per_m: float = Field(2000.0, gt=0, description="Encoder ticks per metre.")

    @model_validator(mode="after")
    def _bins_known(self) -> RoutingConfig:
        for key in ("hazard_bin", "failsafe_bin"):
            name = getattr(self, key)
            if name not in self.bins:
                raise ValueError(f"{key} names bin {name!r}, which is not under bins; add it to bins or "
                                 f"set {key} to one of {sorted(self.bins)}")
        owner: dict[int, str] = {}
        for name, b in self.bins.items():
            if b.channel in owner:
                raise ValueError(f"routing.bins.{name}.channel: channel {b.channel} is also bin "
                                 f"{owner[b.channel]}'s, so one ejector would fire for both; give each bin its "
                                 "own channel")
            owner[b.channel] = name
        return self


class ActuatorConfig(_Model):
    kind: Literal["simulated", "modbus", "mqtt"] = Field("simulated", description="Actuator backend.")
    host: str = Field("127.0.0.1", description="Modbus TCP server or MQTT broker host.")
    port: int = Field(0, ge=0, le=65535, description="Port (0 = protocol default: 502 Modbus, 1883 MQTT).")
    unit_id: int = Field(1, ge=0, le=247, description="Modbus unit (slave) id.")
    topic_prefix: str = Field("sortloop", description="MQTT topic prefix.")
    station_id: str = Field("station-1", description="This station's id in topics and records.")
    timeout_s: float = Field(1.0, gt=0, description="Connect/request timeout (s).")
    deadline_margin_s: float = Field(0.05, ge=0, description="A command that cannot be handed to the actuator "
                                     "this long before its fire time is not sent: the item rides to the "
                                     "fail-safe bin and is recorded as missed.")
    missed_rate_limit: float = Field(0.05, ge=0, le=1, description="Share of missed commands (deadline passed "
                                     "or actuator failed) among the last `missed_window` above which a critical "
                                     "alarm is raised.")
    missed_window: int = Field(50, ge=1, description="Commands over which the missed share is measured.")
    allow_simulated_source: bool = Field(False, description="Let a real actuator (modbus, mqtt) be driven by "
                                         "the simulator's items (a bench test). Off: such a config is refused.")

    @field_validator("station_id")
    @classmethod
    def _station_id_safe(cls, v: str) -> str:
        return _safe_id(v, "actuator.station_id")


class StoreConfig(_Model):
    url: str = Field("sqlite:///var/sortloop.db", description="SQLAlchemy URL: SQLite (WAL) by default, "
                     "postgresql+psycopg://… where several stations share data.")
    evidence_dir: str = Field("var/evidence", description="Folder for evidence crops (JPEG).")
    runs_dir: str = Field("var/runs", description="Folder of the runs that keep their own store (a scored "
                          "simulator run, a benchmark): <runs_dir>/<run id>/sortloop.db with its evidence/, so "
                          "they never mix with the live station's data (`sortloop run --store` says otherwise).")
    crop_quality: int = Field(85, ge=10, le=100, description="JPEG quality of evidence crops.")
    busy_timeout_s: float = Field(10.0, gt=0, description="How long a SQLite write waits for a lock held by "
                                  "another connection before it fails (and the record is spooled).")
    spool_size: int = Field(10_000, ge=1, description="Decisions, status changes and alarms kept in memory "
                            "while the store refuses writes (their items ride to the fail-safe bin); written in "
                            "order when it is back.")
    spool_crops: int = Field(200, ge=0, description="Evidence crops kept with spooled decisions; later ones "
                             "are spooled without their crop (bounded memory).")
    journal: str | None = Field(None, description="Fallback journal file (JSON lines) for the spool once memory "
                                "is full, on another file system than the store. Empty: none, records beyond "
                                "`spool_size` are lost, counted and alarmed.")
    retry_initial_s: float = Field(0.5, gt=0, description="First wait before writing the spool again (s).")
    retry_max_s: float = Field(5.0, gt=0, description="Longest wait between tries to write the spool (s).")

    @field_validator("url")
    @classmethod
    def _url_parses(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(v)
        except ArgumentError:
            raise ValueError(f"store.url {v!r} is not a database URL; use sqlite:///var/sortloop.db or "
                             "postgresql+psycopg://user@host/db") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"store.url {v!r}: backend {url.get_backend_name()!r} is not supported; use "
                             "sqlite:///… or postgresql+psycopg://…")
        return v


class ApiConfig(_Model):
    host: str = Field("127.0.0.1", description="Address the web app binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the web app.")
    live_fps: float = Field(10.0, gt=0, description="Frame rate of the MJPEG live view.")


class SecurityConfig(_Model):
    session_idle_s: float = Field(1800.0, gt=0, description="A login session unused this long ends (s); the "
                                  "absolute lifetime is the console's session_ttl_s.")
    public_impact: bool = Field(True, description="Serve the impact page (/impact, /impact.json) without login.")
    login_backoff_after: int = Field(3, ge=1, description="Failed logins (per user and per address) allowed "
                                     "before each further try must wait.")
    login_backoff_s: float = Field(1.0, gt=0, description="First wait after too many failed logins (s); it "
                                   "doubles with each further failure.")
    login_backoff_max_s: float = Field(300.0, gt=0, description="Longest wait between login tries (s).")
    login_tarpit_s: float = Field(5.0, ge=0, description="A login refused for back-off or a full hash queue is "
                                  "answered after this long (at most its Retry-After), slowing a flood without "
                                  "holding a thread (s).")
    lock_after: int = Field(20, ge=1, description="Wrong passwords in a row that lock an account until an admin "
                            "unlocks it (`sortloop users unlock NAME`).")
    hash_workers: int = Field(1, ge=1, le=8, description="Password hashes computed at once, each in its own "
                              "worker process (argon2id, 19 MiB each); further logins wait in a queue instead "
                              "of taking the pipeline's CPU.")
    hash_queue: int = Field(32, ge=1, description="Logins that may wait for a hash worker; beyond that a login "
                            "is answered 503 with Retry-After.")
    hash_nice: int = Field(10, ge=0, le=19, description="Scheduling niceness of the hash worker processes, so "
                           "the frame loop wins the CPU over a flood of logins.")
    hash_interval_s: float = Field(0.5, ge=0, le=10, description="Shortest time between two password hashes "
                                   "of one worker (s): under a flood hashing takes at most about 30 ms of CPU per "
                                   "interval (argon2id, 19 MiB), the rest stays with the frame loop; a login "
                                   "without a flood does not wait.")


class PipelineConfig(_Model):
    queue_size: int = Field(4, ge=1, description="Frames buffered between stages; when full the oldest "
                            "frame is dropped and counted.")
    worker_restart_limit: int = Field(5, ge=0, description="Restarts per minute of a dead worker before the "
                                      "station stops routing and alarms.")
    heartbeat_timeout_s: float = Field(5.0, gt=0, description="A worker silent this long is stuck: alarm, "
                                       "route to manual.")
    detect_workers: int | None = Field(None, ge=1, le=8, description="Workers that run the detector on "
                                       "successive frames at once (tracking and decisions still take frames in "
                                       "order). On a CPU two one-thread inferences side by side outrun one "
                                       "inference spread over two threads. Empty: 2 with at least 2 CPU cores, "
                                       "else 1. With `model.threads` 0 each gets cores / workers threads.")

    dead_retry_s: float = Field(30.0, gt=0, description="A worker past `worker_restart_limit` is dead (health "
                                "failing, fail-safe) and tried again after this long (s).")
    settle_s: float = Field(2.0, ge=0, description="A restarted worker counts as recovered (fail-safe lifted) "
                            "once it has run this long (s).")
    latency_limit_s: float = Field(1.0, gt=0, description="Health is degraded while the p99 frame-to-command "
                                   "latency of the last 100 items exceeds this (s).")

    def detect_worker_count(self, cores: int | None = None) -> int:
        """``detect_workers``, or the automatic choice for ``cores`` (default: this machine's)."""
        if self.detect_workers is not None:
            return self.detect_workers
        return 2 if (cores if cores is not None else os.cpu_count() or 1) >= 2 else 1


class StationConfig(_Model):
    station_id: str = Field("station-1", description="Station id stored with every record.")
    taxonomy: str | None = Field(None, description="Taxonomy YAML. Empty: the taxonomy the station ships "
                                 "(datasets/taxonomy.yaml).")
    source: SourceConfig = Field(default_factory=SourceConfig, description="Where frames come from.")
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig, description="Conveyor simulator.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Detector.")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="ByteTrack settings.")
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description="Decision line and rules.")
    routing: RoutingConfig = Field(default_factory=RoutingConfig, description="Bins and ejectors.")
    actuator: ActuatorConfig = Field(default_factory=ActuatorConfig, description="Actuator backend.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Database and evidence.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="Web app and live view.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="Workers and queues.")
    security: SecurityConfig = Field(default_factory=SecurityConfig, description="Sessions, logins and access.")

    @model_validator(mode="after")
    def _real_actuator_needs_real_source(self) -> StationConfig:
        if (self.actuator.kind != "simulated" and self.source.kind == "simulator"
                and not self.actuator.allow_simulated_source):
            raise ValueError(f"actuator.kind is {self.actuator.kind} (a real PLC or broker) but source.kind is "
                             "simulator (the default when source is not set): simulated items would drive real "
                             "ejectors. Set source.kind and source.uri to the camera, or, for a bench test, set "
                             "actuator.allow_simulated_source: true")
        return self

    @field_validator("station_id")
    @classmethod
    def _station_id_safe(cls, v: str) -> str:
        return _safe_id(v, "station_id")

    @model_validator(mode="after")
    def _simulator_matches_routing(self) -> StationConfig:
        if self.source.kind != "simulator":
            return self
        for key in ("px_per_m", "ticks_per_m", "belt_speed_mps"):
            sim, route = getattr(self.simulator, key), getattr(self.routing, key)
            if sim != route:
                raise ValueError(f"routing.{key} ({route}) differs from simulator.{key} ({sim}) while the source "
                                 f"is the simulator; set both to the same value")
        return self

    def resolve(self, path: str) -> Path:
        """A config path made absolute against ``ROOT`` (the checkout, or an installed station's folder)."""
        p = Path(path)
        return p if p.is_absolute() else ROOT / p

    def taxonomy_file(self) -> Path:
        """The taxonomy file: ``taxonomy`` when set, else the one the station ships."""
        return self.resolve(self.taxonomy) if self.taxonomy else default_taxonomy()


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key; remove it or check its spelling (see `sortloop config schema`)")
        else:
            lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def parse_config(data: object, source: str = "config") -> StationConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return StationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from exc


def load_config(path: str | Path | None = None, *, allow_empty: bool = False) -> StationConfig:
    """The config in ``path`` (defaults when None). An empty file is refused unless ``allow_empty``: a file
    that says nothing is more often a mistake than a wish for every default."""
    if path is None:
        return StationConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found; pass an existing YAML file (e.g. configs/station.yaml)")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise ConfigError(f"{p}: not a text file (binary content); pass the station's YAML config, e.g. "
                          "configs/station.yaml")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if data is None and not allow_empty:
        raise ConfigError(f"{p}: the file is empty (or only comments), which would run on every default; write "
                          "the sections to change (see configs/station.yaml) or pass --allow-empty")
    return parse_config(data, str(p))


def commented_yaml(model: BaseModel, indent: int = 0) -> str:
    """The config as YAML with each field's description as a comment above it (configs/station.yaml)."""
    pad = "  " * indent
    out: list[str] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if info.description:
            out.append(f"{pad}# {info.description}")
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            out.append(commented_yaml(value, indent + 1))
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            out.append(f"{pad}{name}:")
            for key, sub in value.items():
                out.append(f"{pad}  {key}:")
                out.append(commented_yaml(sub, indent + 2))
        else:
            dumped = yaml.safe_dump({name: _plain(value)}, default_flow_style=True, width=1000).strip()
            out.append(pad + dumped.removeprefix("{").removesuffix("}"))
    return "\n".join(out)


def _plain(value: object) -> object:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "value"):
        return value.value
    return value
