"""Evidence crops: one JPEG per item, written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from station.store.records import StoreError


def crop_relpath(item_id: str, decided_at: float) -> str:
    """Where an item's crop lives under the evidence folder: one folder per UTC day."""
    return f"{time.strftime('%Y-%m-%d', time.gmtime(decided_at))}/{item_id}.jpg"


def write_jpeg(path: Path, image: npt.NDArray[np.uint8], quality: int) -> None:
    """Encode ``image`` (BGR or grey) as JPEG at ``path``; readers never see a half-written file."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise StoreError(f"cannot encode the crop for {path.name} as JPEG (shape {image.shape}, "
                         f"dtype {image.dtype}); pass an HxW or HxWx3 uint8 image")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(buf.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
