"""Diffusers' own pipelines, the reference our loader and our sampling loop are held to.

`from_single_file`: diffusers' own single-file load with an offline config folder written from `arch`,
which the loader is tested against (same weights, bit for bit) and measured against (`bench/models.py`);
the server itself loads through `loader`, which reads each tensor once, in its final dtype, onto the device.
`assemble`: a diffusers pipeline built on the very modules our loader loaded, which the parity tests and
the GPU baseline run beside our own loop.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import arch, detect
from .checkpoint import read_header
from .tokenizer import clip_tokenizer

if TYPE_CHECKING:
    from .loader import LoadedModel


def write_config_dir(family: arch.Family, root: Path) -> None:
    """A diffusers pipeline folder holding only configs (`config=` of `from_single_file`, never the hub)."""
    cfg = family.configs
    index: dict[str, Any] = {
        "_class_name": family.pipeline_class,
        "scheduler": ["diffusers", cfg["scheduler"]["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if family.refiner:  # bigG only, no CLIP-L
        index |= {"text_encoder": [None, None], "tokenizer": [None, None], "requires_aesthetics_score": True}
    if family.xl:
        index |= {
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "force_zeros_for_empty_prompt": True,
        }
    else:
        index |= {"safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False}
    (root / "model_index.json").write_text(json.dumps(index))
    for comp, conf in cfg.items():
        (root / comp).mkdir()
        fname = "scheduler_config.json" if comp == "scheduler" else "config.json"
        (root / comp / fname).write_text(json.dumps(conf))


def pipeline_class(family: arch.Family) -> Any:
    import diffusers

    return getattr(diffusers, family.pipeline_class)


def from_single_file(path: Path, dtype: torch.dtype) -> Any:
    """The diffusers pipeline for a `.safetensors` checkpoint, loaded by diffusers in `dtype`."""
    shapes, meta = read_header(path)
    family = detect.family_for(shapes, meta)
    kw: dict[str, Any] = {"tokenizer": None if family.refiner else clip_tokenizer()}
    if family.refiner:
        kw |= {"text_encoder": None, "requires_aesthetics_score": True}
    if family.xl:
        kw["tokenizer_2"] = clip_tokenizer("!")
    else:
        kw |= {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    with tempfile.TemporaryDirectory(prefix="sdbridge-cfg-") as tmp:
        write_config_dir(family, Path(tmp))
        return pipeline_class(family).from_single_file(
            str(path), config=tmp, local_files_only=True, torch_dtype=dtype, **kw
        )


def assemble(model: LoadedModel, scheduler: Any, kind: str = "", vae: Any = None, **extra: Any) -> Any:
    """diffusers' `StableDiffusion[XL]{kind}Pipeline` (kind "", "Img2Img" or "ControlNet") on `model`'s own
    UNet, VAE (or `vae`), text encoders and tokenizers: no safety checker, no watermark, as our server."""
    import diffusers

    parts: dict[str, Any] = {"vae": model.vae if vae is None else vae, "unet": model.unet, "scheduler": scheduler}
    parts |= {"text_encoder": model.text_encoders[0], "tokenizer": model.tokenizers[0]}
    if model.family.xl:
        parts |= {"text_encoder_2": model.text_encoders[1], "tokenizer_2": model.tokenizers[1]}
        parts["add_watermarker"] = False
    else:
        parts |= {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    cls = getattr(diffusers, f"StableDiffusion{'XL' if model.family.xl else ''}{kind}Pipeline")
    pipe = cls(**parts, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_kwargs(cond: Any, uncond: Any) -> dict[str, Any]:
    """The pipeline keywords that hand it our encoder's embeddings (`prompt.Conditioning`: embeds, pooled),
    so both sides sample the same conditioning."""
    kw = {"prompt_embeds": cond.embeds, "negative_prompt_embeds": uncond.embeds}
    if cond.pooled is not None:
        kw |= {"pooled_prompt_embeds": cond.pooled, "negative_pooled_prompt_embeds": uncond.pooled}
    return kw
