"""What every console view needs: the store, the running station (when there is one), config and taxonomy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from station.config import StationConfig
from station.taxonomy import Taxonomy
from ui.downloads import Offers

if TYPE_CHECKING:
    from station.pipeline import Station
    from station.store import Store


@dataclass
class ConsoleContext:
    """Handed to each tab builder. ``station`` is None when the console runs without a live pipeline
    (e.g. a manager's read-only install): views that need it say so instead of failing."""

    config: StationConfig
    taxonomy: Taxonomy
    store: Store
    station: Station | None = None
    downloads: Offers = field(default_factory=Offers)
    """Files handed to Gradio for download, and who may fetch them (``ui.downloads``)."""

    @property
    def registry(self) -> Path:
        return self.config.resolve(self.config.model.registry)

    @property
    def work_dir(self) -> Path:
        """Where the console writes exports and retraining runs (var/ by default)."""
        return self.config.resolve("var/console")
