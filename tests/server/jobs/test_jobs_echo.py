"""`echo` through a real server: the image comes back unchanged in the asked `result_format`."""

from __future__ import annotations

import numpy as np
import pytest

from server.client import ServerError
from tests.server.jobs.edit_helpers import gray8, job, photo, pixels, rgba8


def test_echo_in_every_result_format(server) -> None:
    img = photo("coffee", 40, 30)
    for fmt in ("png", "rgba8", "webp", None):
        res = job(server.url, "echo", {} if fmt is None else {"result_format": fmt}, {"image": rgba8(img)})
        (r,) = res["images"]
        assert r["format"] == (fmt or "png") == res["params"]["result_format"]
        assert res["canvas"] == {"w": 40, "h": 30} and (r["x"], r["y"], r["w"], r["h"]) == (0, 0, 40, 30)
        if fmt != "webp":  # lossy
            assert np.array_equal(pixels(r), img)


def test_echo_gray_and_bad_format(server) -> None:
    mask = np.arange(12 * 10, dtype=np.uint8).reshape(10, 12)
    (r,) = job(server.url, "echo", {"result_format": "rgba8"}, {"image": gray8(mask)})["images"]
    assert np.array_equal(pixels(r), np.dstack([mask, mask, mask, np.full_like(mask, 255)]))
    with pytest.raises(ServerError) as err:
        job(server.url, "echo", {"result_format": "tiff"}, {"image": gray8(mask)})
    assert err.value.code == "bad_field" and "result_format" in str(err.value)
