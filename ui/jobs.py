"""Background jobs of the console (retraining): a thread per job, progress and log lines the views poll.

A job's work is a callable taking a ``JobContext``; ``process_runner`` makes one that runs a child process
(the retraining pipeline, so torch never shares the station's process) and turns the child's
``@sortloop {json}`` stdout lines into progress, a result or an error. Any other output line is kept as log.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from station.events import new_id
from station.store import JsonValue

log = logging.getLogger(__name__)

MARK = "@sortloop "
LOG_LINES = 200


class JobError(RuntimeError):
    """A job could not be started or found; the message names the job and the fix."""


class JobBusyError(JobError):
    """A job of that kind is already running."""


class JobFailedError(RuntimeError):
    """Raised inside a job's work to fail it with a message for the user."""


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job for the views."""

    job_id: str
    name: str
    owner: str
    state: JobState
    progress: float
    stage: str
    message: str
    started_at: float
    finished_at: float | None
    error: str | None
    log: list[str]
    result: JsonValue = None
    stages: list[str] = field(default_factory=list)
    """Stages the job went through, in order."""

    @property
    def done(self) -> bool:
        return self.state is not JobState.RUNNING


@dataclass
class _Job:
    job_id: str
    name: str
    owner: str
    state: JobState = JobState.RUNNING
    progress: float = 0.0
    stage: str = "starting"
    message: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    result: JsonValue = None
    stages: list[str] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen[str] | None = None
    thread: threading.Thread | None = None


class JobContext:
    """What a job's work sees: report progress, add log lines, learn of a cancel request."""

    def __init__(self, job: _Job, lock: threading.Lock) -> None:
        self._job, self._lock = job, lock

    def report(self, fraction: float, message: str = "", stage: str | None = None) -> None:
        with self._lock:
            self._job.progress = min(1.0, max(self._job.progress, float(fraction)))
            self._job.message = message or self._job.message
            if stage and stage != self._job.stage:
                self._job.stage = stage
                self._job.stages.append(stage)

    def log(self, line: str) -> None:
        with self._lock:
            self._job.log.append(line.rstrip())

    def tail(self, n: int) -> list[str]:
        """The last ``n`` non-empty log lines."""
        with self._lock:
            return [ln for ln in self._job.log if ln.strip()][-n:]

    @property
    def cancelled(self) -> bool:
        return self._job.cancel.is_set()

    def attach(self, process: subprocess.Popen[str]) -> None:
        """The child process a cancel must stop."""
        with self._lock:
            self._job.process = process


Work = Callable[[JobContext], JsonValue]


class JobManager:
    """Starts jobs, one running job per name at a time; keeps the finished ones for the views."""

    def __init__(self, keep: int = 20) -> None:
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._keep = keep

    def start(self, name: str, owner: str, work: Work) -> JobStatus:
        with self._lock:
            busy = [j for j in self._jobs.values() if j.name == name and j.state is JobState.RUNNING]
            if busy:
                raise JobBusyError(f"a {name} job ({busy[0].job_id[:8]}, started by {busy[0].owner}) is "
                                   "already running; wait for it or cancel it")
            job = _Job(new_id(), name, owner)
            self._jobs[job.job_id] = job
            self._forget_old()
        job.thread = threading.Thread(target=self._run, args=(job, work), name=f"sortloop-job-{name}",
                                      daemon=True)
        job.thread.start()
        log.info("job %s (%s) started by %s", job.job_id, name, owner)
        return self.status(job.job_id)

    def _run(self, job: _Job, work: Work) -> None:
        ctx = JobContext(job, self._lock)
        try:
            result = work(ctx)
        except Exception as exc:  # any failure of the work is the job's failure, shown to the user
            state = JobState.CANCELLED if job.cancel.is_set() else JobState.FAILED
            self._finish(job, state, error=str(exc) or type(exc).__name__)
            log.warning("job %s (%s) %s: %s", job.job_id, job.name, state.value, exc)
            return
        if job.cancel.is_set():
            self._finish(job, JobState.CANCELLED, error="cancelled")
            return
        self._finish(job, JobState.SUCCEEDED, result=result)

    def _finish(self, job: _Job, state: JobState, *, error: str | None = None,
                result: JsonValue = None) -> None:
        with self._lock:
            job.state, job.error, job.result, job.finished_at = state, error, result, time.time()
            job.process = None
            if state is JobState.SUCCEEDED:
                job.progress, job.stage = 1.0, "done"
                job.stages.append("done")

    def _forget_old(self) -> None:
        done = sorted((j for j in self._jobs.values() if j.state is not JobState.RUNNING),
                      key=lambda j: j.started_at)
        for j in done[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[j.job_id]

    def status(self, job_id: str) -> JobStatus:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobError(f"job {job_id} is unknown (finished long ago or never started); start again")
            return JobStatus(job.job_id, job.name, job.owner, job.state, round(job.progress, 4), job.stage,
                             job.message, job.started_at, job.finished_at, job.error, list(job.log),
                             job.result, list(job.stages))

    def latest(self, name: str) -> JobStatus | None:
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.name == name]
        return self.status(max(jobs, key=lambda j: j.started_at).job_id) if jobs else None

    def cancel(self, job_id: str) -> None:
        """Ask the job to stop; a child process is terminated."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobError(f"job {job_id} is unknown; nothing to cancel")
            job.cancel.set()
            process = job.process
        if process is not None and process.poll() is None:
            process.terminate()

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None and job.thread is not None:
            job.thread.join(timeout)
        return self.status(job_id)


# ------------------------------------------------------------------------------------- child processes


def emit(**event: JsonValue) -> None:
    """In a child process: one progress/result/error event for the parent (see ``process_runner``)."""
    print(MARK + json.dumps(event), flush=True)


def _handle(line: str, ctx: JobContext, outcome: dict[str, JsonValue]) -> None:
    if not line.startswith(MARK):
        ctx.log(line)
        return
    try:
        event = json.loads(line[len(MARK):])
    except json.JSONDecodeError:
        ctx.log(line)
        return
    if "progress" in event:
        ctx.report(float(event["progress"]), str(event.get("message", "")), event.get("stage") or None)
    for key in ("result", "error"):
        if key in event:
            outcome[key] = event[key]


def process_runner(argv: Sequence[str], *, cwd: Path | None = None,
                   env: dict[str, str] | None = None) -> Work:
    """Work that runs ``argv`` and follows its ``@sortloop`` events; fails with the child's error or log."""

    def work(ctx: JobContext) -> JsonValue:
        outcome: dict[str, JsonValue] = {}
        proc = subprocess.Popen(list(argv), cwd=cwd, env={**os.environ, **(env or {})}, text=True,  # noqa: S603
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        ctx.attach(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            _handle(line.rstrip("\n"), ctx, outcome)
        code = proc.wait()
        if ctx.cancelled:
            raise JobFailedError("cancelled")
        if code != 0 or "error" in outcome:
            detail = outcome.get("error") or " | ".join(ctx.tail(3)) or "no output"
            raise JobFailedError(f"exit code {code}: {detail}")
        return outcome.get("result")

    return work

