"""Prompt text → (fragment, weight) pairs, `BREAK` markers, `<lora:…>` tags and `embedding:` references.

Pure text: no model, no tokenizer (the syntax itself is described in the package docstring).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import BadPrompt

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
            raise BadPrompt(f"params.prompt: bad LoRA weight {s!r} in {whole}") from None

    for m in _NETWORK.finditer(text):
        name = m.group(2).strip()
        unet = num(m.group(3), 1.0, m.group(0))
        te = num(m.group(4), unet, m.group(0))
        prev = tags.get(name)
        tags[name] = NetworkTag(name, unet + (prev.unet if prev else 0), te + (prev.te if prev else 0))
    return _NETWORK.sub("", text), list(tags.values())


def explicit_embeddings(text: str) -> list[str]:
    return [m.group(1) for m in _EXPLICIT_EMB.finditer(text)]
