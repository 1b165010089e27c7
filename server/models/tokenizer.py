"""The CLIP BPE tokenizer, built from package data (the hub is never consulted).

`data/clip_bpe_simple_vocab_16e6.txt.gz` is OpenAI CLIP's BPE merge list (MIT, via open_clip); the
vocabulary is derived from it with CLIP's own byte-to-unicode construction.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

_N_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]  # in CLIP's byte order


@lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    raw = resources.files("server.data").joinpath("clip_bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")[1 : _N_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    units = _bytes_to_unicode()
    vocab = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges  # type: ignore[return-value]


@lru_cache(maxsize=2)
def clip_tokenizer(pad_token: str = "<|endoftext|>"):  # noqa: ANN201 - transformers type
    """SD's tokenizer; SDXL's second tokenizer pads with "!" (pad_token="!")."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        model_max_length=77,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token=pad_token,
    )
