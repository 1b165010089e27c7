"""A1111 prompt syntax → text-encoder conditioning.

Weighting: `(text)` ×1.1, `[text]` ÷1.1, `(text:1.3)` explicit, `\\(` escapes. Prompts longer than
75 tokens are encoded in 75-token chunks and concatenated (as A1111 does), so nothing is silently
truncated. Weights scale the token embeddings, then the mean is restored (A1111's normalisation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

_TOKEN = re.compile(r"\\[()\[\]\\]|\(|\)|\[|\]|:\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\)|[^\\()\[\]:]+|:")
CHUNK = 75


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Split `text` into (fragment, weight) pairs following A1111's attention syntax."""
    out: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for item in out[start:]:
            item[1] *= factor

    for m in _TOKEN.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\"):
            out.append([tok[1:], 1.0])
        elif tok == "(":
            round_open.append(len(out))
        elif tok == "[":
            square_open.append(len(out))
        elif weight is not None and round_open:
            scale(round_open.pop(), float(weight))
        elif tok == ")" and round_open:
            scale(round_open.pop(), 1.1)
        elif tok == "]" and square_open:
            scale(square_open.pop(), 1 / 1.1)
        else:
            out.append([tok, 1.0])
    for start in round_open:  # unbalanced: A1111 still applies the open brackets
        scale(start, 1.1)
    for start in square_open:
        scale(start, 1 / 1.1)
    merged: list[tuple[str, float]] = []
    for frag, w in out:
        if merged and merged[-1][1] == w:
            merged[-1] = (merged[-1][0] + frag, w)
        elif frag:
            merged.append((frag, w))
    return merged or [("", 1.0)]


@dataclass(frozen=True)
class Conditioning:
    embeds: torch.Tensor  # [1, 77*k, D]
    pooled: torch.Tensor | None  # [1, D2] for SDXL


def _tokens(tokenizer: Any, text: str) -> tuple[list[int], list[float]]:
    ids: list[int] = []
    weights: list[float] = []
    for frag, w in parse_weights(text):
        frag_ids = tokenizer(frag, add_special_tokens=False, truncation=False).input_ids
        ids += frag_ids
        weights += [w] * len(frag_ids)
    return ids, weights


def _chunks(tokenizer: Any, ids: list[int], weights: list[float], n_chunks: int) -> tuple[torch.Tensor, torch.Tensor]:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows, wrows = [], []
    for c in range(n_chunks):
        part, wpart = ids[c * CHUNK : (c + 1) * CHUNK], weights[c * CHUNK : (c + 1) * CHUNK]
        fill = CHUNK - len(part)
        rows.append([bos] + part + [eos] + [pad] * fill)
        wrows.append([1.0] + wpart + [1.0] + [1.0] * fill)
    return torch.tensor(rows), torch.tensor(wrows)


def n_chunks_for(tokenizer: Any, text: str) -> int:
    return max(1, -(-len(_tokens(tokenizer, text)[0]) // CHUNK))


@torch.no_grad()
def encode(model: Any, text: str, n_chunks: int, clip_skip: int = 1) -> Conditioning:
    """Encode `text` with all of the model's text encoders into `n_chunks` 77-token chunks."""
    hidden_parts, pooled = [], None
    for idx, (enc, tok) in enumerate(zip(model.text_encoders, model.tokenizers, strict=True)):
        ids, weights = _tokens(tok, text)
        rows, wrows = _chunks(tok, ids, weights, n_chunks)
        out = enc(rows.to(model.device), output_hidden_states=True)
        if model.family.xl:
            # SDXL conditions on the penultimate layer of both encoders (no final norm).
            z = out.hidden_states[-(1 + clip_skip)]
            if idx == 1:
                pooled = out.text_embeds[:1]
        elif clip_skip > 1:
            # A1111 clip skip: an earlier layer, still through the final layer norm.
            z = getattr(enc, "text_model", enc).final_layer_norm(out.hidden_states[-clip_skip])
        else:
            z = out.last_hidden_state
        if bool((wrows != 1).any()):
            before = z.mean()
            z = z * wrows.to(z.device, z.dtype)[..., None]
            after = z.mean()
            # A1111 restores the original mean; a (near-)zero mean has nothing to restore.
            if after.abs() > 1e-6 and before.abs() > 1e-6:
                z = z * (before / after)
        hidden_parts.append(z.reshape(1, -1, z.shape[-1]))
    return Conditioning(torch.cat(hidden_parts, dim=-1), pooled)


def encode_pair(model: Any, prompt: str, negative: str, clip_skip: int = 1) -> tuple[Conditioning, Conditioning]:
    """Positive and negative with equal chunk counts (CFG batches them together)."""
    n = max(n_chunks_for(tok, t) for tok in model.tokenizers for t in (prompt, negative))
    return encode(model, prompt, n, clip_skip), encode(model, negative, n, clip_skip)
