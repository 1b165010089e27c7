"""Control images from layers (server/imaging/control.py) on real photos and drawn layers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from server.imaging import control


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[::2, ::2])  # 256x256 RGB


def _drawn(background: int, ink: int, alpha: bool = False) -> np.ndarray:
    """A 128x96 layer with a cross and a circle drawn 3 px wide."""
    layer = np.zeros((96, 128, 4), np.uint8)
    layer[..., :3] = background
    layer[..., 3] = 0 if alpha else 255
    colour = (ink, ink, ink, 255)
    cv2.line(layer, (10, 10), (110, 80), colour, 3)
    cv2.line(layer, (10, 80), (110, 10), colour, 3)
    cv2.circle(layer, (64, 48), 30, colour, 3)
    return layer


def _strokes() -> np.ndarray:
    return _drawn(0, 255)[..., 0] > 127


def test_as_is_is_exactly_the_layer_over_black(photo: np.ndarray) -> None:
    out = control.as_is(photo)
    assert out.dtype == np.float32 and out.shape == (256, 256, 3)
    assert np.array_equal(out, photo.astype(np.float32) / 255.0)  # how diffusers prepares control images
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, :128, 3] = 0
    half = control.as_is(rgba)
    assert (half[:, :128] == 0).all() and np.array_equal(half[:, 128:], out[:, 128:])


def test_canny_is_opencv_canny_white_on_black(photo: np.ndarray) -> None:
    out = control.canny(photo, 100, 200)
    ref = cv2.Canny(photo, 100, 200)
    assert np.array_equal(out[..., 0], ref / 255.0) and np.array_equal(out[..., 0], out[..., 2])
    assert set(np.unique(out)) == {0.0, 1.0}
    assert 0.02 < out[..., 0].mean() < 0.3  # a photo has edges, and most of it is not edge
    assert control.canny(photo, 50, 100).sum() > out.sum()  # lower thresholds keep more edges


@pytest.mark.parametrize(("background", "ink", "alpha"), [(255, 0, False), (0, 255, False), (0, 0, True)])
def test_lines_from_a_drawn_layer_are_white_on_black(background: int, ink: int, alpha: bool) -> None:
    """Dark ink on white paper, white chalk on black, or strokes on a transparent layer: the same map."""
    out = control.lineart(_drawn(background, ink, alpha))
    strokes = _strokes()
    assert (out[strokes] == 1.0).all() and (out[~strokes] == 0.0).all()


def test_explicit_invert_and_threshold() -> None:
    paper = _drawn(255, 0)
    assert np.array_equal(control.lineart(paper, invert=True), control.lineart(paper))
    assert (control.lineart(paper, invert=False)[~_strokes()] == 1.0).all()  # not inverted: the paper is "ink"
    grey = _drawn(255, 160)  # light pencil: ink 1 - 160/255 ≈ 0.37
    assert control.lineart(grey, threshold=0.5).max() == 0.0
    kept = control.lineart(grey, threshold=0.3)
    assert np.allclose(kept[_strokes()], 1 - 160 / 255, atol=0.01)


def test_scribble_is_solid_and_widened() -> None:
    out = control.scribble(_drawn(255, 0), width=5)
    assert set(np.unique(out)) == {0.0, 1.0}
    strokes = _strokes()
    assert (out[strokes] == 1.0).all() and out[..., 0].sum() > strokes.sum() * 1.3  # wider than drawn
    assert np.array_equal(control.scribble(_drawn(255, 0), width=1)[..., 0] == 1.0, strokes)


def test_softedge_is_soft_and_follows_the_edges(photo: np.ndarray) -> None:
    out = control.softedge(photo)[..., 0]
    assert out.min() >= 0.0 and out.max() <= 1.0 and len(np.unique(out)) > 100  # graded, not binary
    edges = cv2.dilate(cv2.Canny(photo, 100, 200), np.ones((5, 5), np.uint8)) > 0
    assert out[edges].mean() > 2.5 * out[~edges].mean()
    assert control.softedge(np.full((32, 32, 3), 90, np.uint8)).max() == 0.0  # a flat layer has no edges


def test_tile_and_blur_soften_the_picture(photo: np.ndarray) -> None:
    def detail(img: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(img[..., 1], cv2.CV_32F)).mean())

    same = control.tile(photo)
    assert np.array_equal(same, photo.astype(np.float32) / 255.0)
    assert detail(control.tile(photo, 4.0)) < 0.5 * detail(same)
    assert detail(control.blur(photo, 3.0)) < 0.5 * detail(same)
    assert abs(float(control.blur(photo, 3.0).mean()) - float(same.mean())) < 0.01  # colour is kept


def test_inpaint_marks_the_hole(photo: np.ndarray) -> None:
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[100:150, 50:90, 3] = 0
    sel = np.zeros(photo.shape[:2], np.uint8)
    sel[10:20, 10:20] = 255
    out = control.inpaint(rgba, sel)
    hole = np.zeros(photo.shape[:2], bool)
    hole[100:150, 50:90] = hole[10:20, 10:20] = True
    assert (out[hole] == -1.0).all()
    assert np.array_equal(out[~hole], photo[~hole].astype(np.float32) / 255.0)
    assert control.to_display(out)[hole].max() == 0  # shown black, never wrapped round
