"""Score a run against the simulator's ground truth: missed, doubled, wrong-stream, hazards, ejector timing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np

from station.config import RoutingConfig
from station.events import Actuation, Decision
from station.simulator.belt import TruthItem

MATCH_WINDOW_S = 0.3
"""A decision matches a ground-truth item whose line time is at most this far from its crossing time."""


class ScoreError(ValueError):
    """The inputs cannot be scored (e.g. an actuation names a bin with no known ejector distance)."""


@dataclass
class Scorecard:
    """How a run did against the ground truth between ``start`` and ``end``."""

    items: int
    decided: int
    missed: int
    doubled: int
    wrong_stream: int
    hazards_missed: int
    hazards_false: int
    """Items flagged as a battery hazard (to the hazard bin, or to manual as a doubt) that carry none."""
    false_decisions: int
    actuations: int
    actuations_early: int
    actuations_late: int
    actuation_error_ms_p50: float
    actuation_error_ms_max: float
    stream_accuracy: float
    missed_rate: float

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """A printable two-column table."""
        rows = []
        for f in fields(self):
            v = getattr(self, f.name)
            rows.append((f.name, f"{v:.3f}" if isinstance(v, float) else str(v)))
        width = max(len(k) for k, _ in rows)
        line = "-" * (width + 12)
        return "\n".join([line, *(f"{k:<{width}}  {v:>9}" for k, v in rows), line])


def match_truth(truth: list[TruthItem], d: Decision) -> TruthItem | None:
    """The ground-truth item nearest in line time whose lateral extent holds the decision box's centre."""
    cy = (d.box[1] + d.box[3]) / 2
    best, best_dt = None, MATCH_WINDOW_S
    for t in truth:
        dt = abs(t.line_time - d.crossed_at)
        if dt <= best_dt and t.y_px - t.height_px / 2 <= cy <= t.y_px + t.height_px / 2:
            best, best_dt = t, dt
    return best


def _timing(actuations: list[Actuation], owner: dict[str, TruthItem], distances: dict[str, float],
            tolerance_s: float, ticks_to_time: Callable[[int], float] | None) -> tuple[int, int, int, list[float]]:
    count = early = late = 0
    errors: list[float] = []
    for a in actuations:
        item = owner.get(a.item_id)
        if item is None:
            continue
        if a.bin not in distances:
            raise ScoreError(f"actuation {a.actuation_id} names bin {a.bin!r}, which has no ejector distance; "
                             f"pass bin_distances with it (known: {sorted(distances)})")
        count += 1
        fired = a.fire_at
        if ticks_to_time is not None and a.fire_at_ticks is not None:
            fired = ticks_to_time(a.fire_at_ticks)  # the PLC fires on the encoder count
        err = fired - item.ejector_time(distances[a.bin])
        errors.append(abs(err) * 1000.0)
        early += err < -tolerance_s
        late += err > tolerance_s
    return count, early, late, errors


def score(truth: list[TruthItem], decisions: list[Decision], actuations: list[Actuation], *, start: float,
          end: float, tolerance_s: float = 0.05, bin_distances: dict[str, float] | None = None,
          ticks_to_time: Callable[[int], float] | None = None) -> Scorecard:
    """Compare decisions and actuations with the ground-truth items whose line time is in [start, end].

    ``bin_distances`` maps bin name → ejector distance (m); by default the default routing bins.
    ``ticks_to_time`` (the simulator's encoder) scores commands that carry an encoder target by when the
    encoder reaches it, as the PLC fires them; without it, by their ``fire_at`` time.
    """
    distances = bin_distances if bin_distances is not None else {
        name: b.distance_m for name, b in RoutingConfig().bins.items()}
    counted = {t.item_id for t in truth if start <= t.line_time <= end}
    matched: dict[int, list[Decision]] = {i: [] for i in counted}
    owner: dict[str, TruthItem] = {}
    false_decisions = 0
    for d in sorted(decisions, key=lambda d: d.crossed_at):
        item = match_truth(truth, d)
        if item is None:
            false_decisions += start <= d.crossed_at <= end
        elif item.item_id in counted:
            matched[item.item_id].append(d)
            owner[d.item_id] = item
    by_id = {t.item_id: t for t in truth}
    decided = sum(1 for ds in matched.values() if ds)
    doubled = sum(1 for ds in matched.values() if len(ds) > 1)
    correct = sum(1 for i, ds in matched.items() if ds and ds[0].stream is by_id[i].stream)
    hazards_missed = sum(1 for i, ds in matched.items() if by_id[i].hazard == "battery"
                         and (not ds or ds[0].hazard != "battery"))
    hazards_false = sum(1 for i, ds in matched.items() if ds and ds[0].hazard == "battery"
                        and by_id[i].hazard != "battery")
    n_act, early, late, errors = _timing(actuations, owner, distances, tolerance_s, ticks_to_time)
    items = len(counted)
    return Scorecard(
        items=items, decided=decided, missed=items - decided, doubled=doubled, wrong_stream=decided - correct,
        hazards_missed=hazards_missed, hazards_false=hazards_false, false_decisions=false_decisions, actuations=n_act,
        actuations_early=early, actuations_late=late,
        actuation_error_ms_p50=float(np.median(errors)) if errors else 0.0,
        actuation_error_ms_max=float(max(errors)) if errors else 0.0,
        stream_accuracy=correct / items if items else 0.0, missed_rate=(items - decided) / items if items else 0.0)
