"""The engineer view: corrected data per class (exportable), retraining on it as a background job with
progress, the candidate's evaluation beside the current model, promotion through the registry's gate and
rollback. The running station's ``ModelWatcher`` swaps to a promoted model without a restart.

``EngineerDesk`` holds the actions; each checks the engineer permission on the server before it acts.
``build_engineer_tab`` wires them into Gradio components.
"""

from __future__ import annotations

import csv
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from station.store.access import AccessRepo
from ui.access import require
from ui.auth import ConsoleUser, Perm
from ui.downloads import download_dir
from ui.jobs import JobManager, JobStatus, process_runner
from ui.retrain import IMGSZ_HELP, ROOT, Comparison, RetrainError, RetrainSpec

if TYPE_CHECKING:
    from training.registry import GateConfig, GateDecision, Registry
    from ui.context import ConsoleContext
    from ui.settings import Console

log = logging.getLogger(__name__)

JOB = "retrain"


class RetrainOptions(BaseModel):
    """What the engineer chooses for a retraining run."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=1, le=300, description="Training epochs.")
    replay_data: str | None = Field(None, description="data.yaml of the base training data (default: the "
                                    "training config's train.data when it exists).")
    replay_n: int = Field(200, ge=0, description="Base images mixed in so the model keeps what it knew.")
    batch: int = Field(8, ge=1)
    device: str = Field("cpu", description="'cpu' or a CUDA index such as '0'.")
    imgsz: int | None = Field(None, ge=32, description=IMGSZ_HELP)
    eval_data: str | None = Field(None, description="Default: the data the current model was evaluated on.")
    training_config: str | None = Field(None, description="Training YAML (default: configs/training.yaml).")
    train_args: dict[str, float | int | bool | str] = Field(default_factory=dict)


@dataclass(frozen=True)
class ClassCorrections:
    """Standing corrections touching one class."""

    class_name: str
    corrected_to: int
    """Items re-labelled as this class."""
    corrected_from: int
    """Items the station gave this class that were something else (or nothing)."""
    not_item: int
    missed: int
    confirmed: int

    @property
    def total(self) -> int:
        return self.corrected_to + self.corrected_from + self.missed


@dataclass(frozen=True)
class ActiveModel:
    station: str | None
    """The version the running station (or the store's record of it) uses."""
    promoted: str | None
    promoted_at: str | None
    promoted_by: str | None
    history: list[str]


COUNT_COLUMNS = ("class", "corrected to", "corrected from", "not an item", "missed", "confirmed")
CLASS_COLUMNS = ("class", "AP50 current", "AP50 candidate", "corrections: current", "corrections: candidate")


class EngineerDesk:
    """The engineer view's actions over a console context; one ``JobManager`` runs the retraining."""

    def __init__(self, ctx: ConsoleContext, jobs: JobManager | None = None, *, python: str = sys.executable,
                 gate: GateConfig | None = None, work_dir: Path | None = None) -> None:
        self.ctx, self.jobs, self.python = ctx, jobs or JobManager(), python
        self._gate = gate
        self.work_dir = work_dir or ctx.work_dir
        """Retraining runs go to ``work_dir/retrain/<version>/``."""

    # -- reading -----------------------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        from training.registry import Registry

        return Registry(self.ctx.registry)

    def gate(self) -> GateConfig:
        if self._gate is None:
            from training.train import load_settings

            self._gate = load_settings().gate
        return self._gate

    def active_model(self, user: object) -> ActiveModel:
        require(user, Perm.ENGINEER)
        if self.ctx.station is not None:
            station: str | None = self.ctx.station.model_version
        else:
            record = self.ctx.store.active_model()
            station = record.version if record else None
        ptr = self.registry.pointer()
        return ActiveModel(station, ptr.version if ptr else None, ptr.promoted_at if ptr else None,
                           ptr.by if ptr else None, list(ptr.history) if ptr else [])

    def correction_counts(self, user: object) -> list[ClassCorrections]:
        require(user, Perm.ENGINEER)
        from ui.repo import ConsoleRepo

        counts: dict[str, list[int]] = {name: [0] * 5 for name in self.ctx.taxonomy.names}
        for c in ConsoleRepo(self.ctx.store).corrections():
            for name, col in _touches(c.kind, c.before_class, c.after_class):
                if name in counts:
                    counts[name][col] += 1
        return [ClassCorrections(name, *v) for name, v in counts.items() if any(v)]

    def corrections_csv(self, user: object) -> Path:
        rows = self.correction_counts(user)
        path = download_dir("sortloop-corrections-") / "corrections_per_class.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COUNT_COLUMNS)
            w.writerows((r.class_name, r.corrected_to, r.corrected_from, r.not_item, r.missed, r.confirmed)
                        for r in rows)
        return path

    def corrections_zip(self, user: object) -> Path:
        """The corrections as a YOLO dataset (zip), exported by ``ui.corrections``."""
        require(user, Perm.ENGINEER)
        from ui.corrections import export_zip

        return export_zip(self._console(), "yolo")[0]

    # -- retraining --------------------------------------------------------------------------------

    def start_retrain(self, user: object, options: RetrainOptions | None = None) -> JobStatus:
        """Export the corrections, write the job's spec and start the retraining process."""
        who = require(user, Perm.ENGINEER)
        from ui.corrections import export_dataset

        opts = options or RetrainOptions()
        latest = self.jobs.latest(JOB)
        if latest is not None and not latest.done:
            raise RetrainError(f"a retraining ({latest.job_id[:8]}, by {latest.owner}) is running; wait "
                               "for it or cancel it")
        version = f"retrain-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
        work = self.work_dir / "retrain" / version
        summary = export_dataset(self._console(), work / "corrections", "yolo")
        if summary.images == 0:
            raise RetrainError("no corrections with an image to train on; correct some items first")
        spec = self._spec(who, version, work, opts)
        spec_path = work / "spec.json"
        spec_path.write_text(spec.model_dump_json(indent=2))
        log.info("retraining %s by %s on %s", version, who.username, summary.text())
        argv = [self.python, "-m", "ui.retrain", str(spec_path)]
        return self.jobs.start(JOB, who.username, process_runner(argv, cwd=ROOT, env={"YOLO_OFFLINE": "1"}))

    def _spec(self, who: ConsoleUser, version: str, work: Path, opts: RetrainOptions) -> RetrainSpec:
        from training.train import load_settings

        replay = opts.replay_data
        if replay is None:
            train = load_settings(opts.training_config).train
            replay = str(train.resolve(train.data)) if train.resolve(train.data).is_file() else None
        cfg = self.ctx.config
        return RetrainSpec(version=version, by=who.username, corrections=str(work / "corrections"),
                           work_dir=str(work), registry=str(self.ctx.registry),
                           taxonomy=str(cfg.taxonomy_file()), replay_data=replay,
                           replay_n=opts.replay_n if replay else 0, eval_data=opts.eval_data,
                           station_model=str(cfg.resolve(cfg.model.path)),
                           epochs=opts.epochs, imgsz=opts.imgsz, batch=opts.batch, device=opts.device,
                           canvas=self._frame_size(), conf=cfg.model.confidence,
                           hazard_floor=cfg.model.hazard_floor, hazard_doubt=cfg.decision.hazard_doubt,
                           train_args=opts.train_args,
                           training_config=opts.training_config)

    def _frame_size(self) -> tuple[int, int]:
        st = self.ctx.station
        if st is not None and st.last_frame is not None:
            h, w = st.last_frame.image.shape[:2]
            return w, h
        sim = self.ctx.config.simulator
        return (sim.width, sim.height) if self.ctx.config.source.kind == "simulator" else (1280, 720)

    def _console(self) -> Console:
        """The corrections module's view of the console (store, repo, taxonomy)."""
        from ui.auth import Auth
        from ui.repo import ConsoleRepo
        from ui.settings import Console, ConsoleSettings

        repo, settings = ConsoleRepo(self.ctx.store), ConsoleSettings()
        auth = Auth(repo, ttl_s=settings.session_ttl_s, security=self.ctx.config.security)
        return Console(self.ctx, repo, auth, settings)

    def job(self, user: object) -> JobStatus | None:
        require(user, Perm.ENGINEER)
        return self.jobs.latest(JOB)

    def cancel(self, user: object) -> JobStatus | None:
        require(user, Perm.ENGINEER)
        latest = self.jobs.latest(JOB)
        if latest is not None and not latest.done:
            self.jobs.cancel(latest.job_id)
        return latest

    # -- candidates, gate, promotion -----------------------------------------------------------------

    def candidates(self, user: object) -> list[str]:
        """Registered versions with a comparison (retrained here), newest first."""
        require(user, Perm.ENGINEER)
        versions = reversed(self.registry.versions())
        return [v.version for v in versions if (v.folder / "comparison.json").is_file()]

    def comparison(self, user: object, version: str) -> Comparison:
        require(user, Perm.ENGINEER)
        path = self.registry.get(version).folder / "comparison.json"
        if not path.is_file():
            raise RetrainError(f"version {version} has no comparison (not retrained here); pick a candidate")
        return Comparison.load(path)

    def gate_preview(self, user: object, version: str) -> list[str]:
        """What the gate would say now (empty: it would promote)."""
        require(user, Perm.ENGINEER)
        from training.registry import judge

        current = self.registry.current()
        return judge(self.registry.get(version).report, current.report if current else None, self.gate())

    def promote(self, user: object, version: str) -> GateDecision:
        """Promote through the gate (refusals raise ``GateRefused`` with the reasons); the station swaps."""
        who = require(user, Perm.ENGINEER)
        decision = self.registry.promote(version, self.gate(), by=who.username)
        AccessRepo(self.ctx.store).audit("model.promote", who.username, version)
        return decision

    def rollback(self, user: object) -> str:
        who = require(user, Perm.ENGINEER)
        version = self.registry.rollback(by=who.username).version
        AccessRepo(self.ctx.store).audit("model.rollback", who.username, version)
        return version


def _touches(kind: str, before: str | None, after: str | None) -> list[tuple[str, int]]:
    """(class, column) pairs a correction counts in: 0 to, 1 from, 2 not an item, 3 missed, 4 confirmed."""
    if kind == "reclass":
        return [(n, col) for n, col in ((after, 0), (before, 1)) if n]
    if kind == "not_item":
        return [(before, 2)] if before else []
    if kind == "missed_item":
        return [(after, 3)] if after else []
    if kind == "confirm":
        return [(after or before, 4)] if (after or before) else []  # type: ignore[list-item]
    return []


# ---------------------------------------------------------------------------------------------- tables


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _delta(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{b - a:+.3f}"


def summary_rows(c: Comparison) -> list[list[str]]:
    """metric, current, candidate, change."""
    cur, cand = c.base_current, c.base_candidate
    rows = []
    for label, key in (("mAP50", "map50"), ("mAP50-95", "map50_95"), ("hazard recall", "hazard_recall"),
                       ("hazard precision", "hazard_precision"), ("calibration error", "ece")):
        a, b = (getattr(cur, key) if cur else None), getattr(cand, key)
        rows.append([label, _f(a), _f(b), _delta(a, b)])
    if c.fixes_candidate is not None:
        for label, key in (("corrections mAP50", "map50"), ("corrections mAP50-95", "map50_95")):
            a = getattr(c.fixes_current, key) if c.fixes_current else None
            b = getattr(c.fixes_candidate, key)
            rows.append([label, _f(a), _f(b), _delta(a, b)])
    return rows


def class_rows(c: Comparison) -> list[list[str]]:
    """Per class AP50: on the evaluation data and on the held-out corrections, current → candidate."""
    def ap(report: Any, name: str) -> float | None:
        if report is None:
            return None
        return next((p.map50 for p in report.per_class if p.name == name and p.gt), None)

    names = [p.name for p in c.base_candidate.per_class if p.gt]
    if c.fixes_candidate is not None:
        names += [p.name for p in c.fixes_candidate.per_class if p.gt and p.name not in names]
    return [[n, _f(ap(c.base_current, n)), _f(ap(c.base_candidate, n)), _f(ap(c.fixes_current, n)),
             _f(ap(c.fixes_candidate, n))] for n in names]


def stream_rows(c: Comparison) -> list[list[str]]:
    """Per stream item recall (right stream ÷ items of the stream) at the operating threshold."""
    def recall(report: Any, i: int) -> float | None:
        if report is None:
            return None
        row = report.stream_confusion[i]
        return row[i] / sum(row) if sum(row) else None

    return [[s, _f(recall(c.base_current, i)), _f(recall(c.base_candidate, i))]
            for i, s in enumerate(c.base_candidate.stream_rows) if s != "spurious"]


# ------------------------------------------------------------------------------------------ Gradio tab


def model_markdown(m: ActiveModel) -> str:
    swap = ""
    if m.promoted and m.station and m.promoted != m.station:
        swap = " — the station swaps to the promoted model within a few seconds (no restart)"
    return (f"**Station model:** `{m.station or 'none'}` · **promoted:** `{m.promoted or 'none'}`"
            + (f" by {m.promoted_by} at {m.promoted_at}" if m.promoted else "")
            + (f" · rollback to `{m.history[-1]}` possible" if m.history else "") + swap)


def job_markdown(s: JobStatus | None) -> str:
    if s is None:
        return "No retraining started yet."
    text = f"**{s.state.value}** · {s.stage} · {s.progress:.0%} · started by {s.owner}"
    if s.message:
        text += f"\n\n{s.message}"
    if s.error:
        text += f"\n\n**error:** {s.error}"
    if isinstance(s.result, dict) and s.result.get("version"):
        text += f"\n\nregistered candidate `{s.result['version']}`: compare it below, then promote or not"
    return text


def _frame(rows: list[list[Any]], columns: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


class _Handlers:
    """The tab's event handlers: permission and refusals become Gradio errors or messages."""

    def __init__(self, desk: EngineerDesk) -> None:
        import gradio as gr

        from training.registry import RegistryError
        from ui.auth import AuthError
        from ui.jobs import JobError

        self.desk, self.gr = desk, gr
        self.refused = (AuthError, RetrainError, RegistryError, JobError, ValueError, OSError)
        self.not_allowed = AuthError

    def refresh(self, user: Any) -> tuple[object, ...]:
        try:
            rows = [[r.class_name, r.corrected_to, r.corrected_from, r.not_item, r.missed, r.confirmed]
                    for r in self.desk.correction_counts(user)]
            return (model_markdown(self.desk.active_model(user)), _frame(rows, list(COUNT_COLUMNS)),
                    self.gr.update(choices=self.desk.candidates(user)))
        except self.refused as exc:
            raise self.gr.Error(str(exc)) from None

    def download(self, kind: str, user: Any) -> str:
        """The file for Gradio's download, offered to this user only and removed once downloaded."""
        try:
            path = self.desk.corrections_csv(user) if kind == "csv" else self.desk.corrections_zip(user)
        except self.refused as exc:
            raise self.gr.Error(str(exc)) from None
        return self.desk.ctx.downloads.offer(path, require(user, Perm.ENGINEER).username, once=True)

    def start(self, n: float, replay: float, dev: str, user: Any) -> str:
        try:
            opts = RetrainOptions(epochs=int(n), replay_n=int(replay), device=dev)
            return job_markdown(self.desk.start_retrain(user, opts))
        except self.refused as exc:
            raise self.gr.Error(str(exc)) from None

    def cancel(self, user: Any) -> str:
        try:
            return job_markdown(self.desk.cancel(user))
        except self.refused as exc:
            raise self.gr.Error(str(exc)) from None

    def tick(self, user: Any, last: str) -> tuple[object, ...]:
        try:
            status, active = self.desk.job(user), self.desk.active_model(user)
        except self.not_allowed:
            return "", "", "", self.gr.update(), last  # not an engineer: nothing to show, no error each tick
        key = f"{status.job_id}:{status.state.value}" if status else ""
        choices = self.gr.update(choices=self.desk.candidates(user)) if key != last else self.gr.update()
        log_text = "\n".join(status.log[-40:]) if status else ""
        return model_markdown(active), job_markdown(status), log_text, choices, key

    def candidate(self, version: str | None, user: Any) -> tuple[object, ...]:
        if not version:
            return _frame([], []), _frame([], []), _frame([], []), ""
        try:
            c, reasons = self.desk.comparison(user, version), self.desk.gate_preview(user, version)
        except self.refused as exc:
            raise self.gr.Error(str(exc)) from None
        gate = "**Gate:** would promote" if not reasons else "**Gate would refuse:** " + "; ".join(reasons)
        current = f"current ({c.current or 'none'})"
        return (_frame(summary_rows(c), ["metric", current, "candidate", "change"]),
                _frame(class_rows(c), list(CLASS_COLUMNS)),
                _frame(stream_rows(c), ["stream", "current", "candidate"]), gate)

    def promote(self, version: str | None, user: Any) -> str:
        if not version:
            raise self.gr.Error("pick a candidate first")
        try:
            d = self.desk.promote(user, version)
        except self.refused as exc:
            return f"**Not promoted:** {exc}"
        return f"promoted `{d.version}` (was `{d.current or 'none'}`); the station swaps to it, no restart"

    def rollback(self, user: Any) -> str:
        try:
            return f"rolled back to `{self.desk.rollback(user)}`; the station swaps back, no restart"
        except self.refused as exc:
            return f"**Not rolled back:** {exc}"


def build_engineer_tab(ctx: ConsoleContext, user_state: Any) -> None:
    """The engineer tab (engineers, admins): corrections per class, retraining, comparison, gate, rollback."""
    import gradio as gr

    h = _Handlers(EngineerDesk(ctx))
    model_md = gr.Markdown()
    gr.Markdown("#### Corrected data per class")
    counts = gr.Dataframe(interactive=False, headers=list(COUNT_COLUMNS))
    with gr.Row():
        refresh_btn = gr.Button("Refresh")
        csv_btn = gr.Button("Download counts (CSV)")
        zip_btn = gr.Button("Download dataset (YOLO zip)")
    download = gr.File(label="Download", interactive=False, height=90)
    gr.Markdown("#### Retrain on the corrections")
    with gr.Row():
        epochs = gr.Number(10, label="Epochs", precision=0, minimum=1)
        replay_n = gr.Number(200, label="Replay images from the base data", precision=0, minimum=0)
        device = gr.Textbox("cpu", label="Device (cpu or CUDA index)")
    with gr.Row():
        start_btn = gr.Button("Start retraining", variant="primary")
        cancel_btn = gr.Button("Cancel", variant="stop")
    job_md = gr.Markdown()
    job_log = gr.Textbox(label="Log (latest lines)", lines=8, max_lines=8, interactive=False)
    gr.Markdown("#### Candidate beside the current model")
    candidate = gr.Dropdown(choices=[], label="Candidate", allow_custom_value=False)
    summary = gr.Dataframe(interactive=False, label="Summary (evaluation data of the current model)",
                           headers=["metric", "current", "candidate", "change"])
    per_class = gr.Dataframe(interactive=False, label="AP50 per class", headers=list(CLASS_COLUMNS))
    per_stream = gr.Dataframe(interactive=False, label="Item recall per stream",
                              headers=["stream", "current", "candidate"])
    gate_md = gr.Markdown()
    with gr.Row():
        promote_btn = gr.Button("Promote through the gate", variant="primary")
        rollback_btn = gr.Button("Roll back to the previous model")
    action_md = gr.Markdown()
    seen = gr.State("")

    refresh_btn.click(h.refresh, [user_state], [model_md, counts, candidate])
    csv_btn.click(lambda u: h.download("csv", u), [user_state], download)
    zip_btn.click(lambda u: h.download("zip", u), [user_state], download)
    start_btn.click(h.start, [epochs, replay_n, device, user_state], job_md)
    cancel_btn.click(h.cancel, [user_state], job_md)
    gr.Timer(2.0).tick(h.tick, [user_state, seen], [model_md, job_md, job_log, candidate, seen])
    candidate.change(h.candidate, [candidate, user_state], [summary, per_class, per_stream, gate_md])
    promote_btn.click(h.promote, [candidate, user_state], action_md)
    rollback_btn.click(h.rollback, [user_state], action_md)
