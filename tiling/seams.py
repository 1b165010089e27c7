"""Seam metrics: do tile borders show, and do tiles drift in colour?

SGR-ms (seam gradient ratio, multi-scale) compares the mean absolute luminance step across known
seam positions with the step across nearby control positions, at box-downsampling scales 1, 2,
4, 8 (a step smeared over a blend band of width b becomes a sharp step at scale ~b). The worst
scale/axis is reported, with a z-score against the same statistic on decoy grids (the real seam
pattern shifted away from the real seams), so textured and flat images share one threshold.

TCD (tile colour drift) is the largest CIELAB distance (dE76) between the mean colour errors of
neighbouring tile cells against a reference such as the pre-diffusion upscale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .colorspace import luminance, srgb_to_lab
from .plan import AxisLayout, TilePlan

NOISE_FLOOR = 0.5 / 255  # mean-step floor for the control band: below this, steps are invisible
_NEAR, _FAR = 3, 8  # controls lie 3..8 (downsampled) px from the nearest seam


def _unique_sorted(values: Sequence[int], length: int) -> tuple[int, ...]:
    return tuple(sorted({int(v) for v in values if 0 < v < length}))


def axis_seams(axis: AxisLayout) -> tuple[int, ...]:
    """Seam positions of one axis: both window edges and the centre of every overlap band.

    A position p is the boundary between pixels p-1 and p.
    """
    out: list[int] = []
    for prev, nxt in zip(axis.starts, axis.starts[1:], strict=False):
        end = prev + axis.tile
        out += [nxt, end, (nxt + end) // 2]
    return _unique_sorted(out, axis.length)


def plan_seams(plan: TilePlan, scale: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(seams_x, seams_y)`` in pixels for a plan in units ``scale`` times coarser (8 for latents)."""
    p = plan.scaled(scale)
    return axis_seams(p.xs), axis_seams(p.ys)


