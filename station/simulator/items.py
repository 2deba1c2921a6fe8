"""Item sprites: procedural painters for every taxonomy class, and real RGBA cut-outs from a folder.

Each call draws a new item from a seeded ``numpy.random.Generator``: random size (in metres, mapped by
``px_per_m``), colour, variant, rotation and shading, returned as a :class:`Sprite` (BGR + alpha).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from station.simulator._paint import SS, Canvas, Sprite, crop, finish, resize, rotate
from station.simulator.items_containers import paint_can, paint_glass, paint_metal, paint_plastic
from station.simulator.items_devices import (
    paint_e_device,
    paint_keyboard,
    paint_laptop,
    paint_monitor,
    paint_mouse,
    paint_phone,
)
from station.simulator.items_parts import paint_battery, paint_cable, paint_pcb
from station.simulator.items_soft import paint_medical, paint_paper, paint_textile

log = logging.getLogger(__name__)

Painter = Callable[[np.random.Generator, float], Canvas]

PAINTERS: dict[str, Painter] = {
    "battery": paint_battery, "phone": paint_phone, "laptop": paint_laptop, "keyboard": paint_keyboard,
    "mouse": paint_mouse, "monitor": paint_monitor, "pcb": paint_pcb, "cable": paint_cable,
    "e_device": paint_e_device, "plastic": paint_plastic, "can": paint_can, "metal": paint_metal,
    "glass": paint_glass, "paper": paint_paper, "textile": paint_textile, "medical": paint_medical,
}
"""Procedural painter of each class: ``painter(rng, px_per_m × SS) -> Canvas`` (upright, supersampled)."""

NOMINAL_SIZE_M: dict[str, tuple[float, float]] = {
    "battery": (0.04, 0.15), "phone": (0.11, 0.17), "laptop": (0.28, 0.38), "keyboard": (0.3, 0.45),
    "mouse": (0.09, 0.13), "monitor": (0.3, 0.5), "pcb": (0.06, 0.2), "cable": (0.15, 0.4),
    "e_device": (0.08, 0.25), "plastic": (0.1, 0.3), "can": (0.1, 0.17), "metal": (0.06, 0.25),
    "glass": (0.12, 0.3), "paper": (0.08, 0.28), "textile": (0.15, 0.45), "medical": (0.08, 0.2),
}
"""Longest side (m) of a real item of each class: the scale given to cut-outs of unknown size."""


class SpriteError(ValueError):
    """An item cannot be drawn: unknown class, or a cut-out folder or file that is missing or unusable."""


def draw_item(class_name: str, rng: np.random.Generator, px_per_m: float = 1000.0, *,
              angle: float | None = None) -> Sprite:
    """A new procedural item of ``class_name``; ``angle`` (degrees) fixes the rotation, else random."""
    painter = PAINTERS.get(class_name)
    if painter is None:
        raise SpriteError(f"no procedural painter for class {class_name!r} (have: {', '.join(PAINTERS)}); "
                          "give the simulator cut-outs (sprites: folder with a {class}/ subfolder) instead")
    canvas = painter(rng, px_per_m * SS)
    turn = float(rng.uniform(0, 360)) if angle is None else angle
    return finish(canvas, class_name, turn, flip=False)  # no mirroring: painted text would read backwards


class CutoutLibrary:
    """Real RGBA cut-outs in ``folder/<class_name>/*.png``, drawn at their class's nominal size."""

    def __init__(self, folder: str | Path, known: Iterable[str]) -> None:
        root = Path(folder)
        if not root.is_dir():
            raise SpriteError(f"cut-out folder {root} not found; set simulator.sprites to a folder holding "
                              "one subfolder of RGBA .png files per class")
        known_set = set(known)
        self.files: dict[str, list[Path]] = {}
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if sub.name not in known_set:
                log.warning("cut-out folder %s: %s is not a taxonomy class; skipped", root, sub.name)
                continue
            pngs = sorted(sub.glob("*.png"))
            if pngs:
                self.files[sub.name] = pngs
        if not self.files:
            raise SpriteError(f"cut-out folder {root} has no <class>/*.png files for any taxonomy class")
        self._cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def classes(self) -> list[str]:
        return list(self.files)

    def _load(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        if path not in self._cache:
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise SpriteError(f"cut-out {path} cannot be read as an image; replace or remove it")
            if raw.dtype != np.uint8:
                raw = (raw / 257).astype(np.uint8)
            if raw.ndim == 2 or raw.shape[2] != 4:
                log.warning("cut-out %s has no alpha channel; it is pasted as an opaque rectangle", path)
                bgr = cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR) if raw.ndim == 2 else raw[..., :3]
                raw = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
            img, alpha = crop(np.ascontiguousarray(raw[..., :3]), np.ascontiguousarray(raw[..., 3]))
            self._cache[path] = (img, alpha)
        return self._cache[path]

    def draw(self, class_name: str, rng: np.random.Generator, px_per_m: float = 1000.0, *,
             angle: float | None = None) -> Sprite:
        files = self.files.get(class_name)
        if not files:
            raise SpriteError(f"no cut-outs for class {class_name!r} (have: {', '.join(self.files)})")
        img, alpha = self._load(files[int(rng.integers(len(files)))])
        lo, hi = NOMINAL_SIZE_M.get(class_name, (0.1, 0.25))
        scale = float(rng.uniform(lo, hi)) * px_per_m / max(img.shape[:2])
        img, alpha = resize(img, alpha, round(img.shape[1] * scale), round(img.shape[0] * scale))
        if rng.random() < 0.5:
            img, alpha = np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(alpha[:, ::-1])
        turn = float(rng.uniform(0, 360)) if angle is None else angle
        img, alpha = crop(*rotate(img, alpha, turn))
        return Sprite(image=img, alpha=alpha, class_name=class_name)


class ItemMaker:
    """Draws items of the allowed classes: real cut-outs when a folder is given, procedural otherwise."""

    def __init__(self, classes: list[str], sprites: str | Path | None = None) -> None:
        self.cutouts = CutoutLibrary(sprites, classes) if sprites else None
        if self.cutouts is not None:
            missing = [c for c in classes if c not in self.cutouts.files]
            if missing and len(missing) < len(classes):
                log.info("cut-outs cover %s; classes without cut-outs are left out: %s",
                         self.cutouts.classes, missing)
            classes = [c for c in classes if c in self.cutouts.files]
            if not classes:
                raise SpriteError(f"cut-out folder {sprites} has none of the requested classes")
        else:
            unknown = [c for c in classes if c not in PAINTERS]
            if unknown:
                raise SpriteError(f"no procedural painter for {unknown}; give cut-outs (simulator.sprites) or "
                                  "leave these classes out (simulator.classes)")
        if not classes:
            raise SpriteError("no classes to draw; simulator.classes is empty")
        self.classes = classes

    def draw(self, class_name: str, rng: np.random.Generator, px_per_m: float) -> Sprite:
        if self.cutouts is not None:
            return self.cutouts.draw(class_name, rng, px_per_m)
        return draw_item(class_name, rng, px_per_m)


def contact_sheet(classes: list[str], *, per_class: int = 6, seed: int = 0, cell: int = 200,
                  px_per_m: float = 1000.0) -> np.ndarray:
    """A grid image of procedural items, one row per class, for eyeballing the painters."""
    rng = np.random.default_rng(seed)
    sheet = np.full((cell * len(classes), cell * (per_class + 1), 3), 110, np.uint8)
    for r, name in enumerate(classes):
        cv2.putText(sheet, name, (8, r * cell + cell // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        for k in range(per_class):
            sp = draw_item(name, rng, px_per_m)
            f = min(1.0, (cell - 8) / max(sp.width, sp.height))
            img, alpha = resize(sp.image, sp.alpha, max(1, round(sp.width * f)), max(1, round(sp.height * f)))
            y, x = r * cell + (cell - img.shape[0]) // 2, (k + 1) * cell + (cell - img.shape[1]) // 2
            roi = sheet[y:y + img.shape[0], x:x + img.shape[1]]
            a = alpha.astype(np.float32)[..., None] / 255
            roi[:] = (roi * (1 - a) + img * a).astype(np.uint8)
    return sheet
