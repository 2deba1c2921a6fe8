"""Splits without leakage: near-duplicates and augmented copies never straddle train/val/test."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from training.split import HELDOUT, SplitError, assign_splits, group_indices, phashes, plan_splits


def scene(seed: int, size: int = 160) -> np.ndarray:
    """A distinct smooth image (blobs of colour), so perceptual hashes differ between seeds."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), rng.integers(0, 255, 3), np.uint8)
    for _ in range(6):
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(img, c, int(rng.integers(10, 50)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


@pytest.fixture
def planted(tmp_path: Path) -> tuple[list[Path], list[str]]:
    """40 distinct photos; photo 0 also as a near-duplicate and as an augmented (flipped) copy."""
    paths, groups = [], []
    for i in range(40):
        p = tmp_path / f"photo{i:02d}.jpg"
        cv2.imwrite(str(p), scene(i))
        paths.append(p)
        groups.append(f"photo{i:02d}")
    original = scene(0)
    near = cv2.resize(original, (131, 131), interpolation=cv2.INTER_AREA)
    near = np.clip(near.astype(np.int16) + 12, 0, 255).astype(np.uint8)
    near_path = tmp_path / "zz_near_duplicate.jpg"
    cv2.imwrite(str(near_path), near, [cv2.IMWRITE_JPEG_QUALITY, 60])
    aug_path = tmp_path / "zz_augmented.jpg"
    cv2.imwrite(str(aug_path), cv2.rotate(original, cv2.ROTATE_90_CLOCKWISE))
    paths += [near_path, aug_path]
    groups += ["zz_near", "photo00"]  # the near-duplicate carries no group; the augmented copy its parent's
    return paths, groups


def test_planted_copies_are_found_the_way_the_split_needs(planted: tuple[list[Path], list[str]]) -> None:
    paths, _ = planted
    h = phashes(paths)
    dist = [bin(h[0] ^ x).count("1") for x in h]
    assert dist[-2] <= 6, "the re-encoded, resized, brightened copy must be a perceptual near-duplicate"
    assert dist[-1] > 6, "the rotated copy is not: only its explicit group ties it to its parent"
    assert min(dist[1:40]) > 6, "distinct photos must not be grouped"


@pytest.mark.parametrize("seed", range(8))
def test_copies_never_straddle_splits(planted: tuple[list[Path], list[str]], seed: int) -> None:
    paths, groups = planted
    plan = plan_splits(paths, groups, seed=seed, fractions=(0.5, 0.25, 0.25))
    assert plan.splits[0] == plan.splits[-2] == plan.splits[-1]
    assert len({plan.groups[0], plan.groups[-2], plan.groups[-1]}) == 1
    assert set(plan.splits) == {"train", "val", "test"}
    for g in set(plan.groups):
        assert len({s for s, gg in zip(plan.splits, plan.groups, strict=True) if gg == g}) == 1


def test_without_grouping_the_copies_would_straddle(planted: tuple[list[Path], list[str]]) -> None:
    """The guard is real: splitting images one by one puts photo 0 and a copy on different sides."""
    paths, _ = planted
    singles = list(range(len(paths)))
    straddled = any(len({assign_splits(singles, seed=s).splits[i] for i in (0, len(paths) - 2, len(paths) - 1)}) > 1
                    for s in range(8))
    assert straddled


def test_split_is_deterministic_and_near_target(planted: tuple[list[Path], list[str]], tmp_path: Path) -> None:
    paths, groups = planted
    cache = tmp_path / "cache" / "phash.json"
    a = plan_splits(paths, groups, seed=3, cache_path=cache)
    b = plan_splits(paths, groups, seed=3, cache_path=cache)
    assert cache.is_file() and a.splits == b.splits
    assert abs(a.sizes["train"] - 0.8 * len(paths)) <= 3
    assert plan_splits(paths, groups, seed=4).splits != a.splits


def test_group_indices_joins_chains_and_explicit_groups() -> None:
    far = 0b1111 << 40
    hashes = [0b1, 0b111, 0b11111, far, far | 0b11110000000, 0b111 << 60]
    comp = group_indices(hashes, ["", "", "", "", "", "x"], threshold=2)
    assert comp[0] == comp[1] == comp[2]  # 0–1 and 1–2 within 2 bits: one component through the chain
    assert comp[3] != comp[0] and comp[4] != comp[3] and comp[5] not in comp[:5]
    comp = group_indices(hashes, ["a", "", "", "", "", "a"], threshold=2)
    assert comp[5] == comp[0]


def test_allowed_splits_and_conflicts() -> None:
    groups = [0, 0, 1, 2, 3, 4, 5]
    allowed = [frozenset({"train"}), HELDOUT] + [HELDOUT] * 5
    plan = assign_splits(groups, seed=0, allowed=allowed)
    assert plan.conflicts == 1 and plan.splits[0] == plan.splits[1] != "train"
    assert set(plan.splits) == {"val", "test"}


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_fractions_raise(fractions: tuple[float, ...]) -> None:
    with pytest.raises(SplitError, match="fractions"):
        assign_splits([0, 1], seed=0, fractions=fractions)
