from __future__ import annotations

import torch
import torch.nn.functional as F

from tiling.color import anchor_low_frequency, lowpass


def _noise(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_anchor_removes_low_frequency_drift_and_keeps_detail() -> None:
    h, w = 128, 160
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, h, dtype=torch.float64), torch.linspace(0, 1, w, dtype=torch.float64), indexing="ij"
    )
    reference = torch.stack([0.3 + 0.4 * xx, 0.5 - 0.2 * yy, 0.4 + 0.1 * xx * yy])[None]
    detail = 0.05 * _noise(h, w, 0)  # high frequencies the refine pass added
    drift = 0.04 * torch.sin(xx * 3)[None, None] + torch.tensor([0.03, -0.02, 0.01]).view(1, 3, 1, 1)
    result = reference + detail + drift
    out = anchor_low_frequency(result, reference, sigma=8)
    # The drift is gone (compared on a coarse scale)...
    err_before = F.avg_pool2d(result - reference - detail, 16).abs().mean()
    err_after = F.avg_pool2d(out - reference - detail, 16).abs().mean()
    assert err_after < 0.1 * err_before
    # ...and the detail is kept (high-pass of the output matches the added detail).
    hp = out - lowpass(out, 8)
    assert torch.corrcoef(torch.stack([hp.flatten(), detail.flatten()]))[0, 1] > 0.95


def test_anchor_identity_and_mask() -> None:
    x = _noise(40, 40, 1)
    assert torch.allclose(anchor_low_frequency(x, x, 6), x)
    mask = torch.zeros(40, 40, dtype=torch.float64)
    out = anchor_low_frequency(x, x + 1, 6, mask)
    assert torch.equal(out, x)
    assert anchor_low_frequency(x.float(), x.float(), 6).dtype == torch.float32


def test_lowpass_small_and_large_sigma_agree_on_smooth_input() -> None:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    x = torch.stack([xx, yy, xx * yy])[None]
    inner = (..., slice(24, -24), slice(24, -24))  # edges are replicate-padded, not extrapolated
    assert torch.allclose(lowpass(x, 3)[inner], x[inner], atol=0.01)
    assert torch.allclose(lowpass(x, 12)[inner], x[inner], atol=0.02)
