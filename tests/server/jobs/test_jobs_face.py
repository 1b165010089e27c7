"""`face` re-render through a real server on real photos: the astronaut portrait's face changes only
inside its feathered ellipse; a face-free photo is a message, not an error; mask-given faces."""

from __future__ import annotations

import numpy as np
import pytest

from server.client import ServerError
from tests.server.jobs.edit_helpers import apply, gray8, job, photo, pixels, rgba8

S = 256


def test_face_rerender_changes_only_the_face_region(server) -> None:
    img = photo("astronaut", S, S)
    res = job(
        server.url,
        "face",
        {"prompt": "a smiling face", "model": "tiny-sd15", "seed": 4, "steps": 3, "strength": 0.6},
        {"image": rgba8(img)},
    )
    assert res["params"]["source"] == "detector"
    (face,) = res["params"]["faces"]
    fx, fy, fw, fh = face
    (r,) = res["images"]
    assert r["name"] == "face 1" and r["seed"] == 4
    px = pixels(r)
    alpha = px[..., 3]
    # Elliptical feathered alpha: opaque at the face centre, zero in the rect's corners, soft between.
    assert alpha[r["h"] // 2, r["w"] // 2] == 255
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
    assert ((alpha > 0) & (alpha < 255)).sum() > 50
    # The rect is around the detected face, not the crop.
    assert r["x"] <= fx + fw // 2 <= r["x"] + r["w"] and r["w"] < 2 * fw
    out, touched = apply(img, res)
    assert np.array_equal(out[~touched], img[~touched])
    centre = (slice(fy + fh // 4, fy + 3 * fh // 4), slice(fx + fw // 4, fx + 3 * fw // 4))
    assert np.abs(out[centre].astype(int) - img[centre]).mean() > 2


def test_no_face_is_a_message(server) -> None:
    res = job(server.url, "face", {"model": "tiny-sd15", "steps": 2}, {"image": rgba8(photo("coffee", 200, 150))})
    assert res["images"] == []
    assert res["params"]["messages"] == ["no faces found"] and res["params"]["faces"] == []


def test_faces_from_a_mask(server) -> None:
    img = photo("chelsea", 160, 120)  # a cat: the selection says where the "faces" are
    mask = np.zeros((120, 160), np.uint8)
    mask[20:50, 20:50] = 255
    mask[60:100, 100:140] = 255
    res = job(
        server.url, "face", {"model": "tiny-sd15", "seed": 9, "steps": 2}, {"image": rgba8(img), "mask": gray8(mask)}
    )
    assert res["params"]["source"] == "mask"
    assert sorted(res["params"]["faces"]) == [[20, 20, 30, 30], [100, 60, 40, 40]]
    assert [r["seed"] for r in res["images"]] == [9, 10]
    out, touched = apply(img, res)
    assert np.array_equal(out[~touched], img[~touched])
    assert touched[35, 35] and touched[80, 120] and not touched[5, 80]


def test_face_mask_errors(server) -> None:
    with pytest.raises(ServerError, match="empty"):
        job(
            server.url,
            "face",
            {"model": "tiny-sd15"},
            {"image": rgba8(photo("chelsea", 64, 48)), "mask": gray8(np.zeros((48, 64), np.uint8))},
        )
