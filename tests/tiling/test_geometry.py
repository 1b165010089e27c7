"""The one `Rect` (tiling/geometry.py): its vocabulary, its rounding rule and its purity."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tiling.geometry
from tiling.geometry import Rect, ceil_to, floor_to


def test_edges_size_and_slices() -> None:
    r = Rect(10, 20, 30, 40)
    assert (r.right, r.bottom, r.area, r.center) == (40, 60, 1200, (25.0, 40.0))
    assert not r.is_empty and Rect(3, 4, 0, 5).is_empty and Rect(3, 4, 5, 0).is_empty
    img = np.arange(100 * 100).reshape(100, 100)
    assert img[r.slices].shape == (40, 30) and img[r.slices][0, 0] == img[20, 10]
    assert Rect.from_bounds(10, 20, 40, 60) == r
    assert Rect.from_bounds(5, 5, 2, 9) == Rect(5, 5, 0, 4)  # reversed edges: empty, never negative
    with pytest.raises(ValueError, match="negative"):
        Rect(0, 0, -1, 3)
    with pytest.raises(AttributeError):
        r.x = 1  # type: ignore[misc]


def test_one_name_per_operation() -> None:
    r = Rect(10, 20, 30, 40)
    assert r.shifted(-10, -20) == Rect(0, 0, 30, 40)
    assert r.relative_to(Rect(4, 5, 1, 1)) == Rect(6, 15, 30, 40)
    assert r.padded(5) == Rect(5, 15, 40, 50)
    assert r.padded(1, 2) == Rect(9, 18, 32, 44)
    assert r.padded(1, 2, 3, 4) == Rect(9, 18, 34, 46)
    assert r.padded(-20) == Rect(30, 40, 0, 0) and r.padded(-20).is_empty
    assert r.padded(15).clamped(50, 50) == Rect(0, 5, 50, 45)
    assert r.intersection(Rect(30, 50, 100, 100)) == Rect(30, 50, 10, 10)
    assert r.intersection(Rect(100, 100, 5, 5)).is_empty
    assert r.padded(25).intersection(Rect(0, 0, 64, 64)) == Rect(0, 0, 64, 64)
    assert r.contains(Rect(10, 20, 30, 40)) and not r.contains(Rect(9, 20, 2, 2))
    # Methods are named for their result; the old aliases are gone for good.
    for old in ("x1", "y1", "offset", "translate", "pad", "scale", "clamp", "intersect", "union", "of_size"):
        assert not hasattr(Rect, old), old


def test_scaling_rounds_outward_and_is_exact_for_integers() -> None:
    assert Rect(1, 1, 3, 3).scaled(2.5) == Rect(2, 2, 8, 8)  # [2.5, 10) -> [2, 10)
    assert Rect(3, 5, 7, 9).scaled(8) == Rect(24, 40, 56, 72)
    assert Rect(10, 10, 10, 10).scaled(1 / 3) == Rect(3, 3, 4, 4)  # [3.33, 6.67) -> [3, 7)
    assert Rect(3, 5, 7, 9).scaled(2.0) == Rect(3, 5, 7, 9).scaled(2)


@given(
    x=st.integers(-500, 500),
    y=st.integers(-500, 500),
    w=st.integers(0, 500),
    h=st.integers(0, 500),
    factor=st.sampled_from([0.25, 1 / 3, 0.5, 1.5, 2.5, 3.0, 7.1]),
)
def test_scaled_covers_every_touched_pixel(x: int, y: int, w: int, h: int, factor: float) -> None:
    r = Rect(x, y, w, h)
    s = r.scaled(factor)
    assert s.x <= x * factor and s.y <= y * factor and s.right >= r.right * factor and s.bottom >= r.bottom * factor
    # ... and no more than that: each edge is within one pixel of the exact one.
    assert x * factor - s.x < 1 and s.right - r.right * factor < 1


def test_multiples() -> None:
    assert [ceil_to(v, 8) for v in (0, 1, 8, 9, -1)] == [0, 8, 8, 16, 0]
    assert [floor_to(v, 8) for v in (0, 7, 8, 15, -1)] == [0, 0, 8, 8, -8]
    assert all(ceil_to(v, m) == math.ceil(v / m) * m for v in range(-40, 40) for m in (1, 2, 8, 64))


def test_module_is_pure_python_for_the_editor_plugins() -> None:
    # The plugins vendor this very file into Krita's and GIMP's interpreters: standard library only.
    tree = ast.parse(Path(tiling.geometry.__file__).read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "math", "dataclasses"}, imported
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))  # no relative imports
