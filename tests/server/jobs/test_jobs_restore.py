"""`restore` with a tiny random-weight GFPGAN in a models tree of its own: the full detect → align
→ restore → paste path once, the result format, a face-free photo, and the missing-model error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from server.client import ServerError
from tests.server.jobs.edit_helpers import apply, job, photo, pixels, rgba8


def test_restore_end_to_end(restore_server) -> None:
    img = photo("astronaut", 256, 256)
    res = job(restore_server.url, "restore", {"fidelity": 0.7, "blend": 0.8}, {"image": rgba8(img)})
    p = res["params"]
    assert p["model"] == "tiny-gfpgan" and p["fidelity"] == 0.7 and p["blend"] == 0.8
    assert len(p["faces"]) == 1 and len(res["images"]) == 1
    r = res["images"][0]
    fx, fy, fw, fh = p["faces"][0]
    assert r["x"] < fx + fw and fx < r["x"] + r["w"] and r["y"] < fy + fh and fy < r["y"] + r["h"]
    out, touched = apply(img, res)
    assert np.array_equal(out[~touched], img[~touched])
    cx, cy = fx + fw // 2, fy + fh // 2
    assert np.abs(out[cy - 5 : cy + 5, cx - 5 : cx + 5].astype(int) - img[cy - 5 : cy + 5, cx - 5 : cx + 5]).mean() > 1


def test_restore_honours_result_format(restore_server) -> None:
    img = {"image": rgba8(photo("astronaut", 256, 256))}
    encoded = job(restore_server.url, "restore", {}, img)
    raw = job(restore_server.url, "restore", {"result_format": "rgba8"}, img)
    assert [r["format"] for r in encoded["images"]] == ["png"] and encoded["params"]["result_format"] == "png"
    assert [r["format"] for r in raw["images"]] == ["rgba8"] and raw["params"]["result_format"] == "rgba8"
    assert np.array_equal(pixels(raw["images"][0]), pixels(encoded["images"][0]))
    with pytest.raises(ServerError) as err:
        job(restore_server.url, "restore", {"result_format": "bmp"}, img)
    assert err.value.code == "bad_field" and "params.result_format" in str(err.value)


def test_restore_without_faces_is_a_message(restore_server) -> None:
    res = job(restore_server.url, "restore", {}, {"image": rgba8(photo("coffee", 120, 90))})
    assert res["images"] == [] and res["params"]["messages"] == ["no faces found"]


def test_missing_restorer_names_file_and_folder(restore_server, server, models_dir: Path) -> None:
    img = rgba8(photo("coffee", 32, 32))
    with pytest.raises(ServerError) as err:
        job(restore_server.url, "restore", {"model": "codeformer-v0.1.0"}, {"image": img})
    assert err.value.code == "missing_model"
    assert "codeformer-v0.1.0.pth" in str(err.value) and "Codeformer" in str(err.value)
    assert "tiny-gfpgan" in str(err.value)  # what is available
    with pytest.raises(ServerError) as err:  # the session server's tree has no restorer at all
        job(server.url, "restore", {}, {"image": img})
    assert err.value.code == "missing_model"
    assert "GFPGANv1.4.pth" in str(err.value) and str(models_dir / "GFPGAN") in str(err.value)
    with pytest.raises(ServerError) as err:
        job(restore_server.url, "restore", {"model": "../../etc/passwd"}, {"image": img})
    assert err.value.code == "bad_name"
