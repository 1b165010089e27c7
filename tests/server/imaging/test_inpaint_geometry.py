import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.imaging.geometry import (
    EmptyMaskError,
    MaskError,
    Rect,
    extract_crop,
    mask_bbox,
    plan_inpaint,
    restore_crop,
)


def _mask(w, h, rect):
    m = np.zeros((h, w), np.uint8)
    m[rect.slices] = 255
    return m


def _check(plan, w, h):
    crop = plan.crop
    assert Rect(0, 0, w, h).contains(crop)
    assert crop.contains(plan.selection)
    pw, ph = plan.padded_size
    assert pw % 8 == 0 and ph % 8 == 0
    assert plan.process_size[0] % 8 == 0 and plan.process_size[1] % 8 == 0
    # Padding only where the crop spans the whole canvas axis.
    assert plan.pad[0] == 0 or (crop.x == 0 and crop.w == w)
    assert plan.pad[1] == 0 or (crop.y == 0 and crop.h == h)


def test_rect_helpers():
    r = Rect(10, 20, 30, 40)
    assert (r.right, r.bottom, r.area) == (40, 60, 1200)
    assert r.intersect(Rect(30, 50, 100, 100)) == Rect(30, 50, 10, 10)
    assert r.intersect(Rect(100, 100, 5, 5)).is_empty
    assert r.union(Rect(0, 0, 5, 5)) == Rect(0, 0, 40, 60)
    assert r.union(Rect(0, 0, 0, 0)) == r
    assert r.pad(5) == Rect(5, 15, 40, 50)
    assert r.pad(1, 2, 3, 4) == Rect(9, 18, 34, 46)
    assert r.pad(15).clamp(50, 50) == Rect(0, 5, 50, 45)
    assert Rect(1, 1, 3, 3).scale(2.5) == Rect(2, 2, 8, 8)
    assert r.round_to(16) == Rect(9, 16, 32, 48)
    assert r.offset(-10, -20) == Rect(0, 0, 30, 40)
    assert r.contains(Rect(10, 20, 30, 40)) and not r.contains(Rect(9, 20, 2, 2))
    img = np.arange(100 * 100).reshape(100, 100)
    assert img[r.slices].shape == (40, 30)


def test_mask_bbox():
    m = np.zeros((10, 12), np.uint8)
    m[2, 3] = 1
    m[7, 9] = 200
    assert mask_bbox(m) == Rect(3, 2, 7, 6)
    assert mask_bbox(m, threshold=100) == Rect(9, 7, 1, 1)
    assert mask_bbox(np.zeros((4, 4), np.uint8)).is_empty


def test_small_selection_is_scaled_to_native_resolution():
    plan = plan_inpaint((1024, 768), _mask(1024, 768, Rect(500, 300, 100, 100)), target=512)
    _check(plan, 1024, 768)
    assert plan.scale > 1
    assert plan.process_size[0] * plan.process_size[1] == pytest.approx(512 * 512, rel=0.1)
    # Padding grows with the selection size.
    big = plan_inpaint((1024, 768), _mask(1024, 768, Rect(400, 300, 200, 200)), target=512)
    assert big.crop.w - 200 > plan.crop.w - 100


def test_target_is_a_parameter():
    m = _mask(256, 256, Rect(100, 100, 20, 20))
    tiny = plan_inpaint((256, 256), m, target=64)
    assert tiny.padded_size == (56, 56) and tiny.process_size == (64, 64)
    big = plan_inpaint((256, 256), _mask(256, 256, Rect(50, 50, 60, 60)), target=64)
    assert big.scale == 1.0 and big.process_size == big.padded_size
    xl = plan_inpaint((256, 256), m, target=1024, max_upscale=100)
    assert xl.process_size[0] * xl.process_size[1] == pytest.approx(1024 * 1024, rel=0.1)


def test_selection_at_corner():
    for sel in (Rect(0, 0, 10, 10), Rect(190, 140, 10, 10), Rect(0, 140, 10, 10)):
        plan = plan_inpaint((200, 150), _mask(200, 150, sel), target=64)
        _check(plan, 200, 150)
        assert plan.pad == (0, 0)


def test_one_pixel_selection_upscale_is_bounded():
    plan = plan_inpaint((512, 512), _mask(512, 512, Rect(256, 256, 1, 1)), target=512, max_upscale=4)
    _check(plan, 512, 512)
    assert plan.selection == Rect(256, 256, 1, 1)
    assert plan.crop.w >= 33 and plan.scale == 4


def test_full_canvas_selection_and_all_white_mask():
    for w, h in ((512, 512), (300, 200)):
        plan = plan_inpaint((w, h), np.full((h, w), 255, np.uint8), target=512)
        _check(plan, w, h)
        assert plan.crop == Rect(0, 0, w, h)


def test_non_multiple_of_8_canvas_shrinks_or_pads():
    # Selection fits in floor8(width): the crop shrinks to a multiple of 8, no padding needed.
    plan = plan_inpaint((203, 101), _mask(203, 101, Rect(20, 20, 100, 50)), target=64)
    _check(plan, 203, 101)
    assert plan.crop.w % 8 == 0 and plan.pad[0] == 0
    # Selection spans the whole width: full width + replicated pad to 208.
    plan = plan_inpaint((203, 101), _mask(203, 101, Rect(0, 40, 203, 10)), target=64)
    _check(plan, 203, 101)
    assert plan.crop.w == 203 and plan.pad[0] == 5
    img = np.random.default_rng(0).integers(0, 255, (101, 203, 3), np.uint8)
    crop = extract_crop(img, plan)
    assert crop.shape == (plan.process_size[1], plan.process_size[0], 3)
    back = restore_crop(crop, plan)
    assert back.shape == (plan.crop.h, plan.crop.w, 3)


def test_roundtrip_at_scale_one_is_exact():
    img = np.random.default_rng(1).integers(0, 255, (100, 203, 3), np.uint8)
    plan = plan_inpaint((203, 100), _mask(203, 100, Rect(0, 0, 203, 100)), target=128)
    assert plan.scale == 1.0
    np.testing.assert_array_equal(restore_crop(extract_crop(img, plan), plan), img)


def test_max_pixels_caps_processing_size():
    plan = plan_inpaint((2048, 2048), np.full((2048, 2048), 255, np.uint8), target=512, max_pixels=512 * 512)
    assert plan.scale < 1
    assert plan.process_size[0] * plan.process_size[1] <= 512 * 512


def test_bad_masks_raise_clear_errors():
    with pytest.raises(EmptyMaskError, match="empty"):
        plan_inpaint((64, 64), np.zeros((64, 64), np.uint8))
    with pytest.raises(MaskError, match="64x32"):
        plan_inpaint((64, 64), np.zeros((32, 64), np.uint8) + 255)
    with pytest.raises(MaskError, match="uint8"):
        plan_inpaint((64, 64), np.ones((64, 64), np.float32))


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(9, 300),
    h=st.integers(9, 300),
    data=st.data(),
    target=st.sampled_from([64, 512]),
)
def test_plan_invariants(w, h, data, target):
    x0 = data.draw(st.integers(0, w - 1))
    y0 = data.draw(st.integers(0, h - 1))
    sel = Rect.from_bounds(x0, y0, data.draw(st.integers(x0 + 1, w)), data.draw(st.integers(y0 + 1, h)))
    plan = plan_inpaint((w, h), _mask(w, h, sel), target=target)
    _check(plan, w, h)
    assert plan.selection == sel
    assert plan.process_size[0] * plan.process_size[1] <= 4 * target * target
