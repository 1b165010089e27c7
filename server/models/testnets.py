"""Diffusers / transformers components built from a family's configs: random weights for the test files, or
empty (meta device, under `accelerate.init_empty_weights`) for the loader to fill."""

from __future__ import annotations

import torch

from . import arch


def text_model(config: arch.Config) -> torch.nn.Module:
    """A CLIP text encoder (with projection for SDXL's second encoder) from its transformers config."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(**{k: v for k, v in config.items() if k not in ("architectures", "model_type")})
    cls = CLIPTextModelWithProjection if "WithProjection" in config["architectures"][0] else CLIPTextModel
    return cls(cfg)


def from_config(cls: type, config: arch.Config) -> torch.nn.Module:
    """A diffusers model class (`UNet2DConditionModel`, `AutoencoderKL`) from a saved config dict."""
    return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
