"""Masked cross-attention: the UNet attention processors that let each region's text condition only its area.

`install(model)` wraps every attention processor of the UNet for the current job (undone when the
job ends, like LoRA patches). A wrapper does exactly what the processor it wraps does unless the UNet
call carries `cross_attention_kwargs={"regions": payload}` (built per call by `pipelines.regions`):

- `payload["text"]`: one text conditioning per prompt, `{"00": [B, T0, D], "01": [B, T1, D], …}`
  (prompt 0 is the job's own prompt, the background; the rest are the regions, in order);
- `payload["weight"]`: per attention token grid, keyed by its token count, the per-token weight of
  each prompt `[B, Q, P]` (soft region masks resized to that UNet level, summing to 1 per token).

A cross-attention layer then attends to each prompt's tokens separately and blends the results per
token before the output projection: `to_out(Σ_p w_p · softmax(q k_pᵀ) v_p)`. The query projection
and the output projection run once, so a region costs one more pair of K/V projections of its text
and one more `Q × T` attention per cross-attention layer — no extra UNet evaluation. Where one
prompt has weight 1, the blend is exactly that prompt's attention (0·a + 1·b = b in IEEE floats).

Self-attention layers ignore the payload. A processor this module does not know (e.g. an
IP-Adapter's) is run once per prompt with that prompt's text and the outputs are blended the same way.
Only tensors and shapes are used inside (no host reads), so a call with regions can be captured as a
CUDA graph by the fast path like any other.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models.loader import LoadedModel

KWARG = "regions"
EXTRAS_KEY = "region_processors"  # name -> wrapper, kept per model so re-installs reuse the same objects


def _plain(processor: Any) -> bool:
    """A processor whose cross-attention is plain scaled-dot-product attention (diffusers' default)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    return type(processor) is AttnProcessor2_0


class RegionAttnProcessor:
    """Wraps one attention module's processor; see the module docstring."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Any = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        regions: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        if regions is None or not attn.is_cross_attention:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        texts = [regions["text"][k] for k in sorted(regions["text"])]
        if hidden_states.ndim != 3:
            shape = tuple(hidden_states.shape)
            raise ValueError(f"regional attention expects [B, tokens, C] hidden states, got {shape}")
        key = str(hidden_states.shape[1])
        if key not in regions["weight"]:
            raise ValueError(f"no region weights for a {key}-token attention grid (have {sorted(regions['weight'])})")
        weight = regions["weight"][key]  # [B, Q, P]
        simple = attention_mask is None and attn.spatial_norm is None and attn.group_norm is None
        if simple and _plain(self.inner) and not isinstance(encoder_hidden_states, tuple):
            return _blended(attn, hidden_states, texts, weight)
        out = None
        for p, text in enumerate(texts):
            ehs = (text, *encoder_hidden_states[1:]) if isinstance(encoder_hidden_states, tuple) else text
            part = self.inner(attn, hidden_states, ehs, attention_mask, temb) * weight[..., p : p + 1]
            out = part if out is None else out + part
        assert out is not None
        return out


def _blended(attn: Any, hidden_states: torch.Tensor, texts: list[torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
    """`to_out(Σ_p w_p · attention(q, text_p))`: the plain processor's steps, with one K/V per prompt."""
    residual = hidden_states
    batch = hidden_states.shape[0]
    query = attn.to_q(hidden_states)
    mixed = None
    for p, text in enumerate(texts):
        ehs = attn.norm_encoder_hidden_states(text) if attn.norm_cross else text
        key, value = attn.to_k(ehs), attn.to_v(ehs)
        head_dim = key.shape[-1] // attn.heads
        q = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        k = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        v = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
        o = o.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        part = o * weight[..., p : p + 1]
        mixed = part if mixed is None else mixed + part
    assert mixed is not None
    out = attn.to_out[1](attn.to_out[0](mixed))
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def install(model: LoadedModel) -> None:
    """Wrap the UNet's attention processors for this job (a no-op when already wrapped); the model's
    undo list puts the original processors back when the job ends."""
    unet = model.unet
    current = unet.attn_processors
    if all(isinstance(p, RegionAttnProcessor) for p in current.values()):
        return
    cache: dict[str, RegionAttnProcessor] = model.extras.setdefault(EXTRAS_KEY, {})
    wrapped = {}
    for name, proc in current.items():
        w = cache.get(name)
        if w is None or w.inner is not proc:  # the same wrapper objects job after job: compiled UNets keep their guards
            w = cache[name] = RegionAttnProcessor(proc)
        wrapped[name] = w
    unet.set_attn_processor(wrapped)

    def undo() -> None:
        unet.set_attn_processor(dict(current))

    model.push_undo(undo)


def installed(model: LoadedModel) -> bool:
    return any(isinstance(p, RegionAttnProcessor) for p in model.unet.attn_processors.values())
