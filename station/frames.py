"""A captured frame: the image plus the clock and encoder reading taken with it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Frame:
    """One image from a source.

    ``timestamp`` is seconds on the source's clock (the simulator's clock for the simulator, the
    monotonic clock for live sources); ``ticks`` is the belt encoder count when the source has one.
    """

    image: npt.NDArray[np.uint8]
    index: int
    timestamp: float
    ticks: int | None = None
    source: str = ""
    captured: float = field(default_factory=time.monotonic, compare=False)
    """Monotonic time at which the station received the frame (for latency figures)."""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
