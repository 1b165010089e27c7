"""The measure both editors' region tests share: two region layers, over the left and the right
quarter of a picture, each change their own quarter more than the other when their prompt changes."""

from __future__ import annotations

import sys

import numpy as np


def change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel mean absolute RGB difference of two RGBA(or BGRA) pictures."""
    return np.abs(a[..., :3].astype(np.int16) - b[..., :3].astype(np.int16)).mean(-1)


def assert_own_quarters_change(ref: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """`a` changed the left region's prompt of `ref`, `b` the right one's."""
    h, w = ref.shape[:2]
    left, right = np.zeros((h, w), bool), np.zeros((h, w), bool)
    left[:, : w // 4], right[:, w - w // 4 :] = True, True
    change_a, change_b = change(a, ref), change(b, ref)
    print(f"\nown/other quarter change: a {change_a[left].mean() / max(change_a[right].mean(), 1e-9):.1f}x, "
          f"b {change_b[right].mean() / max(change_b[left].mean(), 1e-9):.1f}x", file=sys.stderr)  # fmt: skip
    # tiny random-weight UNets spread any change by convolution; the masked attention itself is exact
    assert change_a[left].mean() > 2 * change_a[right].mean() > 0
    assert change_b[right].mean() > 2 * change_b[left].mean() > 0
