"""Images held by content hash (`server.imagestore`) and the three image-object forms on the wire
(`protocol.parse_image`): bytes + hash, hash only, a changed rectangle against a held image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from server import images
from server.imagestore import ImageStore, pixels_hash
from server.protocol import ImageRef, NeedImage, ProtocolError, image_hash, parse_image

PHOTO = np.dstack([data.astronaut()[:96, :128], np.full((96, 128), 255, np.uint8)])


def _decode(name: str, ref: ImageRef) -> np.ndarray:
    return images.decode(ref, 1 << 24, name)


def _raw(px: np.ndarray, **extra) -> dict:
    fmt = "gray8" if px.ndim == 2 else "rgba8"
    return {"format": fmt, "w": px.shape[1], "h": px.shape[0], "data": px.tobytes()} | extra


def test_the_hash_is_over_decoded_pixels_whatever_the_format() -> None:
    digest = pixels_hash(PHOTO)
    assert digest == image_hash("rgba8", 128, 96, PHOTO.tobytes())
    png = {"format": "png", "data": images.encode_png(PHOTO), "hash": digest}
    store = ImageStore(1 << 24)
    out = store.materialize("init", parse_image(png, "init", {}), _decode)
    assert np.array_equal(out, PHOTO) and digest in store
    gray = PHOTO[..., 1].copy()
    assert pixels_hash(gray) == image_hash("gray8", 128, 96, gray.tobytes()) != digest


def test_hash_only_reference_comes_back_as_a_fresh_copy() -> None:
    store = ImageStore(1 << 24)
    digest = pixels_hash(PHOTO)
    store.materialize("init", parse_image(_raw(PHOTO, hash=digest), "init", {}), _decode)
    ref = parse_image({"hash": digest}, "init", {})
    assert ref.by_hash and ref.data == b""
    first = store.materialize("init", ref, _decode)
    first[:] = 0  # a job may change its inputs: the held image is not affected
    assert np.array_equal(store.materialize("init", ref, _decode), PHOTO)


def test_unknown_hashes_are_listed_for_need_image() -> None:
    store = ImageStore(1 << 24)
    store.put(pixels_hash(PHOTO), PHOTO)
    refs = {
        "image": parse_image({"hash": pixels_hash(PHOTO)}, "image", {}),
        "mask": parse_image({"hash": "0" * 64}, "mask", {}),
        "init": parse_image(_raw(PHOTO[:8, :8], base="1" * 64, x=0, y=0, hash="2" * 64), "init", {}),
    }
    assert store.missing(refs) == ["mask", "init"]
    with pytest.raises(NeedImage) as err:
        store.materialize("mask", refs["mask"], _decode, "j1")
    ev = err.value.event()
    assert (ev["code"], ev["id"], ev["images"]) == ("need_image", "j1", ["mask"])


def test_a_changed_rectangle_patches_the_held_image() -> None:
    store = ImageStore(1 << 24)
    store.put(pixels_hash(PHOTO), PHOTO)
    changed = PHOTO.copy()
    changed[40:60, 30:90] = [255, 0, 0, 255]  # a red stroke
    patch = np.ascontiguousarray(changed[40:60, 30:90])
    wire = _raw(patch, base=pixels_hash(PHOTO), x=30, y=40, hash=pixels_hash(changed))
    out = store.materialize("init", parse_image(wire, "init", {}), _decode)
    assert np.array_equal(out, changed)
    assert np.array_equal(store.get(pixels_hash(changed)), changed)  # the patched whole is held too
    assert np.array_equal(store.get(pixels_hash(PHOTO)), PHOTO)  # and the base is unchanged


def test_a_gray_mask_patch() -> None:
    store = ImageStore(1 << 24)
    mask = np.zeros((96, 128), np.uint8)
    store.put(pixels_hash(mask), mask)
    grown = mask.copy()
    grown[10:20, 10:30] = 255
    patch = np.ascontiguousarray(grown[10:20, 10:30])
    wire = _raw(patch, base=pixels_hash(mask), x=10, y=10, hash=pixels_hash(grown))
    assert np.array_equal(store.materialize("mask", parse_image(wire, "mask", {}), _decode), grown)
    png = {"format": "png", "data": images.encode_png(np.dstack([patch] * 3)), "base": pixels_hash(grown)}
    again = store.materialize(
        "mask", parse_image(png | {"x": 10, "y": 10, "hash": pixels_hash(grown)}, "m", {}), _decode
    )
    assert np.array_equal(again, grown)


@pytest.mark.parametrize(
    ("wire", "words"),
    [
        ({"format": "rgba8", "w": 8, "h": 8, "data": bytes(256), "base": "a" * 64, "x": 0, "y": 0}, "needs the hash"),
        ({"hash": "xyz"}, "sha256 hex digest"),
        ({"hash": "A" * 64}, "sha256 hex digest"),
        ({"format": "rgba8", "w": 8, "h": 8, "data": bytes(256), "base": "a" * 64, "hash": "b" * 64}, ".x: missing"),
    ],
)
def test_malformed_references_are_bad_fields(wire: dict, words: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_image(wire, "init", {})
    assert err.value.code == "bad_field" and words in err.value.message


def test_wrong_hashes_and_patches_outside_are_bad_images() -> None:
    store = ImageStore(1 << 24)
    with pytest.raises(ProtocolError, match="hash to") as err:
        store.materialize("init", parse_image(_raw(PHOTO, hash="f" * 64), "init", {}), _decode)
    assert err.value.code == "bad_image" and "f" * 64 not in store
    store.put(pixels_hash(PHOTO), PHOTO)
    outside = _raw(PHOTO[:10, :10].copy(), base=pixels_hash(PHOTO), x=120, y=0, hash="e" * 64)
    with pytest.raises(ProtocolError, match="outside the 128x96 base"):
        store.materialize("init", parse_image(outside, "init", {}), _decode)
    gray_on_rgba = _raw(np.zeros((4, 4), np.uint8), base=pixels_hash(PHOTO), x=0, y=0, hash="e" * 64)
    with pytest.raises(ProtocolError, match="gray8 patch"):
        store.materialize("init", parse_image(gray_on_rgba, "init", {}), _decode)


def test_the_store_stays_within_its_budget_least_recently_used_first() -> None:
    tiles = [np.full((32, 32, 4), i, np.uint8) for i in range(6)]  # 4 KiB each
    store = ImageStore(3 * 4096)
    for t in tiles[:3]:
        store.put(pixels_hash(t), t)
    store.get(pixels_hash(tiles[0]))  # used: the oldest is now tiles[1]
    store.put(pixels_hash(tiles[3]), tiles[3])
    assert [pixels_hash(t) in store for t in tiles[:4]] == [True, False, True, True]
    assert store.size <= store.max_bytes and len(store) == 3
    store.put("0" * 64, np.zeros((64, 64, 4), np.uint8))  # larger than the whole budget: not held
    assert "0" * 64 not in store and len(store) == 3
