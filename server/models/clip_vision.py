"""CLIP vision encoders (`clip_vision/`): what IP-Adapters turn a reference image into conditioning with.

Files are the transformers `CLIPVisionModelWithProjection` key layout (`vision_model.*`,
`visual_projection.weight`: ComfyUI's `clip_vision_h.safetensors`, the `image_encoder` of the
IP-Adapter release, or a whole CLIP model whose text half is ignored), or such a folder with its
`config.json`. The architecture is read from the tensor shapes (width, depth, patch, image size,
projection); only the head count and activation need a table, by width (OpenAI ViT-L/14, OpenCLIP
ViT-H/14 and ViT-bigG/14). Tiny test encoders carry their config in the header.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import read_header
from .files import discover_entries

log = logging.getLogger(__name__)

CLIP_VISION_DIRS = ("clip_vision", "models/clip_vision")
SUFFIXES = (".safetensors",)
# width → (heads, activation) of the published encoders
_BY_WIDTH = {1024: (16, "quick_gelu"), 1280: (16, "gelu"), 1664: (16, "gelu"), 768: (12, "quick_gelu")}
_PREFIX = "vision_model."


@dataclass(frozen=True)
class ClipVisionEntry:
    name: str
    path: Path
    config: dict[str, Any]

    @property
    def hidden(self) -> int:
        """Width of the hidden states (what IP-Adapter plus / full-face models read)."""
        return int(self.config["hidden_size"])

    @property
    def projection(self) -> int:
        """Width of the projected image embedding (what plain IP-Adapters read)."""
        return int(self.config["projection_dim"])


def config_from_shapes(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """A `CLIPVisionConfig` dict from a state dict's shapes (ValueError when it is no CLIP vision model)."""
    try:
        hidden = shapes[_PREFIX + "embeddings.class_embedding"][0]
        patch = shapes[_PREFIX + "embeddings.patch_embedding.weight"][-1]
        positions = shapes[_PREFIX + "embeddings.position_embedding.weight"][0]
        inter = shapes[_PREFIX + "encoder.layers.0.mlp.fc1.weight"][0]
        proj = shapes["visual_projection.weight"][0]
    except KeyError as exc:
        raise ValueError(f"not a CLIP vision model (no {exc.args[0]})") from None
    layers = 1 + max(int(k.split(".")[3]) for k in shapes if k.startswith(_PREFIX + "encoder.layers."))
    heads, act = _BY_WIDTH.get(hidden, (max(1, hidden // 64), "gelu"))
    side = math.isqrt(positions - 1)
    return {
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "patch_size": patch,
        "image_size": side * patch,
        "projection_dim": proj,
        "hidden_act": act,
        "layer_norm_eps": 1e-5,
    }


def _is_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / f).is_file() for f in ("model.safetensors",))


def entry_for(path: Path, name: str) -> ClipVisionEntry:
    if path.is_dir():
        cfg = json.loads((path / "config.json").read_text())
        cfg = cfg.get("vision_config", cfg)
        return ClipVisionEntry(name, path, {k: v for k, v in cfg.items() if not k.startswith(("_", "architectures"))})
    shapes, meta = read_header(path)
    if "sdbridge.config" in meta:
        return ClipVisionEntry(name, path, json.loads(meta["sdbridge.config"]))
    return ClipVisionEntry(name, path, config_from_shapes(shapes))


def discover_clip_vision(root: Path) -> dict[str, ClipVisionEntry]:
    return discover_entries(root, CLIP_VISION_DIRS, SUFFIXES, entry_for, bundle=_is_folder)


@dataclass
class ClipVision:
    """A loaded encoder and its image preprocessing (resize + centre crop + CLIP normalisation)."""

    model: Any
    processor: Any

    @torch.no_grad()
    def pixels(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 → the encoder's input batch of one (preprocessed exactly as diffusers' pipelines do)."""
        values = self.processor(rgb, return_tensors="pt").pixel_values
        p = next(self.model.parameters())
        return values.to(p.device, p.dtype)


def load_clip_vision(entry: ClipVisionEntry, device: torch.device, dtype: torch.dtype) -> ClipVision:
    from safetensors.torch import load_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**entry.config))
    path = entry.path / "model.safetensors" if entry.path.is_dir() else entry.path
    state = {k: v for k, v in load_file(str(path)).items() if k.startswith((_PREFIX, "visual_projection."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{entry.path.name}: weights do not fit the encoder ({(missing + unexpected)[:3]} …)")
    side = int(entry.config["image_size"])
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return ClipVision(model.to(device, dtype).eval().requires_grad_(False), processor)
