import cv2
import numpy as np
import pytest
from skimage import data

from server.imaging.color import match_color, ring_mask


@pytest.fixture(scope="module")
def scene():
    img = data.coffee()[100:356, 150:406].copy()  # 256x256 real photo crop
    sel = np.zeros((256, 256), np.uint8)
    cv2.circle(sel, (128, 128), 50, 255, -1)
    return img, sel


def _drift(img):
    # A warm cast with lower contrast: the typical look of a colour-shifted inpaint.
    f = img.astype(np.float32)
    f = (f - f.mean()) * 0.8 + f.mean() + np.float32([25, 5, -20])
    return np.clip(f, 0, 255).astype(np.uint8)


def _err(a, b, m):
    return np.abs(a[m].astype(float) - b[m].astype(float)).mean(axis=0)


def test_ring_mask_band():
    sel = np.zeros((100, 100), np.uint8)
    sel[50, 50] = 255
    ring = ring_mask(sel, inner=4, outer=10)
    assert not ring[50, 50] and not ring[50, 54] and ring[50, 55] and ring[50, 60] and not ring[50, 61]


def test_colour_shifted_patch_is_pulled_back(scene):
    img, sel = scene
    generated = _drift(img)
    out = match_color(generated, img, sel)
    ring = ring_mask(sel)
    inside = sel > 0
    assert _err(out, img, ring).max() < 0.35 * _err(generated, img, ring).min()
    # Inside the selection (what gets pasted) the cast is removed too.
    assert _err(out, img, inside).mean() < 0.35 * _err(generated, img, inside).mean()
    # Per-channel means inside the selection move back to the original's.
    before = np.abs(generated[inside].mean(0) - img[inside].mean(0))
    after = np.abs(out[inside].mean(0) - img[inside].mean(0))
    assert np.all(after < before) and after.max() < 6


def test_matching_an_unchanged_image_is_a_near_no_op(scene):
    img, sel = scene
    out = match_color(img, img, sel)
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 2


def test_strength_and_fallbacks(scene):
    img, sel = scene
    generated = _drift(img)
    np.testing.assert_array_equal(match_color(generated, img, sel, strength=0), generated)
    half = match_color(generated, img, sel, strength=0.5)
    full = match_color(generated, img, sel)
    ring = ring_mask(sel)
    assert _err(full, img, ring).mean() < _err(half, img, ring).mean() < _err(generated, img, ring).mean()
    # Whole crop selected: nothing outside to match against, returned unchanged.
    everything = np.full_like(sel, 255)
    np.testing.assert_array_equal(match_color(generated, img, everything), generated)
    with pytest.raises(ValueError, match="size mismatch"):
        match_color(generated[:10], img, sel)
