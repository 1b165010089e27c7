import numpy as np
import pytest
from skimage import data

from server.imaging.compose import composite, make_patch
from server.imaging.masks import to_alpha
from server.imaging.outpaint import (
    Sides,
    extend_canvas,
    plan_outpaint,
    prefill,
    touching_sides,
    transparent_hole,
)
from tiling.geometry import Rect


@pytest.fixture(scope="module")
def photo():
    return data.chelsea()  # 451x300


def _outpaint(photo, sides, margin=16):
    h, w = photo.shape[:2]
    plan = plan_outpaint((w, h), sides, margin=margin)
    canvas = prefill(extend_canvas(photo, plan), plan.fill_mask())
    return plan, canvas


@pytest.mark.parametrize(
    "sides",
    [
        Sides(left=64),
        Sides(top=40),
        Sides(right=33),
        Sides(bottom=8),
        Sides(left=50, top=30),
        Sides(right=20, bottom=70),
    ],
)
def test_outpaint_each_edge_and_two_edges(photo, sides):
    h, w = photo.shape[:2]
    plan, canvas = _outpaint(photo, sides)
    nw, nh = plan.canvas_size
    assert (nw, nh) == (w + sides.left + sides.right, h + sides.top + sides.bottom)
    assert plan.original == Rect(sides.left, sides.top, w, h)
    assert len(plan.strips) == sum(v > 0 for v in (sides.left, sides.top, sides.right, sides.bottom))
    # Strips + original tile the new canvas exactly.
    fill = plan.fill_mask()
    assert (fill > 0).sum() == nw * nh - w * h == sum(s.area for s in plan.strips)
    # Pre-fill keeps the original pixels and fills the new area with border colours (not black/noise).
    np.testing.assert_array_equal(canvas[plan.original.slices], photo)
    new = canvas[fill > 0].astype(float)
    assert new.mean() > 40 and abs(new.mean() - photo.mean()) < 60
    # Regions reach `margin` into the old image and cover every new pixel.
    covered = np.zeros((nh, nw), bool)
    for r in plan.regions:
        covered[r.slices] = True
        inner = r.intersection(plan.original)
        assert min(inner.w, inner.h) == plan.margin
    assert covered[fill > 0].all()
    # Simulated generation: everything changes; composite with the blend mask per region.
    generated = 255 - canvas
    blend = plan.blend_mask()
    out = canvas
    for r in plan.regions:
        patch = make_patch(generated[r.slices], blend[r.slices], origin=r)
        out = composite(out, patch)
    np.testing.assert_array_equal(out[fill > 0], generated[fill > 0])
    far = plan.original.padded(-plan.margin)
    np.testing.assert_array_equal(out[far.slices], canvas[far.slices])
    untouched = to_alpha(blend) == 0
    np.testing.assert_array_equal(out[untouched], canvas[untouched])


def test_blend_mask_ramps_into_old_image(photo):
    plan = plan_outpaint((451, 300), Sides(left=32), margin=10)
    b = plan.blend_mask()
    row = b[150, :50]
    assert np.all(row[:32] == 1) and row[32] < 1 and row[41] > 0 and np.all(row[42:] == 0)
    assert np.all(np.diff(row) <= 0)


def test_prefill_is_smooth_and_edge_aware():
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, :64] = (200, 30, 30)  # left half red, right half blue: the fill below should keep both
    img[:, 64:] = (30, 30, 200)
    plan = plan_outpaint((128, 64), Sides(bottom=32))
    filled = prefill(extend_canvas(img, plan), plan.fill_mask(), blur_px=4)
    below = filled[80]
    assert below[10, 0] > 150 and below[10, 2] < 80
    assert below[118, 2] > 150 and below[118, 0] < 80
    ns = prefill(extend_canvas(img, plan), plan.fill_mask(), method="ns", blur_px=4)
    assert ns[80, 10, 0] > 150


def test_prefill_rgba_transparent_area(photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, 400:, 3] = 0
    rgba[:, 400:, :3] = 0
    hole = transparent_hole(rgba)
    assert (hole > 0).sum() == 300 * 51
    out = prefill(rgba, hole)
    assert np.all(out[..., 3] == 255) and out[:, 400:, :3].mean() > 40
    np.testing.assert_array_equal(out[:, :400], rgba[:, :400])
    sel = np.zeros(photo.shape[:2], np.uint8)
    sel[:100] = 255
    assert (transparent_hole(rgba, sel) > 0).sum() == 100 * 51
    assert not transparent_hole(photo).any()


def test_touching_sides():
    m = np.zeros((50, 80), np.uint8)
    m[10:20, 30:40] = 255
    assert touching_sides(m) == Sides() and not touching_sides(m).any
    m[0:5, 70:80] = 255
    assert touching_sides(m) == Sides(0, 1, 1, 0)
    assert touching_sides(m).times(64) == Sides(0, 64, 64, 0)
    assert touching_sides(np.full((4, 4), 255, np.uint8)) == Sides(1, 1, 1, 1)


def test_bad_requests():
    with pytest.raises(ValueError, match="at least one"):
        plan_outpaint((10, 10), Sides())
    with pytest.raises(ValueError, match=">= 0"):
        plan_outpaint((10, 10), Sides(left=-1))
    with pytest.raises(ValueError, match="nothing to pre-fill"):
        prefill(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint8))
