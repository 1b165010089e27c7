import cv2
import numpy as np
import pytest
from skimage import data

from server.imaging.compose import composite, make_patch
from server.imaging.geometry import extract_crop, plan_inpaint, restore_crop
from server.imaging.masks import blend_mask, changed_rect, denoise_mask, grow, latent_mask, to_alpha
from tiling.geometry import Rect


def _disc(w=200, h=160, c=(100, 80), r=20, soft=False):
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, c, r, 255, -1)
    return cv2.GaussianBlur(m, (0, 0), 3) if soft else m


def test_grow_spreads_by_radius():
    m = np.zeros((50, 50), np.uint8)
    m[25, 25] = 255
    g = grow(m, 5)
    assert g[25, 30] == 1.0 and g[25, 31] == 0.0 and g[20, 25] == 1.0


def test_denoise_mask_keeps_selection_at_full_strength_and_feathers_outward():
    sel = _disc()
    d = denoise_mask(sel, grow_px=6, feather_px=8)
    assert d.dtype == np.float32 and d.min() >= 0 and d.max() <= 1
    assert np.all(d[sel == 255] == 1.0)
    # Outside the selection: soft, decreasing with distance, zero far away.
    assert 0 < d[80, 100 + 20 + 8] < 1
    assert d[80, 100 + 20 + 4] > d[80, 100 + 20 + 10]
    assert d[0, 0] == 0


def test_latent_mask_resolution():
    d = denoise_mask(_disc(w=64, h=48, c=(32, 24), r=10))
    lm = latent_mask(d)
    assert lm.shape == (6, 8) and lm.max() <= 1
    with pytest.raises(ValueError, match="multiple of 8"):
        latent_mask(np.zeros((10, 16), np.float32))


def test_blend_mask_is_zero_outside_grown_selection_and_fades_at_edge():
    sel = _disc(soft=True)
    b = blend_mask(sel, grow_px=8, feather_px=8)
    grown = grow(sel, 8)
    assert np.all(b[grown == 0] == 0)
    assert b[80, 100] == pytest.approx(1.0, abs=1e-3)
    # Along a row from the centre outward the alpha never increases and reaches 0 smoothly.
    row = b[80, 100:160]
    assert np.all(np.diff(row) <= 1e-6)
    edge = np.argmax(row == 0)
    assert 0 < row[edge - 1] < 0.3


def test_changed_rect_is_tight():
    b = np.zeros((40, 50), np.float32)
    b[10:20, 5:15] = 0.5
    b[30, 40] = 0.001  # rounds to alpha 0: not a change
    assert changed_rect(b) == Rect(5, 10, 10, 10)
    assert changed_rect(np.zeros((4, 4), np.float32)).is_empty


def test_composite_leaves_alpha_zero_pixels_bit_identical():
    img = data.astronaut()
    h, w = img.shape[:2]
    sel = np.zeros((h, w), np.uint8)
    cv2.ellipse(sel, (220, 130), (40, 55), 15, 0, 360, 255, -1)
    plan = plan_inpaint((w, h), sel, target=512)
    # Stand-in for generation: process the crop with a strong change.
    gen = 255 - extract_crop(img, plan)
    result_crop = restore_crop(gen, plan)
    blend = blend_mask(sel[plan.crop.slices])
    patch = make_patch(result_crop, blend, origin=plan.crop)
    assert patch is not None and plan.crop.contains(patch.rect)
    assert patch.rgba.shape == (patch.rect.h, patch.rect.w, 4)
    out = composite(img, patch)
    alpha_full = np.zeros((h, w), np.uint8)
    alpha_full[plan.crop.slices] = to_alpha(blend)
    untouched = alpha_full == 0
    np.testing.assert_array_equal(out[untouched], img[untouched])
    assert np.any(out[sel == 255] != img[sel == 255])
    # Fully opaque pixels are the generated ones exactly.
    full = alpha_full == 255
    expected = np.zeros_like(img)
    expected[plan.crop.slices] = result_crop
    np.testing.assert_array_equal(out[full], expected[full])


def test_make_patch_none_when_nothing_changes():
    assert make_patch(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32)) is None
