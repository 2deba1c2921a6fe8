"""Console settings (pydantic, extra="forbid") and the ``Console`` bundle the views share.

Settings come from ``configs/console.yaml`` when it exists (or the file named by ``SORTLOOP_CONSOLE_CONFIG``),
else the defaults; the station's own config stays the console-free ``StationConfig``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from station.config import ROOT
from ui.context import ConsoleContext

if TYPE_CHECKING:
    from station.live import LiveView
    from ui.auth import Auth
    from ui.repo import ConsoleRepo

DEFAULT_FILE = ROOT / "configs" / "console.yaml"


class ConsoleConfigError(ValueError):
    """The console settings file is invalid; the message names the key and the fix."""


class ReviewWeights(BaseModel):
    """How much each reason adds to an item's review priority."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    margin: float = Field(1.0, ge=0, description="× (1 − margin between the two top classes' vote shares).")
    margin_below: float = Field(0.3, ge=0, le=1, description="A margin below this is named in the why column.")
    disagreement: float = Field(0.8, ge=0, description="× normalised entropy of the track's class votes.")
    disagreement_above: float = Field(0.4, ge=0, le=1, description="Entropy above this is named in the why column.")
    hazard_near: float = Field(1.5, ge=0, description="Added when the battery vote share is near the hazard "
                               "doubt threshold without being a hazard class.")
    hazard_band: float = Field(0.1, ge=0, le=1, description="'Near' means within this of decision.hazard_doubt.")
    manual: float = Field(1.0, ge=0, description="Added for items routed to manual inspection.")
    conflict: float = Field(5.0, ge=0, description="Added when people disagree about the item.")


class AnswerRules(BaseModel):
    """What an operator may take back: their own answers only, the last few, within a short window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    undo_window_s: float = Field(120.0, gt=0, le=3600, description="U (undo) reaches answers at most this old "
                                 "(s); an older answer is changed on purpose instead (C, then the new answer).")
    undo_depth: int = Field(5, ge=1, le=50, description="U reaches at most this many of the user's latest answers "
                            "(undone ones count), so a run of U stops instead of unpicking a whole shift.")


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    session_ttl_s: float = Field(8 * 3600, gt=0, description="A login lasts this long (s); then log in again.")
    cookie_secure: bool = Field(False, description="Send the session cookie over HTTPS only (set behind TLS).")
    poll_s: float = Field(1.5, ge=1, le=2, description="Refresh period of the live parts of the console (s).")
    strip_size: int = Field(12, ge=1, le=50, description="Latest decisions shown in the operator's strip.")
    shortcut_classes: list[str] | None = Field(None, max_length=9, description="Classes on keys 1–9 (default: "
                                               "the first nine taxonomy classes).")
    review_window_s: float = Field(24 * 3600, gt=0, description="The review queue looks at items this recent (s).")
    review_limit: int = Field(500, ge=1, le=1000, description="At most this many recent items are ranked.")
    review_weights: ReviewWeights = Field(default_factory=ReviewWeights, description="Review priority weights.")
    answers: AnswerRules = Field(default_factory=AnswerRules, description="Undo window and depth.")
    container: str = Field("Q1", min_length=1, description="Default quarantine container id.")
    quarantine_rows: int = Field(200, ge=1, description="Rows of the quarantine log shown on screen.")


def load_settings(path: str | Path | None = None) -> ConsoleSettings:
    """Settings from ``path``, ``$SORTLOOP_CONSOLE_CONFIG`` or configs/console.yaml; defaults when none exists."""
    chosen = path or os.environ.get("SORTLOOP_CONSOLE_CONFIG") or DEFAULT_FILE
    p = Path(chosen)
    if not p.is_file():
        if path is not None:
            raise ConsoleConfigError(f"console settings {p} not found; pass an existing YAML file")
        return ConsoleSettings()
    try:
        return ConsoleSettings.model_validate(yaml.safe_load(p.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConsoleConfigError(f"{p}: invalid console settings: {exc}") from exc


@dataclass
class Console:
    """What the console's views share: context (store, taxonomy, config), repo, auth, settings, live view."""

    ctx: ConsoleContext
    repo: ConsoleRepo
    auth: Auth
    settings: ConsoleSettings
    live: LiveView | None = None

    @property
    def frames_dir(self) -> Path:
        """Frames grabbed for missed-item reports (under the evidence folder, beside the crops)."""
        return self.ctx.store.evidence_dir / "console" / "frames"

    @property
    def shortcut_classes(self) -> list[str]:
        return list(self.settings.shortcut_classes or self.ctx.taxonomy.names[:9])
