"""Batch-invariant UNet: image i of a batch comes out bit-identical to the same image sampled alone.

Convolutions, attention and norms compute each batch element the same way whatever the batch
size (for batches of two or more), but a matrix product with only a few rows is not: BLAS picks
another kernel for 1, for 2–3 and for 4+ rows, and the last bits differ. In the UNet the only
products with that few rows are the per-sample embedding projections (timestep embedding, SDXL's
added embedding, every resnet's `time_emb_proj`), whose input has one row per batch element.
`PairedLinear` computes such inputs two rows at a time, so every row takes the two-row path that a
single image with classifier-free guidance (uncond + cond) takes anyway: a batch of N (2N rows)
gives each image exactly the bits of a batch of 1, and a batch of 1 the bits of an unmodified UNet.
Token-wise projections (3-D inputs, hundreds of rows per image) are untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ROWS = 2  # rows per product: what one image with classifier-free guidance has


class PairedLinear(torch.nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[0] <= ROWS:
            return F.linear(x, self.weight, self.bias)
        n = x.shape[0]
        if n % ROWS:  # an odd tail is padded with a copy of its row (dropped again below)
            x = torch.cat([x, x[-1:].expand(ROWS - n % ROWS, -1)])
        parts = [F.linear(x[i : i + ROWS], self.weight, self.bias) for i in range(0, x.shape[0], ROWS)]
        return torch.cat(parts)[:n]


def make_batch_invariant(unet: torch.nn.Module) -> torch.nn.Module:
    """Switch the UNet's `nn.Linear` layers to `PairedLinear` in place (same parameters, same state dict)."""
    for module in unet.modules():
        if type(module) is torch.nn.Linear:
            module.__class__ = PairedLinear
    return unet
