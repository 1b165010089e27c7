"""Tell a checkpoint's family from its state-dict keys (and, for tiny test models, its header)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import arch

_XL_TE2 = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
_XL_REFINER = "conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight"
_SD2_TE = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"
_SD1_TE = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


class UnsupportedCheckpoint(ValueError):
    pass


def family_name(shapes: Mapping[str, Any]) -> str:
    """`shapes` maps key -> shape (a tuple/list); only presence and conv_in width matter."""
    if _CONV_IN not in shapes:
        raise UnsupportedCheckpoint("no UNet (model.diffusion_model.*) in this file: not an SD checkpoint")
    inpaint = shapes[_CONV_IN][1] == 9
    if _XL_TE2 in shapes:
        return "sdxl-inpaint" if inpaint else "sdxl"
    if _XL_REFINER in shapes:
        return "sdxl-refiner"  # usable only as `refiner` (registry keeps it out of the main list)
    if _SD2_TE in shapes:
        if inpaint:
            raise UnsupportedCheckpoint("SD2 inpainting checkpoints are not supported")
        return "sd2"
    if _SD1_TE in shapes:
        return "sd15-inpaint" if inpaint else "sd15"
    raise UnsupportedCheckpoint("unknown checkpoint layout (no known text encoder keys)")


def family_for(shapes: Mapping[str, Any], metadata: Mapping[str, str] | None) -> arch.Family:
    name = family_name(shapes)
    meta = metadata or {}
    if "sdbridge.configs" in meta:  # tiny test model: its own (small) configs
        if meta.get("sdbridge.family") != name:
            raise UnsupportedCheckpoint(f"header says {meta.get('sdbridge.family')} but keys say {name}")
        return arch.family_from_metadata(name, json.loads(meta["sdbridge.configs"]), int(meta["sdbridge.native"]))
    return arch.REAL[name]
