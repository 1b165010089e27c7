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

from .encode import Blend, Conditioning, encode, encode_pair, encode_region, n_chunks_for, region_unet_networks
from .networks import activate_networks, text_loras, validate
from .syntax import BREAK, CHUNK, NetworkTag, explicit_embeddings, extract_networks, parse_weights

__all__ = [
    "BREAK",
    "CHUNK",
    "Blend",
    "Conditioning",
    "NetworkTag",
    "activate_networks",
    "encode",
    "encode_pair",
    "encode_region",
    "explicit_embeddings",
    "extract_networks",
    "n_chunks_for",
    "parse_weights",
    "region_unet_networks",
    "text_loras",
    "validate",
]