def axis_cells(axis: AxisLayout) -> tuple[int, ...]:
    """Boundaries of the cells each tile owns (split at overlap centres): ``count + 1`` values."""
    mids = [(nxt + prev + axis.tile) // 2 for prev, nxt in zip(axis.starts, axis.starts[1:], strict=False)]
    return (0, *mids, axis.length)


def plan_cells(plan: TilePlan, scale: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
    p = plan.scaled(scale)
    return axis_cells(p.xs), axis_cells(p.ys)


@dataclass(frozen=True)
class SeamScore:
    sgr: float  # worst seam/control step ratio over scales and axes (1.0 = seams look like anywhere else)
    z: float  # (sgr - decoy mean) / max(decoy std, std floor)
    decoy_mean: float
    decoy_std: float
    worst: tuple[str, int]  # (axis, scale) where sgr was found

    def passes(self, z_max: float = 3.0) -> bool:
        return self.z < z_max


def _box_down(lum: np.ndarray, k: int) -> np.ndarray:
    h, w = (lum.shape[0] // k) * k, (lum.shape[1] // k) * k
    return lum[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))


def _steps(lum: np.ndarray) -> np.ndarray:
    """d[x] = mean over rows of |L[:, x] - L[:, x-1]| for x >= 1 (d[0] unused)."""
    d = np.zeros(lum.shape[1])
    d[1:] = np.abs(np.diff(lum, axis=1)).mean(axis=0)
    return d


def _ratio(d: np.ndarray, seams: np.ndarray, avoid: np.ndarray) -> float | None:
    """Seam/control ratio, or None when either set is empty at this scale."""
    n = len(d)
    seams = seams[(seams >= 1) & (seams < n)]
    if len(avoid):  # decoys too close to a real seam would measure the real seam
        seams = seams[np.min(np.abs(seams[:, None] - avoid[None, :]), axis=1) >= _NEAR] if len(seams) else seams
    if not len(seams):
        return None
    xs = np.arange(1, n)
    dist = np.min(np.abs(xs[:, None] - seams[None, :]), axis=1)
    ok = (dist >= _NEAR) & (dist <= _FAR)
    if len(avoid):
        ok &= np.min(np.abs(xs[:, None] - avoid[None, :]), axis=1) >= _NEAR
    if not ok.any():
        return None
    return float(d[seams].mean() / max(d[xs[ok]].mean(), NOISE_FLOOR))


def _sgr(
    steps: dict[tuple[str, int], np.ndarray],
    seams: dict[str, np.ndarray],
    real: dict[str, np.ndarray],
    shift: dict[str, int],
    decoy: bool,
) -> tuple[float, tuple[str, int]]:
    best, where = -np.inf, ("x", 1)
    for (axis, k), d in steps.items():
        s = np.unique(np.rint((seams[axis] + shift[axis]) / k).astype(int))
        avoid = np.unique(np.rint(real[axis] / k).astype(int)) if decoy else np.array([], dtype=int)
        r = _ratio(d, s, avoid)
        if r is not None and r > best:
            best, where = r, (axis, k)
    return float(best), where


def sgr_ms(
    image: np.ndarray,
    seams_x: Sequence[int],
    seams_y: Sequence[int],
    *,
    scales: Sequence[int] = (1, 2, 4, 8),
    decoys: int = 64,
    seed: int = 0,
    std_floor: float = 0.05,
) -> SeamScore:
    """Multi-scale seam gradient ratio of ``image`` (HxWx3 sRGB or HxW luminance) with a decoy z-score."""
    lum = luminance(image)
    steps: dict[tuple[str, int], np.ndarray] = {}
    for k in scales:
        down = _box_down(lum, k)
        steps[("x", k)] = _steps(down)
        steps[("y", k)] = _steps(down.T)
    real = {"x": np.asarray(seams_x, dtype=float), "y": np.asarray(seams_y, dtype=float)}
    obs, worst = _sgr(steps, real, real, {"x": 0, "y": 0}, decoy=False)
    if not np.isfinite(obs):
        raise ValueError("no seam/control positions: image too small for the seams given")
    rng = np.random.default_rng(seed)
    # Decoy shifts stay within the widest gap between real seams (the grid's own period scale).
    fallback = {"x": lum.shape[1] // 2, "y": lum.shape[0] // 2}
    spans = {a: int(np.diff(v).max()) if len(v) > 1 else fallback[a] for a, v in real.items()}
    values = []
    for _ in range(decoys):
        shift = {a: int(rng.integers(_NEAR, max(_NEAR + 1, spans[a] + 1))) * int(rng.choice([-1, 1])) for a in real}
        v, _ = _sgr(steps, real, real, shift, decoy=True)
        if np.isfinite(v):
            values.append(v)
    if len(values) < 2:
        raise ValueError("too few usable decoy grids")
    mean, std = float(np.mean(values)), float(np.std(values))
    return SeamScore(obs, (obs - mean) / max(std, std_floor), mean, std, worst)


@dataclass(frozen=True)
class DriftScore:
    max_adjacent: float  # largest dE76 between neighbouring cells' mean errors
    global_drift: float  # dE76 of the mean error over the whole image
    cell_means: np.ndarray  # [rows, cols, 3] mean Lab error per cell


def tile_colour_drift(
    output: np.ndarray, reference: np.ndarray, cells_x: Sequence[int], cells_y: Sequence[int]
) -> DriftScore:
    """TCD: colour error (Lab) of ``output`` against ``reference`` averaged per cell, compared between neighbours."""
    delta = srgb_to_lab(output) - srgb_to_lab(reference)
    rows, cols = len(cells_y) - 1, len(cells_x) - 1
    means = np.zeros((rows, cols, 3))
    for r in range(rows):
        for c in range(cols):
            means[r, c] = delta[cells_y[r] : cells_y[r + 1], cells_x[c] : cells_x[c + 1]].reshape(-1, 3).mean(axis=0)
    diffs = [np.linalg.norm(means[:, 1:] - means[:, :-1], axis=-1), np.linalg.norm(means[1:] - means[:-1], axis=-1)]
    worst = max((float(d.max()) for d in diffs if d.size), default=0.0)
    return DriftScore(worst, float(np.linalg.norm(delta.reshape(-1, 3).mean(axis=0))), means)
