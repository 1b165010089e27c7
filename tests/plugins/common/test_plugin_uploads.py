"""Client-side upload de-duplication (`plugins/common/uploads.py`): the changed rectangle is exact,
and whatever form the client picks, the server's image store rebuilds the very pixels it meant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from skimage import data

from plugins.common.jobs import WireImage
from plugins.common.uploads import Uploads, changed_rect, wire_hash
from server import images
from server.imagestore import ImageStore, pixels_hash
from server.protocol import ImageRef, NeedImage, parse_image

PHOTO = np.dstack([data.astronaut()[:64, :96], np.full((64, 96), 255, np.uint8)])


def _wire(px: np.ndarray) -> WireImage:
    h, w = px.shape[:2]
    return WireImage.rgba(px.tobytes(), w, h) if px.ndim == 3 else WireImage.gray(px.tobytes(), w, h)


def _server_side(store: ImageStore, name: str, obj: dict) -> np.ndarray:
    def decode(n: str, ref: ImageRef) -> np.ndarray:
        return images.decode(ref, 1 << 24, n)

    return store.materialize(name, parse_image(obj, name, {}), decode)


@given(
    st.integers(0, 95),
    st.integers(0, 63),
    st.integers(1, 40),
    st.integers(1, 40),
    st.booleans(),
)
def test_changed_rect_is_the_bounding_box_of_the_difference(x: int, y: int, w: int, h: int, gray: bool) -> None:
    bpp = 1 if gray else 4
    old = PHOTO[..., 0].copy() if gray else PHOTO.copy()
    new = old.copy()
    new[y : y + h, x : x + w] ^= 0x5A  # every byte in the box changes
    rect = changed_rect(old.tobytes(), new.tobytes(), 96, 64, bpp)
    ys, xs = np.nonzero((old != new).reshape(64, 96, -1).any(-1))
    assert rect is not None
    assert (rect.x, rect.y, rect.right, rect.bottom) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert changed_rect(old.tobytes(), old.tobytes(), 96, 64, bpp) is None


def test_full_then_hash_only_then_patch_rebuild_the_same_pixels_on_the_server() -> None:
    up, store = Uploads(), ImageStore(1 << 24)
    first = up.wire("init", _wire(PHOTO))
    assert first["hash"] == pixels_hash(PHOTO) and first["data"] == PHOTO.tobytes()
    assert np.array_equal(_server_side(store, "init", first), PHOTO)

    again = up.wire("init", _wire(PHOTO))
    assert again == {"hash": pixels_hash(PHOTO)}
    assert np.array_equal(_server_side(store, "init", again), PHOTO)

    stroke = PHOTO.copy()
    stroke[10:14, 20:50] = [0, 0, 255, 255]
    patch = up.wire("init", _wire(stroke))
    assert (patch["x"], patch["y"], patch["w"], patch["h"]) == (20, 10, 30, 4)
    assert patch["base"] == pixels_hash(PHOTO) and patch["hash"] == wire_hash(_wire(stroke))
    assert len(patch["data"]) == 30 * 4 * 4
    assert np.array_equal(_server_side(store, "init", patch), stroke)


def test_a_large_change_goes_in_full_and_encoded_images_are_sent_as_they_are() -> None:
    up = Uploads()
    up.wire("init", _wire(PHOTO))
    obj = up.wire("init", _wire(255 - PHOTO))
    assert "base" not in obj and len(obj["data"]) == PHOTO.nbytes
    png = WireImage("png", images.encode_png(PHOTO))
    assert up.wire("init", png) == png.to_wire()


def test_need_image_then_forget_sends_it_in_full() -> None:
    up, store = Uploads(), ImageStore(1 << 24)
    up.wire("mask", _wire(PHOTO[..., 0].copy()))  # the client believes the server holds it; it does not
    obj = up.wire("mask", _wire(PHOTO[..., 0].copy()))
    with pytest.raises(NeedImage) as err:
        _server_side(store, "mask", obj)
    assert err.value.names == ["mask"]
    up.forget([obj["hash"]])
    full = up.wire("mask", _wire(PHOTO[..., 0].copy()))
    assert np.array_equal(_server_side(store, "mask", full), PHOTO[..., 0])
