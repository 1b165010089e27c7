"""A1111 prompt syntax → text-encoder conditioning.

Syntax (A1111 habits, plus compel's `++`/`--`):
- `(text)` ×1.1, `[text]` ÷1.1, `(text:1.3)` explicit, `\\(` escapes.
- `word++` / `word--` (also `(a phrase)+++`): ×1.1ⁿ / ×0.9ⁿ (compel). Only a run of `+`/`-` that
  ends the word (followed by a space, punctuation or the end) counts, so `t-shirt` stays text.
- `BREAK` (upper case, a word of its own) ends the current 75-token chunk; the rest starts a new one.
- Prompts longer than 75 tokens are encoded in 75-token chunks and concatenated (A1111), so
  nothing is silently truncated. Weights scale the token embeddings, then the mean is restored.
- `<lora:name:weight>` / `<lora:name:unet_weight:te_weight>` tags are taken out of the text and
  the LoRAs activated on the model for the current job (see `models.lora`); tags in the negative
  prompt are removed and ignored (as A1111 does for the negative).
- Textual-inversion embeddings: a known embedding name written as a word is replaced by its
  vectors (A1111); an unknown word is just a word. `embedding:name` is an explicit reference:
  an unknown name there is an `unknown_model` error.
- Blending two prompts: `encode_pair(..., blend=Blend(prompt, ratio))` mixes the embeddings
  (and SDXL pooled vectors) of the prompt and the blend prompt: (1-ratio)·a + ratio·b.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .protocol import ProtocolError

_MODS = r"(?:(\++|-+)(?=[\s,.;:!?)\]]|$))?"
_NUM = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))"
_TOKEN = re.compile(
    r"\\[()\[\]\\]|\(|\[|\]" + r"|:\s*" + _NUM + r"\s*\)" + _MODS + r"|\)" + _MODS + r"|[^\\()\[\]:]+|:"
)
_WORD_MODS = re.compile(r"([^\s,.;:!?+\-()\[\]]+)(\++|-+)(?=[\s,.;:!?]|$)")
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
_NETWORK = re.compile(r"<(lora|lyco):([^:<>]+)(?::([^:<>]*))?(?::([^:<>]*))?>", re.IGNORECASE)
_EXPLICIT_EMB = re.compile(r"\bembedding:([^\s,()\[\]<>:]+)")
BREAK = "\x00BREAK\x00"  # marker fragment produced by parse_weights
CHUNK = 75


def _mod_factor(mods: str | None) -> float | None:
    if not mods:
        return None
    return 1.1 ** len(mods) if mods[0] == "+" else 0.9 ** len(mods)


def _split_word_mods(text: str, weight: float) -> list[list[Any]]:
    """`a red cat++ on` → [a red , 1], [cat, 1.21], [ on, 1]."""
    out: list[list[Any]] = []
    pos = 0
    for m in _WORD_MODS.finditer(text):
        out.append([text[pos : m.start()], weight])
        out.append([m.group(1), weight * (_mod_factor(m.group(2)) or 1.0)])
        pos = m.end()
    out.append([text[pos:], weight])
    return [item for item in out if item[0]]


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Split `text` into (fragment, weight) pairs; `BREAK` comes out as its own fragment (`BREAK`)."""
    out: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for item in out[start:]:
            item[1] *= factor

    for m in _TOKEN.finditer(text):
        tok, weight = m.group(0), m.group(1)
        mods = _mod_factor(m.group(2) or m.group(3))
        if tok.startswith("\\"):
            out.append([tok[1:], 1.0])
        elif tok == "(":
            round_open.append(len(out))
        elif tok == "[":
            square_open.append(len(out))
        elif weight is not None and round_open:
            scale(round_open.pop(), float(weight) * (mods or 1.0))
        elif tok.startswith(")") and round_open:
            # `(phrase)++` is compel's group weight: it replaces the bracket's own ×1.1
            scale(round_open.pop(), mods if mods is not None else 1.1)
        elif tok == "]" and square_open:
            scale(square_open.pop(), 1 / 1.1)
        elif tok[0] not in "():":
            for i, piece in enumerate(_BREAK.split(tok)):
                if i:
                    out.append([BREAK, 1.0])
                out += _split_word_mods(piece, 1.0)
        else:
            out.append([tok, 1.0])
    for start in round_open:  # unbalanced: A1111 still applies the open brackets
        scale(start, 1.1)
    for start in square_open:
        scale(start, 1 / 1.1)
    merged: list[tuple[str, float]] = []
    for frag, w in out:
        if frag == BREAK:
            merged.append((BREAK, 1.0))
        elif merged and merged[-1][1] == w and merged[-1][0] != BREAK:
            merged[-1] = (merged[-1][0] + frag, w)
        elif frag:
            merged.append((frag, w))
    return merged or [("", 1.0)]


# --- extra networks (<lora:…>) ------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkTag:
    name: str
    unet: float
    te: float


