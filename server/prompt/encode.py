"""Prompt text → text-encoder conditioning: 75-token chunks, weights, embedding vectors, clip skip, blends."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ModelLoadError, UnknownModel
from ..models import embeddings
from .networks import activate_networks, text_loras
from .syntax import BREAK, CHUNK, NetworkTag, explicit_embeddings, extract_networks, parse_weights


@dataclass(frozen=True)
class Conditioning:
    embeds: torch.Tensor  # [1, 77*k, D]
    pooled: torch.Tensor | None  # [1, D2] for SDXL


@dataclass(frozen=True)
class Blend:
    """Mix in a second prompt's embeddings: (1 - ratio) * prompt + ratio * blend prompt."""

    prompt: str
    ratio: float


Token = tuple[int, float, "torch.Tensor | None"]  # id, weight, substituted input vector


class _Embeddings:
    """Known embedding names of the model's models folder, loaded on first use."""

    def __init__(self, model: Any) -> None:
        self.slots = list(zip(_encoder_roles(model), [_width(e) for e in model.text_encoders], strict=False))
        manager = model.extras.get("manager")
        self.files = dict(manager.assets.get("embeddings", {})) if manager is not None else {}
        self.pattern = None
        if self.files:
            names = sorted(self.files, key=len, reverse=True)
            alts = "|".join(re.escape(n) for n in names)
            self.pattern = re.compile(rf"(?:\bembedding:)?(?<![\w\-])({alts})(?![\w\-])", re.IGNORECASE)
        self.lower = {n.lower(): n for n in self.files}

    def split(self, text: str) -> list[str | tuple[str]]:
        """Text pieces and (name,) references to embeddings; unknown explicit references are errors."""
        for name in explicit_embeddings(text):
            if name.lower() not in self.lower:
                avail = ", ".join(sorted(self.files)[:10]) or "none"
                raise UnknownModel(f"unknown embedding {name!r}; available: {avail}")
        if self.pattern is None:
            return [text]
        out: list[str | tuple[str]] = []
        pos = 0
        for m in self.pattern.finditer(text):
            name = self.lower[m.group(1).lower()]
            explicit = m.group(0).lower().startswith("embedding:")
            if not explicit and not self.compatible(name):
                continue  # a bare word naming an embedding for another model family stays a word (A1111)
            out += [text[pos : m.start()], (name,)]
            pos = m.end()
        out.append(text[pos:])
        return [p for p in out if p]

    def compatible(self, name: str) -> bool:
        try:
            for role, width in self.slots:
                self.vectors(name, role, width)
        except ModelLoadError:
            return False
        return True

    def vectors(self, name: str, role: str, width: int) -> torch.Tensor:
        try:
            return embeddings.for_encoder(embeddings.load(self.files[name]), role, width, name)
        except (embeddings.BadEmbedding, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"embedding {name!r}: {exc}") from exc


def _encoder_roles(model: Any) -> list[str]:
    if model.family.refiner:
        return ["clip_g"]
    return ["clip_l", "clip_g"][: len(model.text_encoders)]


def chunks_of(
    tokenizer: Any, text: str, emb: _Embeddings | None = None, role: str = "clip_l", width: int = 0
) -> list[list[Token]]:
    """Tokens in 75-token chunks: `BREAK` closes a chunk, an embedding never straddles two."""
    chunks: list[list[Token]] = [[]]
    for frag, w in parse_weights(text):
        if frag == BREAK:
            if chunks[-1]:
                chunks.append([])
            continue
        for piece in emb.split(frag) if emb is not None else [frag]:
            if isinstance(piece, tuple):
                vecs = emb.vectors(piece[0], role, width)  # type: ignore[union-attr]
                rows: list[Token] = [(0, w, vecs[i]) for i in range(vecs.shape[0])]
                if len(chunks[-1]) + len(rows) > CHUNK and len(rows) <= CHUNK and chunks[-1]:
                    chunks.append([])
            else:
                ids = tokenizer(piece, add_special_tokens=False, truncation=False).input_ids
                rows = [(i, w, None) for i in ids]
            for row in rows:
                if len(chunks[-1]) >= CHUNK:
                    chunks.append([])
                chunks[-1].append(row)
    if len(chunks) > 1 and not chunks[-1]:
        chunks.pop()
    return chunks


def n_chunks_for(tokenizer: Any, text: str, model: Any = None) -> int:
    emb = _Embeddings(model) if model is not None else None
    if emb is not None and model is not None:
        roles, widths = _encoder_roles(model), [_width(e) for e in model.text_encoders]
        return max(len(chunks_of(tokenizer, text, emb, r, w)) for r, w in zip(roles, widths, strict=False))
    return len(chunks_of(tokenizer, text))


def _width(enc: Any) -> int:
    return int(enc.get_input_embeddings().weight.shape[1])


