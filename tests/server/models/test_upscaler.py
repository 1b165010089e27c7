from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from skimage import data

from server.models.upscaler import (
    UpscalerError,
    find_upscalers,
    lanczos,
    load_upscaler,
    upscale_tiled,
    write_test_upscaler,
)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[80:176, 140:220])  # 96x80, the face


@pytest.mark.parametrize(
    "arch,scale,name", [("esrgan", 4, "ESRGAN"), ("esrgan", 2, "ESRGAN"), ("compact", 4, "RealESRGAN Compact")]
)
def test_tiny_file_is_detected_and_tiled_equals_untiled(tmp_path, photo, arch: str, scale: int, name: str) -> None:
    path = write_test_upscaler(tmp_path, f"{scale}x-test", scale, arch=arch)
    payload = torch.load(path, weights_only=True)  # plain tensors only
    assert set(payload) == ({"params_ema"} if arch == "esrgan" else {"params"})
    desc = load_upscaler(path)
    assert desc.architecture.name == name and desc.scale == scale and desc.purpose == "SR"
    whole = upscale_tiled(desc, photo, tile=512)  # one tile: the untiled reference
    tiled = upscale_tiled(desc, photo, tile=40, overlap=24)
    assert whole.shape == (96 * scale, 80 * scale, 3) and whole.dtype == np.uint8
    assert whole.std() > 5  # the random net produces structure, not a flat clamp
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8


def test_non_sr_models_are_refused(tmp_path) -> None:
    junk = tmp_path / "not-a-model.pth"
    torch.save({"foo.weight": torch.zeros(3, 3)}, junk)
    with pytest.raises(UpscalerError, match="not a model"):
        load_upscaler(junk)


def test_lanczos_fallback_size(photo) -> None:
    out = lanczos(photo, (200, 240))
    assert out.shape == (240, 200, 3) and out.dtype == np.uint8
    assert abs(float(out.mean()) - float(photo.mean())) < 2


def test_discovery_in_a1111_and_comfyui_trees(tmp_path) -> None:
    root = tmp_path / "models"
    write_test_upscaler(root / "ESRGAN", "4x-a1111")
    write_test_upscaler(root / "RealESRGAN", "RealESRGAN_x4plus", arch="compact")
    write_test_upscaler(root / "upscale_models" / "sub", "2x-comfy", 2)
    (root / "upscale_models" / "notes.txt").write_text("not a model")
    outside = write_test_upscaler(tmp_path / "elsewhere", "outside")
    os.symlink(outside, root / "ESRGAN" / "linked.pth")
    found = find_upscalers(root)
    # A linked file counts wherever it points (the one walking policy, tests/server/models/test_files.py).
    assert set(found) == {"4x-a1111", "RealESRGAN_x4plus", "sub/2x-comfy", "linked"}
    assert found["linked"].resolve() == outside.resolve()
    assert find_upscalers(tmp_path / "missing") == {}
