"""Runs: every start of the station is a run with an id and a kind, recorded in its store.

``live`` is the station at work (``make run``, a served run, a headless run on a camera or file): it keeps the
configured store (``var/sortloop.db``), which reports and /impact read. A ``scorecard`` run (headless on the
simulator, ending in a JSON scorecard) and a ``bench`` run get a store of their own under
``store.runs_dir/<run id>/``, unless told otherwise (``sortloop run --store URL``); even in a shared store their
items carry their run id, and reports read live runs only.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from station.config import StationConfig
from station.store.records import RunKind


@dataclass(frozen=True)
class RunPlan:
    """The run about to start: its id, kind and the config it runs with (its own store where it has one)."""

    run_id: str
    kind: RunKind
    config: StationConfig


def new_run_id(kind: RunKind, now: float | None = None) -> str:
    """A sortable, readable id: UTC start time, kind, 6 random hex digits (``20261205T171500Z-scorecard-3fa2c1``)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{kind}-{uuid.uuid4().hex[:6]}"


def plan_run(cfg: StationConfig, kind: RunKind, store_url: str | None = None) -> RunPlan:
    """The run's id and config: ``store_url`` when given; else a live run keeps the configured store and any
    other kind gets ``<runs_dir>/<run id>/sortloop.db`` with its evidence and journal beside it."""
    run_id = new_run_id(kind)
    data = cfg.model_dump()
    if store_url is not None:
        data["store"]["url"] = store_url
    elif kind != "live":
        folder = cfg.resolve(cfg.store.runs_dir) / run_id
        data["store"].update(url=f"sqlite:///{folder / 'sortloop.db'}", evidence_dir=str(folder / "evidence"))
        if cfg.store.journal is not None:  # never replay the live station's journal into this run, or back
            data["store"]["journal"] = str(folder / "journal.jsonl")
    return RunPlan(run_id, kind, StationConfig.model_validate(data))