def _rows(tokenizer: Any, chunks: list[list[Token]], n_chunks: int, width: int):  # noqa: ANN202
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids, weights = [], []
    vec_mask = torch.zeros(n_chunks, CHUNK + 2, dtype=torch.bool)
    vecs = torch.zeros(n_chunks, CHUNK + 2, width)
    for c in range(n_chunks):
        part = chunks[c] if c < len(chunks) else []
        fill = CHUNK - len(part)
        ids.append([bos] + [t[0] for t in part] + [eos] + [pad] * fill)
        weights.append([1.0] + [t[1] for t in part] + [1.0] + [1.0] * fill)
        for j, t in enumerate(part):
            if t[2] is not None:
                vec_mask[c, j + 1] = True
                vecs[c, j + 1] = t[2]
    return torch.tensor(ids), torch.tensor(weights), vec_mask, vecs


@contextmanager
def _substituted(enc: Any, mask: torch.Tensor, vecs: torch.Tensor) -> Iterator[None]:
    """Replace the token-embedding output at `mask` by `vecs` for one forward call (no table change)."""
    if not bool(mask.any()):
        yield
        return
    table = enc.get_input_embeddings()

    def hook(_mod: Any, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        m = mask.to(out.device)[..., None]
        return torch.where(m, vecs.to(out.device, out.dtype), out)

    handle = table.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def encode(model: Any, text: str, n_chunks: int, clip_skip: int = 1) -> Conditioning:
    """Encode `text` with all of the model's text encoders into `n_chunks` 77-token chunks."""
    hidden_parts, pooled = [], None
    emb = _Embeddings(model)
    roles = _encoder_roles(model)
    last = len(model.text_encoders) - 1
    for idx, (enc, tok) in enumerate(zip(model.text_encoders, model.tokenizers, strict=True)):
        width = _width(enc)
        rows, wrows, vmask, vecs = _rows(tok, chunks_of(tok, text, emb, roles[idx], width), n_chunks, width)
        with _substituted(enc, vmask, vecs):
            out = enc(rows.to(model.device), output_hidden_states=True)
        hs = out.hidden_states
        if model.family.xl:
            # SDXL conditions on the penultimate layer of its encoders (no final norm); clip skip
            # counts from there: clip_skip 2 = one layer earlier still.
            z = hs[max(-len(hs), -(1 + clip_skip))]
            if idx == last:
                pooled = out.text_embeds[:1]
        elif clip_skip > 1:
            # A1111 clip skip: an earlier layer, still through the final layer norm.
            z = getattr(enc, "text_model", enc).final_layer_norm(hs[max(-len(hs), -clip_skip)])
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


def _lerp(a: Conditioning, b: Conditioning, r: float) -> Conditioning:
    pooled = None if a.pooled is None or b.pooled is None else torch.lerp(a.pooled, b.pooled, r)
    return Conditioning(torch.lerp(a.embeds, b.embeds, r), pooled)


def encode_pair(
    model: Any,
    prompt: str,
    negative: str,
    clip_skip: int = 1,
    *,
    blend: Blend | None = None,
    networks: bool = True,
    extra_networks: Sequence[NetworkTag] = (),
) -> tuple[Conditioning, Conditioning]:
    """Positive and negative with equal chunk counts (CFG batches them together).

    Also activates the prompt's `<lora:…>` tags, plus `extra_networks`, on `model` for the rest of
    the job (`networks=False` only strips them); the queue reverts them when the job ends.
    """
    prompt, tags = extract_networks(prompt)
    negative, _ = extract_networks(negative)
    if blend is not None:
        blend = Blend(extract_networks(blend.prompt)[0], blend.ratio)
    if networks:
        activate_networks(model, [*tags, *extra_networks])
    texts = [prompt, negative] + ([blend.prompt] if blend is not None and blend.ratio != 0 else [])
    n = max(n_chunks_for(tok, t, model) for tok in model.tokenizers for t in texts)
    cond = encode(model, prompt, n, clip_skip)
    if len(texts) == 3:
        assert blend is not None
        cond = _lerp(cond, encode(model, blend.prompt, n, clip_skip), blend.ratio)
    return cond, encode(model, negative, n, clip_skip)


def encode_region(
    model: Any, prompt: str, negative: str, clip_skip: int = 1, loras: Sequence[NetworkTag] = ()
) -> tuple[Conditioning, Conditioning]:
    """A region's positive and negative, its LoRAs' text-encoder part applied while it is encoded.

    The region's `<lora:…>` tags count as `loras`; their UNet part is not applied here (the UNet is
    shared by every region: `region_unet_networks` lists what the job activates for the whole canvas).
    """
    _, tags = extract_networks(prompt)
    with text_loras(model, [*tags, *loras]):
        return encode_pair(model, prompt, negative, clip_skip, networks=False)


def region_unet_networks(prompt: str, loras: Sequence[NetworkTag] = ()) -> list[NetworkTag]:
    """The UNet part of a region's LoRAs (its tags and `loras`), for the job's global activation."""
    return [NetworkTag(t.name, t.unet, 0.0) for t in [*extract_networks(prompt)[1], *loras] if t.unet != 0]
