import cv2
import numpy as np
import pytest
from skimage import data

from server.imaging.compose import composite, make_patch
from server.imaging.faces import (
    FFHQ_TEMPLATE_512,
    Face,
    align_face,
    detect_faces,
    ellipse_mask,
    face_points,
    iou,
    paste_back,
    plan_face_crop,
)
from server.imaging.geometry import extract_crop, restore_crop
from tests.server.jobs.edit_helpers import ASTRONAUT_FACE
from tiling.geometry import Rect


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    return faces[0]


def test_detects_the_astronaut_face(astronaut_face):
    f = astronaut_face
    assert iou(f.box, ASTRONAUT_FACE) > 0.6
    assert f.score == 1.0  # both cascades agree
    assert f.eyes is not None
    (lx, ly), (rx, ry) = f.eyes
    assert ASTRONAUT_FACE.x < lx < rx < ASTRONAUT_FACE.right
    assert ASTRONAUT_FACE.y < min(ly, ry) < f.box.center[1]


@pytest.mark.parametrize("name", ["chelsea", "coffee", "rocket", "camera"])
def test_no_faces_in_face_free_photos(name):
    assert detect_faces(getattr(data, name)()) == []


def test_several_faces_and_rgba_input(astronaut):
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    rgba = np.dstack([two, np.full(two.shape[:2], 255, np.uint8)])
    faces = detect_faces(rgba)
    assert len(faces) == 2
    mirrored = Rect(1024 - ASTRONAUT_FACE.right, ASTRONAUT_FACE.y, ASTRONAUT_FACE.w, ASTRONAUT_FACE.h)
    assert sorted(iou(f.box, r) > 0.5 for f in faces for r in (ASTRONAUT_FACE, mirrored)) == [False, False, True, True]


def test_large_images_are_searched_downscaled(astronaut):
    big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    faces = detect_faces(big, max_side=512)
    scaled = Rect(ASTRONAUT_FACE.x * 3, ASTRONAUT_FACE.y * 3, ASTRONAUT_FACE.w * 3, ASTRONAUT_FACE.h * 3)
    assert len(faces) == 1 and iou(faces[0].box, scaled) > 0.6
    assert faces[0].eyes is not None


def test_face_crop_plan_is_square_clamped_and_native(astronaut_face):
    plan = plan_face_crop(astronaut_face, (512, 512), target=512)
    assert plan.crop.w == plan.crop.h and plan.crop.contains(astronaut_face.box)
    assert plan.process_size == (512, 512) and plan.scale > 2
    # At a canvas corner the square shifts inside; on a tiny canvas it shrinks to the shorter side.
    corner = plan_face_crop(Rect(0, 0, 40, 40), (300, 200), target=64)
    assert corner.crop == Rect(0, 0, 80, 80) and corner.process_size == (64, 64)
    small = plan_face_crop(Rect(10, 10, 90, 90), (150, 100), target=64)
    assert small.crop.w == 100 and Rect(0, 0, 150, 100).contains(small.crop)


def test_rerender_changes_only_inside_feathered_ellipse(astronaut, astronaut_face):
    plan = plan_face_crop(astronaut_face, (512, 512), target=512)
    crop = extract_crop(astronaut, plan)
    generated = restore_crop(cv2.GaussianBlur(255 - crop, (0, 0), 3), plan)
    mask = ellipse_mask((plan.crop.w, plan.crop.h), astronaut_face.box.relative_to(plan.crop))
    assert mask.max() == pytest.approx(1.0) and mask[0, 0] == 0
    patch = make_patch(generated, mask, origin=plan.crop)
    out = composite(astronaut, patch)
    changed = np.any(out != astronaut, axis=2)
    full_mask = np.zeros((512, 512), np.float32)
    full_mask[plan.crop.slices] = mask
    assert not np.any(changed & (np.rint(full_mask * 255) == 0))
    assert changed[ASTRONAUT_FACE.slices].mean() > 0.5


def test_align_maps_points_onto_template(astronaut, astronaut_face):
    aligned, affine = align_face(astronaut, astronaut_face)
    assert aligned.shape == (512, 512, 3) and affine.shape == (2, 3)
    pts = cv2.transform(face_points(astronaut_face)[None], affine)[0]
    # The measured eyes land within a few template pixels of the template's eyes.
    assert np.abs(pts[:2] - FFHQ_TEMPLATE_512[:2]).max() < 20
    # Box-only alignment works too (no eyes found).
    aligned2, _ = align_face(astronaut, Face(astronaut_face.box, 1.0))
    assert aligned2.shape == (512, 512, 3)


def test_explicit_landmarks_are_used_exactly(astronaut):
    affine = np.float32([[2.0, 0.1, -300], [-0.1, 2.0, -100]])
    inv = cv2.invertAffineTransform(affine)
    pts = cv2.transform(FFHQ_TEMPLATE_512[None], inv)[0]
    face = Face(Rect(150, 50, 200, 200), 1.0, landmarks=tuple(map(tuple, pts)))
    _, est = align_face(astronaut, face)
    np.testing.assert_allclose(est, affine, atol=1e-2)


def test_paste_back_leaves_outside_bit_identical(astronaut, astronaut_face):
    aligned, affine = align_face(astronaut, astronaut_face)
    out, rect = paste_back(astronaut, 255 - aligned, affine)
    changed = np.any(out != astronaut, axis=2)
    ys, xs = np.nonzero(changed)
    assert rect.contains(Rect.from_bounds(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    outside = np.ones_like(changed)
    outside[rect.slices] = False
    assert not changed[outside].any()
    assert rect.intersection(ASTRONAUT_FACE).area > 0.5 * ASTRONAUT_FACE.area
    assert rect.w < 200 and rect.h < 200
    # Identity restore (aligned face pasted back as is) barely changes the image.
    same, _ = paste_back(astronaut, aligned, affine)
    assert np.abs(same.astype(int) - astronaut.astype(int)).mean() < 1.0
    # blend=0 changes nothing.
    none, r0 = paste_back(astronaut, 255 - aligned, affine, blend=0.0)
    assert r0.is_empty and np.array_equal(none, astronaut)
