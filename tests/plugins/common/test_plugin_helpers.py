"""Geometry, mask, pixel-format, PNG and request helpers of the shared plugin client (no server)."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from plugins.common import geometry, jobs, pixels, png
from plugins.common.geometry import Rect
from server import protocol


def test_rect_is_the_one_rect() -> None:
    # From the checkout the client uses tiling's Rect itself; a built plugin carries a copy of that file.
    import tiling.geometry

    assert Rect is tiling.geometry.Rect


@settings(max_examples=50, deadline=None)
@given(w=st.integers(1, 40), h=st.integers(1, 40), data=st.data())
def test_mask_bounds_matches_numpy(w: int, h: int, data: st.DataObject) -> None:
    arr = np.array(
        data.draw(st.lists(st.sampled_from([0, 0, 0, 1, 128, 255]), min_size=w * h, max_size=w * h)), dtype=np.uint8
    ).reshape(h, w)
    r = geometry.mask_bounds(arr.tobytes(), w, h)
    ys, xs = np.nonzero(arr)
    if len(xs) == 0:
        assert r.is_empty
    else:
        assert r == Rect.from_bounds(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_outpaint_sides() -> None:
    assert geometry.touching_sides(Rect(200, 0, 56, 256), 256, 256) == ["right", "top", "bottom"]
    assert geometry.touching_sides(Rect(1, 100, 20, 20), 256, 256) == ["left"]
    assert geometry.touching_sides(Rect(100, 100, 20, 20), 256, 256) == []
    assert geometry.extend_amounts("right", 64) == {"left": 0, "right": 64, "top": 0, "bottom": 0}


def test_fit_size() -> None:
    assert geometry.fit_size(4000, 2000, 1024 * 1024) == (1448, 720)
    assert geometry.fit_size(512, 512, 1 << 20) == (512, 512)
    assert geometry.fit_size(3, 1000, 1 << 20) == (8, 1000 // 8 * 8)


def test_bgra_rgba_roundtrip_and_alpha() -> None:
    bgra = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    rgba = pixels.bgra_to_rgba(bgra)
    assert rgba == bytes([3, 2, 1, 4, 7, 6, 5, 8])
    assert pixels.rgba_to_bgra(rgba) == bgra
    assert pixels.opaque(rgba)[3::4] == b"\xff\xff"
    assert pixels.gray_to_rgba(b"\x10") == b"\x10\x10\x10\xff"
    with pytest.raises(ValueError):
        pixels.swap_rb(b"123")


def test_crop() -> None:
    img = bytes(range(16))  # 4x4 gray
    assert pixels.crop(img, 4, 1, 1, 1, 2, 2) == bytes([5, 6, 9, 10])
    rgba = bytes(range(64))  # 4x4 RGBA
    assert pixels.crop(rgba, 4, 4, 3, 2, 1, 2) == bytes(range(44, 48)) + bytes(range(60, 64))


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "LA", "P"])
def test_png_decode_matches_pil(mode: str) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (13, 17, 4), dtype=np.uint8)
    arr[:6] = arr[0]  # smooth rows make PIL pick every filter type
    img = Image.fromarray(arr, "RGBA").convert(mode)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=mode != "P")
    w, h, rgba = png.decode(buf.getvalue())
    assert (w, h) == (17, 13)
    assert rgba == img.convert("RGBA").tobytes()


def test_png_encode_readable_by_pil() -> None:
    arr = np.arange(8 * 5 * 4, dtype=np.uint8).reshape(5, 8, 4)
    data = png.encode(arr.tobytes(), 8, 5)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), arr)
    assert png.decode(data) == (8, 5, arr.tobytes())
    gray = png.encode(bytes(range(6)), 3, 2, channels=1)
    assert Image.open(io.BytesIO(gray)).mode == "L"


def test_png_refuses_bombs_and_garbage() -> None:
    big = png._SIG + png._chunk(b"IHDR", (100000).to_bytes(4, "big") * 2 + bytes([8, 6, 0, 0, 0]))
    big += png._chunk(b"IDAT", zlib.compress(b"\0" * 100)) + png._chunk(b"IEND", b"")
    with pytest.raises(png.PNGError):
        png.decode(big, max_pixels=1 << 24)
    with pytest.raises(png.PNGError):
        png.decode(b"not a png at all")


def test_request_messages_validate_against_protocol() -> None:
    init = jobs.WireImage.rgba(b"\x01" * 64 * 4, 8, 8)
    req = jobs.GenerateRequest(sampling=jobs.Sampling(prompt="a cat", seed=5, steps=4), strength=0.5, init=init)
    msg = req.message("job-1")
    assert msg["kind"] == "generate" and msg["id"] == "job-1" and req.prompt == "a cat"
    # the sampling object travels flat, as the server's params; None = the server's default
    assert msg["params"] == {"prompt": "a cat", "negative": "", "seed": 5, "steps": 4, "strength": 0.5}
    ref = protocol.parse_image(msg["images"]["init"], "init", {})
    assert (ref.format, ref.w, ref.h) == ("rgba8", 8, 8)
    frame = protocol.unpack(protocol.pack(msg), 1 << 20)
    assert frame["images"]["init"]["data"] == init.data
    up = jobs.UpscaleRequest(scale=2.0, region=Rect(1, 2, 3, 4), image=init)
    assert up.params()["region"] == {"x": 1, "y": 2, "w": 3, "h": 4}
    restore = jobs.RestoreRequest(result_format="rgba8", model="GFPGANv1.4", blend=0.5)
    assert restore.params() == {"result_format": "rgba8", "model": "GFPGANv1.4", "blend": 0.5} and restore.prompt == ""
    assert set(jobs.REQUEST_TYPES) == {"generate", "inpaint", "outpaint", "face", "restore", "upscale"}
    with pytest.raises(ValueError):
        jobs.WireImage.gray(b"12", 3, 1)


def test_large_images_go_first_as_blobs() -> None:
    big = jobs.WireImage.rgba(bytes(range(256)) * 16, 64, 16)  # 4 KiB
    small = jobs.WireImage.gray(b"\xff" * 64 * 16, 64, 16)  # 1 KiB
    req = jobs.InpaintRequest(sampling=jobs.Sampling(prompt="p"), image=big, mask=small)
    refs = iter(range(7, 100))
    frames = req.frames("j", 1500, refs)
    blobs, (job,) = frames[:-1], frames[-1:]
    assert [f["type"] for f in blobs] == ["blob"] * 3 and job["type"] == "job"
    assert job["images"]["image"] == {"format": "rgba8", "w": 64, "h": 16, "blob": "up7.image"}
    assert job["images"]["mask"]["data"] == small.data  # under the chunk size: stays inline
    assembler = protocol.BlobAssembler(1 << 20)  # what the server does with them
    assert [assembler.add(protocol.unpack(protocol.pack(f), 1 << 20)) for f in blobs] == [None, None, "up7.image"]
    assert assembler.done["up7.image"] == big.data
    assert next(refs) == 8  # one ref per uploaded image


def test_mask_alpha_cuts_rgba_by_a_soft_mask() -> None:
    rgba = bytes([10, 20, 30, 255, 1, 2, 3, 128, 9, 9, 9, 255])
    out = pixels.mask_alpha(rgba, bytes([255, 255, 0]))
    assert out == bytes([10, 20, 30, 255, 1, 2, 3, 128, 9, 9, 9, 0])  # colour kept, alpha scaled
    assert pixels.mask_alpha(rgba, bytes([128, 0, 51]))[3::4] == bytes([128, 0, 51])
    with pytest.raises(ValueError, match="mask"):
        pixels.mask_alpha(rgba, b"\x00")