def extract_networks(text: str) -> tuple[str, list[NetworkTag]]:
    """Remove `<lora:name[:w[:w_te]]>` tags; returns the cleaned text and the tags (weights summed per name)."""
    tags: dict[str, NetworkTag] = {}

    def num(s: str | None, default: float, whole: str) -> float:
        if s is None or not s.strip():
            return default
        try:
            return float(s)
        except ValueError:
            raise ProtocolError("bad_field", f"params.prompt: bad LoRA weight {s!r} in {whole}") from None

    for m in _NETWORK.finditer(text):
        name = m.group(2).strip()
        unet = num(m.group(3), 1.0, m.group(0))
        te = num(m.group(4), unet, m.group(0))
        prev = tags.get(name)
        tags[name] = NetworkTag(name, unet + (prev.unet if prev else 0), te + (prev.te if prev else 0))
    return _NETWORK.sub("", text), list(tags.values())


def explicit_embeddings(text: str) -> list[str]:
    return [m.group(1) for m in _EXPLICIT_EMB.finditer(text)]


def validate(text: str, manager: Any, field: str = "prompt", networks: bool = True) -> None:
    """Parse-time checks (before queueing): LoRA and explicit embedding names must exist."""
    if networks:
        _, tags = extract_networks(text)
        for tag in tags:
            manager.asset("loras", tag.name)
    known = manager.assets.get("embeddings", {})
    for name in explicit_embeddings(text):
        if name not in known:
            avail = ", ".join(sorted(known)[:10]) or "none"
            raise ProtocolError("unknown_model", f"params.{field}: unknown embedding {name!r}; available: {avail}")


def activate_networks(model: Any, tags: list[NetworkTag]) -> None:
    """Patch the LoRAs into `model` for this job (idempotent for the same set; reverted at job end)."""
    from .models import lora

    key = tuple(sorted((t.name, t.unet, t.te) for t in tags))
    active = model.extras.get("lora_active")
    if active is not None and active[0] == key:
        return
    if active is not None:
        active[1]()  # a different set within the same job: back to the checkpoint first
    if not tags:
        return
    manager = model.extras.get("manager")
    if manager is None:
        raise ProtocolError("unknown_model", f"LoRA {tags[0].name!r}: this model has no models folder to look in")
    specs = [(t.name, manager.asset("loras", t.name), t.unet, t.te) for t in tags]
    try:
        _, restore = lora.apply_loras(model, specs)
    except lora.BadLora as exc:
        raise ProtocolError("model_load", str(exc)) from exc

    def undo() -> None:
        restore()
        model.extras.pop("lora_active", None)

    model.push_undo(undo)
    model.extras["lora_active"] = (key, undo)


# --- tokens, chunks, embeddings ------------------------------------------------------------------


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
                raise ProtocolError("unknown_model", f"unknown embedding {name!r}; available: {avail}")
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
        except ProtocolError:
            return False
        return True

    def vectors(self, name: str, role: str, width: int) -> torch.Tensor:
        from .models import embeddings

        try:
            return embeddings.for_encoder(embeddings.load(self.files[name]), role, width, name)
        except (embeddings.BadEmbedding, OSError, RuntimeError) as exc:
            raise ProtocolError("model_load", f"embedding {name!r}: {exc}") from exc


def _encoder_roles(model: Any) -> list[str]:
    if model.family.refiner:
        return ["clip_g"]
    return ["clip_l", "clip_g"][: len(model.text_encoders)]


def _chunks_of(
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


def _tokens(tokenizer: Any, text: str) -> tuple[list[int], list[float]]:
    """Flat ids and weights (no embeddings, BREAK ignored): kept for callers that count tokens."""
    flat = [t for chunk in _chunks_of(tokenizer, text) for t in chunk]
    return [t[0] for t in flat], [t[1] for t in flat]


def n_chunks_for(tokenizer: Any, text: str, model: Any = None) -> int:
    emb = _Embeddings(model) if model is not None else None
    if emb is not None and model is not None:
        roles, widths = _encoder_roles(model), [_width(e) for e in model.text_encoders]
        return max(len(_chunks_of(tokenizer, text, emb, r, w)) for r, w in zip(roles, widths, strict=False))
    return len(_chunks_of(tokenizer, text))


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
        rows, wrows, vmask, vecs = _rows(tok, _chunks_of(tok, text, emb, roles[idx], width), n_chunks, width)
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
) -> tuple[Conditioning, Conditioning]:
    """Positive and negative with equal chunk counts (CFG batches them together).

    Also activates the prompt's `<lora:…>` tags on `model` for the rest of the job
    (`networks=False` only strips them); the queue reverts them when the job ends.
    """
    prompt, tags = extract_networks(prompt)
    negative, _ = extract_networks(negative)
    if blend is not None:
        blend = Blend(extract_networks(blend.prompt)[0], blend.ratio)
    if networks:
        activate_networks(model, tags)
    texts = [prompt, negative] + ([blend.prompt] if blend is not None and blend.ratio != 0 else [])
    n = max(n_chunks_for(tok, t, model) for tok in model.tokenizers for t in texts)
    cond = encode(model, prompt, n, clip_skip)
    if len(texts) == 3:
        assert blend is not None
        cond = _lerp(cond, encode(model, blend.prompt, n, clip_skip), blend.ratio)
    return cond, encode(model, negative, n, clip_skip)
