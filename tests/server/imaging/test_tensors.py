"""The one uint8 <-> float tensor rule (`server/imaging/tensors.py`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.imaging.tensors import to_pixels, to_tensor

ALL = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)  # every uint8 value, HxWx3


@pytest.mark.parametrize("signed", [True, False])
def test_round_trip_is_exact_for_every_value(signed: bool) -> None:
    rgba = np.dstack([ALL, np.full(ALL.shape[:2], 7, np.uint8)])  # alpha is dropped
    x = to_tensor(rgba, signed=signed)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    assert (x.min().item(), x.max().item()) == ((-1.0, 1.0) if signed else (0.0, 1.0))
    np.testing.assert_array_equal(to_pixels(x, signed=signed), ALL)
    np.testing.assert_array_equal(to_pixels(x[0], signed=signed), ALL)


def test_out_of_range_values_clamp_and_halves_round_to_even() -> None:
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).view(1, 1, 5).expand(3, 1, 5)
    assert to_pixels(x)[0, :, 0].tolist() == [0, 0, 128, 255, 255]  # 0 -> 127.5 -> 128 (even)
    assert to_pixels(x, signed=False)[0, :, 0].tolist() == [0, 0, 0, 255, 255]
    half = torch.tensor([0.5 / 255, 1.5 / 255, 2.5 / 255], dtype=torch.float64).view(1, 1, 3).expand(3, 1, 3)
    assert to_pixels(half, signed=False)[0, :, 0].tolist() == [0, 2, 2]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_model_dtype_inputs_match_scaling_in_that_dtype(dtype: torch.dtype) -> None:
    # Upscalers and restorers get `to_tensor(..., signed=False).to(dtype)`: the same values as dividing
    # in the model's dtype, for all 256 inputs, so their outputs did not move when they adopted it.
    direct = torch.from_numpy(ALL).permute(2, 0, 1)[None].to(dtype) / 255.0
    assert torch.equal(to_tensor(ALL, signed=False).to(dtype), direct)
    assert torch.equal(to_tensor(ALL, signed=False).to(dtype) * 2 - 1, direct * 2 - 1)
