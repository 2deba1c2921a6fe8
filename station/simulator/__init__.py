"""Conveyor simulator: procedural items, a moving belt with ground truth, a scorecard, and dataset rendering."""

from station.simulator.belt import ConveyorSimulator, SimulatorError, TruthItem
from station.simulator.items import ItemMaker, Sprite, SpriteError, draw_item
from station.simulator.render import RenderError, RenderSummary, render_dataset
from station.simulator.score import Scorecard, ScoreError, match_truth, score

__all__ = [
    "ConveyorSimulator",
    "ItemMaker",
    "RenderError",
    "RenderSummary",
    "ScoreError",
    "Scorecard",
    "SimulatorError",
    "Sprite",
    "SpriteError",
    "TruthItem",
    "draw_item",
    "match_truth",
    "render_dataset",
    "score",
]
