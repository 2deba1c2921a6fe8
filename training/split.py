"""Train/val/test splits without leakage.

Images are grouped before they are split: two images whose perceptual hashes (``imagehash.phash``, 64 bit)
differ in at most ``threshold`` bits are near-duplicates and join one group (connected components), and
images that carry the same explicit ``group`` (augmented or synthetic copies carry their parent's) join it
too. Whole groups are then assigned to splits, deterministically for a seed, aiming at target fractions
within each stratum (source × allowed splits).
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ALL_SPLITS = frozenset(SPLITS)
HELDOUT = frozenset({"val", "test"})
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_THRESHOLD = 6


class SplitError(ValueError):
    """Split settings are invalid; the message says which and how to fix them."""


def phash64(path: Path) -> int:
    """64-bit perceptual hash of an image (0 for an unreadable image, which validation reports)."""
    import imagehash
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.draft("L", (128, 128))  # JPEG decodes at a reduced scale: same hash class, much faster
            return int(str(imagehash.phash(im.convert("L"))), 16)
    except (OSError, UnidentifiedImageError, ValueError):
        return 0


def phashes(paths: Sequence[Path], cache_path: Path | None = None) -> list[int]:
    """Hashes of ``paths``, read from and added to a JSON cache keyed by path, size and mtime."""
    cache: dict[str, str] = {}
    if cache_path is not None and cache_path.is_file():
        cache = json.loads(cache_path.read_text())
    out, dirty = [], False
    for p in paths:
        st = p.stat() if p.exists() else None
        key = f"{p}|{st.st_size}|{st.st_mtime_ns}" if st else str(p)
        if key not in cache:
            cache[key] = f"{phash64(p):016x}"
            dirty = True
        out.append(int(cache[key], 16))
    if cache_path is not None and dirty:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache))
    return out


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_indices(hashes: Sequence[int], explicit: Sequence[str], threshold: int = DEFAULT_THRESHOLD) -> list[int]:
    """Component id (the smallest member index) of each item: near-duplicate hashes or equal explicit groups."""
    n = len(hashes)
    uf = _UnionFind(n)
    first: dict[str, int] = {}
    for i, g in enumerate(explicit):
        if g:
            uf.union(first.setdefault(g, i), i)
    h = np.array(hashes, dtype=np.uint64)
    valid = h != 0
    for i in range(n - 1):
        if not valid[i]:
            continue
        near = np.flatnonzero((np.bitwise_count(h[i + 1:] ^ h[i]) <= threshold) & valid[i + 1:])
        for j in near:
            uf.union(i, i + 1 + int(j))
    return [uf.find(i) for i in range(n)]


@dataclass
class SplitPlan:
    """Split of each item plus the grouping that produced it."""

    splits: list[str]
    groups: list[int]
    conflicts: int = 0
    """Groups whose members asked for incompatible splits (resolved towards held-out)."""
    sizes: dict[str, int] = field(default_factory=dict)


def _group_allowed(members: list[int], allowed: Sequence[frozenset[str]]) -> tuple[frozenset[str], bool]:
    sets = [allowed[i] for i in members]
    inter = frozenset.intersection(*sets)
    if inter:
        return inter, False
    held = [s for s in sets if "train" not in s]
    return (frozenset.intersection(*held) if held else ALL_SPLITS) or HELDOUT, True


def _pick(options: frozenset[str], counts: dict[str, float], size: int, fractions: dict[str, float]) -> str:
    total = sum(counts[s] for s in options) + size
    norm = sum(fractions[s] for s in options) or 1.0
    return max(sorted(options), key=lambda s: (fractions[s] / norm * total - counts[s], fractions[s]))


def assign_splits(groups: Sequence[int], *, seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  strata: Sequence[str] | None = None,
                  allowed: Sequence[frozenset[str]] | None = None) -> SplitPlan:
    """Whole groups → splits. Within each stratum (and allowed-set) the greedy choice fills the split
    furthest below its target; the group order is a seeded shuffle, so the result depends only on the seed."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.99 < sum(fractions) < 1.01:
        raise SplitError(f"fractions {tuple(fractions)}: give three non-negative numbers (train, val, test) "
                         "that sum to 1")
    frac = dict(zip(SPLITS, fractions, strict=True))
    n = len(groups)
    allowed = allowed or [ALL_SPLITS] * n
    strata = strata or [""] * n
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    order = sorted(members, key=lambda g: (strata[members[g][0]], g))
    random.Random(seed).shuffle(order)  # noqa: S311 - a reproducible shuffle, not security
    counts: dict[tuple[str, frozenset[str]], dict[str, float]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0.0))
    out = [""] * n
    conflicts = 0
    for g in order:
        ok, conflict = _group_allowed(members[g], allowed)
        conflicts += conflict
        options = frozenset(s for s in ok if frac[s] > 0) or ok
        c = counts[(strata[members[g][0]], ok)]
        split = _pick(options, c, len(members[g]), frac)
        c[split] += len(members[g])
        for i in members[g]:
            out[i] = split
    sizes = {s: out.count(s) for s in SPLITS}
    return SplitPlan(out, list(groups), conflicts, sizes)


def plan_splits(paths: Sequence[Path], explicit: Sequence[str], *, seed: int,
                fractions: Sequence[float] = DEFAULT_FRACTIONS, threshold: int = DEFAULT_THRESHOLD,
                strata: Sequence[str] | None = None, allowed: Sequence[frozenset[str]] | None = None,
                cache_path: Path | None = None) -> SplitPlan:
    """Group ``paths`` by perceptual hash and explicit group, then assign whole groups to splits."""
    hashes = phashes(paths, cache_path)
    groups = group_indices(hashes, explicit, threshold)
    plan = assign_splits(groups, seed=seed, fractions=fractions, strata=strata, allowed=allowed)
    n_groups = len(set(groups))
    log.info("split: %d images in %d groups → %s (%d conflicts)", len(paths), n_groups, plan.sizes,
             plan.conflicts)
    return plan
