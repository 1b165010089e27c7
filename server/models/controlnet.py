"""ControlNet files as users keep them: discovery, family and kind, packaged configs, offline loading.

Layouts understood (all loaded without a hub):
- single-file LDM layout, the SD1.5 v1.1 family (`control_v11p_sd15_canny.pth` and its
  `.safetensors` conversions): `control_model.*` keys, or the same keys without the prefix;
- single-file diffusers layout (`controlnet_cond_embedding.*`, how SDXL ControlNets are shipped);
- diffusers folders (`config.json` with `_class_name: ControlNetModel` + weights).
Single files are loaded by diffusers' `ControlNetModel.from_single_file` with a config folder written
from the packaged configs below (or, for tiny test files, from the config in the file's header), the
way `loader` loads checkpoints. Pickled `.pth` files only with `--allow-pickle`.

The family (sd15 | sd2 | sdxl) comes from the weights (the cross-attention width); the kind (canny,
depth, lineart, …) from the file name where the usual naming allows; a request may override it.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import arch
from .checkpoint import read_header
from .files import discover_entries

log = logging.getLogger(__name__)

CONTROLNET_DIRS = ("ControlNet", "controlnet", "models/ControlNet", "models/controlnet")
SINGLE_FILE = (".safetensors",)
PICKLED = (".pth", ".pt")

# Kinds by the words of a file name (adjacent words joined count too: `soft_edge`, `line_art`), most
# specific first: `lineart_anime` before `lineart`.
KIND_WORDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("inpaint", frozenset({"inpaint", "inpainting"})),
    ("lineart_anime", frozenset({"lineartanime", "animelineart"})),
    ("lineart", frozenset({"lineart"})),
    ("softedge", frozenset({"softedge", "hed", "pidi", "pidinet", "teed"})),
    ("scribble", frozenset({"scribble", "sketch"})),
    ("canny", frozenset({"canny"})),
    ("depth", frozenset({"depth", "midas", "zoe", "leres"})),
    ("normal", frozenset({"normal", "normalbae"})),
    ("openpose", frozenset({"openpose", "pose", "dwpose"})),
    ("seg", frozenset({"seg", "segmentation", "ade20k"})),
    ("mlsd", frozenset({"mlsd"})),
    ("tile", frozenset({"tile", "blur", "unblur"})),
    ("ip2p", frozenset({"ip2p"})),
    ("shuffle", frozenset({"shuffle"})),
    ("qrcode", frozenset({"qrcode", "qr"})),
)
KINDS: tuple[str, ...] = tuple(k for k, _ in KIND_WORDS)
FAMILY_BY_CONTEXT = {768: "sd15", 1024: "sd2", 2048: "sdxl"}


class NotAControlNet(ValueError):
    """A file in a ControlNet folder that is not a ControlNet we can load (control-LoRA, T2I-Adapter…)."""


def kind_from_name(name: str) -> str | None:
    """The control kind the usual file naming implies (`control_v11p_sd15_canny` → canny), or None."""
    words = [w for w in re.split(r"[^a-z0-9]+", Path(name).name.lower()) if w]
    found = set(words) | {a + b for a, b in zip(words, words[1:], strict=False)}
    found |= {a + b + c for a, b, c in zip(words, words[1:], words[2:], strict=False)}
    for kind, keys in KIND_WORDS:
        if found & keys:
            return kind
    return None


def controlnet_config(unet: arch.Config, cond_channels: tuple[int, ...] = (16, 32, 96, 256)) -> arch.Config:
    """A ControlNetModel config mirroring a UNet config (the ControlNet is a copy of the UNet's encoder)."""
    shared = (
        "act_fn",
        "attention_head_dim",
        "block_out_channels",
        "cross_attention_dim",
        "down_block_types",
        "downsample_padding",
        "flip_sin_to_cos",
        "freq_shift",
        "layers_per_block",
        "mid_block_scale_factor",
        "norm_eps",
        "norm_num_groups",
        "transformer_layers_per_block",
        "use_linear_projection",
        "addition_embed_type",
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
    )
    cfg = {k: unet[k] for k in shared if k in unet}
    cfg |= {"in_channels": 4, "conditioning_embedding_out_channels": list(cond_channels)}
    return {"_class_name": "ControlNetModel", **cfg}


# The published architectures (lllyasviel ControlNet v1.1 for SD1.5, thibaud's SD2.1, diffusers' SDXL).
REAL: dict[str, arch.Config] = {f: controlnet_config(arch.REAL[f].configs["unet"]) for f in ("sd15", "sd2", "sdxl")}


@dataclass(frozen=True)
class ControlNetEntry:
    name: str
    path: Path
    family: str  # sd15 | sd2 | sdxl
    kind: str | None
    layout: str  # ldm | diffusers | folder
    pickled: bool = False
    config: arch.Config | None = None  # from a tiny test file's header; None = the packaged one

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": "controlnet", "family": self.family, "kind": self.kind}


def _is_folder(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("_class_name") == "ControlNetModel"
    except (OSError, ValueError):
        return False


def family_from_shapes(shapes: dict[str, tuple[int, ...]], declared: str | None = None) -> tuple[str, str]:
    """(family, layout) from a state dict's key → shape; raises NotAControlNet for anything else.

    `declared`: the family a tiny test file records in its header (its widths are no real family's)."""
    if "controlnet_cond_embedding.conv_in.weight" in shapes:
        layout = "diffusers"
    elif any(k.endswith("input_hint_block.0.weight") for k in shapes):
        layout = "ldm"
    else:
        raise NotAControlNet("no ControlNet hint block (control-LoRA, T2I-Adapter and ControlLLLite are not supported)")
    ctx = next((s[1] for k, s in shapes.items() if k.endswith("attn2.to_k.weight") and len(s) == 2), None)
    if ctx is None:
        raise NotAControlNet("no cross-attention layers: not a Stable Diffusion ControlNet")
    xl = any(k.endswith(("add_embedding.linear_1.weight", "label_emb.0.0.weight")) for k in shapes)
    family = declared or ("sdxl" if xl else FAMILY_BY_CONTEXT.get(ctx, ""))
    if family == "sdxl" and layout == "ldm":
        raise NotAControlNet("SDXL ControlNets in the LDM layout are not supported (use the diffusers layout)")
    if not family:
        raise NotAControlNet(f"unknown cross-attention width {ctx}")
    return family, layout


def entry_for(path: Path, name: str) -> ControlNetEntry:
    """Describe one ControlNet file or folder (raises NotAControlNet / OSError for anything else)."""
    kind = kind_from_name(name)
    if path.is_dir():
        cfg = json.loads((path / "config.json").read_text())
        ctx = cfg.get("cross_attention_dim", 768)
        fam = "sdxl" if cfg.get("addition_embed_type") == "text_time" else FAMILY_BY_CONTEXT.get(ctx, "sd15")
        return ControlNetEntry(name, path, fam, kind, "folder")
    suffix = path.suffix.lower()
    if suffix in PICKLED:
        # The header of a pickle cannot be read without unpickling it: assume SD1.5 (the v1.1 family),
        # checked again from the weights when it is loaded (with --allow-pickle).
        return ControlNetEntry(name, path, "sd15", kind, "ldm", pickled=True)
    shapes, meta = read_header(path)
    family, layout = family_from_shapes(shapes, meta.get("sdbridge.family"))
    config = json.loads(meta["sdbridge.config"]) if "sdbridge.config" in meta else None
    return ControlNetEntry(name, path, family, kind, layout, config=config)


def discover_controlnets(root: Path) -> dict[str, ControlNetEntry]:
    """Name (path inside its folder, without suffix) → entry; the first folder wins on a clash."""
    return discover_entries(root, CONTROLNET_DIRS, SINGLE_FILE + PICKLED, entry_for, bundle=_is_folder)


def load_controlnet(entry: ControlNetEntry, device: torch.device, dtype: torch.dtype, allow_pickle: bool) -> Any:
    """The entry as a `diffusers.ControlNetModel` on `device` in `dtype`, in eval mode."""
    from diffusers import ControlNetModel

    from .pickled import read_pickled, tensors

    if entry.layout == "folder":
        net = ControlNetModel.from_pretrained(str(entry.path), local_files_only=True, torch_dtype=torch.float32)
        return _place(net, device, dtype)
    config = dict(entry.config or REAL[entry.family])
    with tempfile.TemporaryDirectory(prefix="sdbridge-cn-") as tmp:
        source = str(entry.path)
        if entry.pickled:
            state = read_pickled(entry.path, allow_pickle)
            family, _ = family_from_shapes({k: tuple(v.shape) for k, v in tensors(state).items()})
            config = dict(REAL[family])
            from safetensors.torch import save_file

            source = str(Path(tmp) / "converted.safetensors")
            save_file(tensors(state), source)
        if entry.kind == "shuffle":
            config["global_pool_conditions"] = True  # v1.1 shuffle pools its residuals (its published config)
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        net = ControlNetModel.from_single_file(source, config=tmp, local_files_only=True, torch_dtype=torch.float32)
    return _place(net, device, dtype)


def _place(net: Any, device: torch.device, dtype: torch.dtype) -> Any:
    return net.to(device, dtype).eval().requires_grad_(False)
