"""`inpaint` through a real server: only the blend region changes, detail resolution, 9-channel
checkpoints, tiled full-canvas selections and clear errors for bad masks."""

from __future__ import annotations

import numpy as np
import pytest

from server.client import ServerError
from tests.server.jobs.edit_helpers import apply, gray8, job, photo, png, rgba8

W, H = 100, 84  # not multiples of 8 on purpose


def soft_disc(w: int, h: int, cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(xx - cx, yy - cy)
    return (np.clip((r - d) / 4, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl", "tiny-sd15-inpaint"])
def test_inpaint_changes_only_the_blend_region(server, model: str) -> None:
    img = photo("astronaut", W, H)
    mask = soft_disc(W, H, 60, 30, 12)
    res = job(
        server.url,
        "inpaint",
        {"prompt": "a helmet", "model": model, "seed": 3, "steps": 3},
        {"image": rgba8(img), "mask": gray8(mask)},
    )
    assert len(res["images"]) == 1
    out, touched = apply(img, res)
    # Outside every pixel the returned alpha reaches: bit-identical to the original.
    assert np.array_equal(out[~touched], img[~touched])
    # The rect is only the grown selection, not the whole crop or canvas.
    r = res["images"][0]
    assert r["w"] < W and r["h"] < H
    assert touched[mask > 0].all() and not touched[0, 0]
    # Inside the selection the picture changed.
    inside = mask == 255
    assert np.abs(out[inside].astype(int) - img[inside]).mean() > 2
    p = res["params"]
    assert p["inpaint_model"] is model.endswith("inpaint")
    assert p["strength"] == (1.0 if model.endswith("inpaint") else 0.75)
    assert p["color_match"] is True and p["seed"] == 3


def test_small_selection_is_generated_at_detail_resolution(server) -> None:
    img = photo("astronaut", 200, 160)
    mask = np.zeros((160, 200), np.uint8)
    mask[70:74, 90:93] = 255  # a few pixels
    res = job(
        server.url, "inpaint", {"model": "tiny-sd15", "seed": 1, "steps": 2}, {"image": rgba8(img), "mask": png(mask)}
    )
    crop, size = res["params"]["crop"], res["params"]["process_size"]
    assert size[0] > crop[2] and size[1] > crop[3]  # upscaled towards the model's native 64 px
    assert size[0] % 8 == 0 and size[1] % 8 == 0
    out, touched = apply(img, res)
    assert np.array_equal(out[~touched], img[~touched])
    r = res["images"][0]
    assert r["x"] <= 90 and r["y"] <= 70 and r["x"] + r["w"] >= 93 and r["y"] + r["h"] >= 74


def test_all_white_mask_inpaints_the_whole_canvas(server) -> None:
    img = photo("coffee", W, H)
    res = job(
        server.url,
        "inpaint",
        {"model": "tiny-sd15", "seed": 2, "steps": 2, "strength": 1.0},
        {"image": rgba8(img), "mask": gray8(np.full((H, W), 255, np.uint8))},
    )
    (r,) = res["images"]
    assert (r["x"], r["y"], r["w"], r["h"]) == (0, 0, W, H)
    out, _ = apply(img, res)
    assert (out[..., 3] == 255).all()
    assert np.abs(out.astype(int) - img).mean() > 5


def rejected_mask(url: str, mask: np.ndarray) -> pytest.ExceptionInfo[ServerError]:
    """Inpaint a W x H photo with `mask`: the server must refuse it."""
    with pytest.raises(ServerError) as err:
        job(url, "inpaint", {"model": "tiny-sd15"}, {"image": rgba8(photo("coffee", W, H)), "mask": gray8(mask)})
    return err


def test_wrong_size_mask_names_both_sizes(server) -> None:
    err = rejected_mask(server.url, np.full((48, 64), 255, np.uint8))
    assert err.value.code == "bad_image"
    assert "64x48" in str(err.value) and f"{W}x{H}" in str(err.value) and "mask" in str(err.value)


def test_empty_mask_is_a_clear_error(server) -> None:
    err = rejected_mask(server.url, np.zeros((H, W), np.uint8))
    assert err.value.code == "bad_image" and "empty" in str(err.value)


def test_missing_mask_and_bad_params(server) -> None:
    img = rgba8(photo("coffee", W, H))
    with pytest.raises(ServerError, match="images.mask: missing"):
        job(server.url, "inpaint", {"model": "tiny-sd15"}, {"image": img})
    with pytest.raises(ServerError, match="params.fill"):
        job(
            server.url,
            "inpaint",
            {"model": "tiny-sd15", "fill": "noise"},
            {"image": img, "mask": gray8(np.full((H, W), 255, np.uint8))},
        )
