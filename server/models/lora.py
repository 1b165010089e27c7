"""LoRA files (kohya and diffusers key layouts) applied by patching weights, reverted after the job.

`W += weight * alpha/rank * up @ down` for every matched layer (linear, 1x1 and 3x3 convs). The
original tensors are copied first (to the CPU) and copied back by the model's undo list at the end
of the job, so a later job without the LoRA sees the checkpoint's exact bits again.

Key layouts understood:
- kohya: `lora_unet_<module path with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`, the UNet
  path in diffusers naming (SD1.5 trainers) or LDM naming (`input_blocks_4_1_…`, SDXL trainers);
  text encoders `lora_te_` (SD1.5), `lora_te1_` / `lora_te2_` (SDXL).
- diffusers / PEFT: `unet.<path>.lora_A.weight` / `lora_B`, `….lora.down.weight` / `.lora.up`,
  the attention-processor form `….processor.to_q_lora.down.weight`; `text_encoder.` /
  `text_encoder_2.`; an optional `.alpha`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import ldm_keys
from .cache import FileCache, nbytes
from .files import find_files

log = logging.getLogger(__name__)

LORA_DIRS = ("Lora", "loras", "LyCORIS", "models/Lora", "models/loras")
SUFFIXES = (".safetensors",)


def discover_loras(root: Path) -> dict[str, Path]:
    """Name (path inside its folder, no suffix) → file. Pickled LoRAs are not offered (they run code)."""
    return find_files(root, LORA_DIRS, SUFFIXES)


@dataclass(frozen=True)
class LoraPair:
    """One layer's low-rank update: target (component, module path) and its factors."""

    component: str  # "unet" | "te0" | "te1"
    module: str  # normalised module path (`_`-joined)
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None


class BadLora(ValueError):
    pass


# Parsed LoRA files stay in (CPU) memory for the next job: the same LoRA is usually used again and again.
LORA_CACHE_BYTES = 1 << 30
_PARSED: FileCache[list[LoraPair]] = FileCache(
    LORA_CACHE_BYTES, lambda pairs: nbytes(t for p in pairs for t in (p.down, p.up))
)


def load_pairs(path: Path) -> list[LoraPair]:
    """Parse a LoRA file into per-layer pairs (cached by file: repeated jobs don't re-read it)."""
    return _PARSED.get(path, _parse_file)


def _parse_file(path: Path) -> list[LoraPair]:
    from safetensors.torch import load_file

    return parse_state_dict(load_file(str(path)))


_KOHYA = re.compile(r"^(lora_unet|lora_te1|lora_te2|lora_te)_(.+?)\.(lora_down|lora_up|alpha)(?:\.weight)?$")
_DIFFUSERS = re.compile(
    r"^(unet|text_encoder|text_encoder_2)\.(.+?)[._](lora_A|lora_B|lora\.down|lora\.up|lora_down|lora_up|alpha)"
    r"(?:\.weight)?$"
)
_COMPONENT = {
    "lora_unet": "unet",
    "lora_te": "te0",
    "lora_te1": "te0",
    "lora_te2": "te1",
    "unet": "unet",
    "text_encoder": "te0",
    "text_encoder_2": "te1",
}
_ROLE = {
    "lora_down": "down",
    "lora_A": "down",
    "lora.down": "down",
    "lora_up": "up",
    "lora_B": "up",
    "lora.up": "up",
    "alpha": "alpha",
}


def _diffusers_module(path: str) -> str:
    # attention-processor form: `attn1.processor.to_q` (from `to_q_lora.down`) → `attn1.to_q`
    m = re.match(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)$", path)
    if m:
        path = f"{m.group(1)}.{m.group(2)}" + (".0" if m.group(2) == "to_out" else "")
    return path.replace(".", "_")


def parse_state_dict(sd: dict[str, torch.Tensor]) -> list[LoraPair]:
    groups: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = 0
    for key, value in sd.items():
        m = _KOHYA.match(key)
        if m:
            comp, module, role = _COMPONENT[m.group(1)], m.group(2), _ROLE[m.group(3)]
        else:
            m = _DIFFUSERS.match(key)
            if not m:
                unknown += 1
                continue
            comp, module, role = _COMPONENT[m.group(1)], _diffusers_module(m.group(2)), _ROLE[m.group(3)]
        groups.setdefault((comp, module), {})[role] = value
    pairs = []
    for (comp, module), parts in groups.items():
        if "down" not in parts or "up" not in parts:
            unknown += len(parts)
            continue
        alpha = float(parts["alpha"]) if "alpha" in parts else None
        pairs.append(LoraPair(comp, module.removeprefix("text_model_"), parts["down"], parts["up"], alpha))
    if not pairs:
        raise BadLora("no LoRA layers found (expected kohya lora_up/lora_down or diffusers lora_A/lora_B keys)")
    if unknown:
        log.info("LoRA: %d keys of an unsupported kind ignored", unknown)
    return pairs


def _module_index(module: torch.nn.Module, ldm_map: dict[str, str] | None = None) -> dict[str, torch.nn.Module]:
    """`_`-joined module path → module, for every module with a weight (text_model. prefix dropped)."""
    index: dict[str, torch.nn.Module] = {}
    for name, sub in module.named_modules():
        if isinstance(getattr(sub, "weight", None), torch.Tensor) and name:
            index[name.removeprefix("text_model.").replace(".", "_")] = sub
    if ldm_map:
        index |= {ldm: index[diff] for ldm, diff in ldm_map.items() if diff in index}
    return index


def _unet_ldm_names(unet: Any) -> dict[str, str]:
    """LDM module path (`input_blocks_4_1_…`) → diffusers path, from the same key map the test models use."""
    cfg = unet.config
    up_attn = ["CrossAttn" in t for t in cfg.up_block_types]
    keys = {k: torch.empty(0) for k in unet.state_dict() if k.endswith(".weight")}
    out: dict[str, str] = {}
    for diff_key, ldm_key in zip(keys, ldm_keys.unet_to_ldm(keys, cfg.layers_per_block, up_attn), strict=True):
        ldm = ldm_key.removeprefix("model.diffusion_model.").removesuffix(".weight").replace(".", "_")
        out[ldm] = diff_key.removesuffix(".weight").replace(".", "_")
    return out


def _targets(model: Any) -> dict[str, dict[str, torch.nn.Module]]:
    """Per-model cache of the module indexes (building the LDM map walks the whole UNet once)."""
    cached = model.extras.get("lora_targets")
    if cached is None:
        cached = {"unet": _module_index(model.unet, _unet_ldm_names(model.unet))}
        for i, te in enumerate(model.text_encoders):
            cached[f"te{i}"] = _module_index(te)
        model.extras["lora_targets"] = cached
    return cached


def _delta(pair: LoraPair, weight: torch.Tensor) -> torch.Tensor:
    down, up = pair.down.float(), pair.up.float()
    rank = down.shape[0]
    scale = (pair.alpha / rank) if pair.alpha is not None else 1.0
    if weight.ndim == 4:  # conv: down [r, in, kh, kw], up [out, r, 1, 1]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)
    else:
        delta = up.reshape(up.shape[0], -1) @ down.reshape(rank, -1)
    if delta.shape != weight.shape:
        raise BadLora(f"layer {pair.module}: LoRA shape {tuple(delta.shape)} does not fit weight {tuple(weight.shape)}")
    return delta * scale


@dataclass(frozen=True)
class Applied:
    name: str
    layers: int
    skipped: int


@torch.no_grad()
def apply_loras(model: Any, loras: list[tuple[str, Path, float, float]]) -> tuple[list[Applied], Callable[[], None]]:
    """Patch `model` with (name, file, unet weight, text-encoder weight) LoRAs.

    Returns a report and the function that restores the original weights (the caller registers it
    on the model's undo list). Every touched weight is backed up once (on the CPU) before its first
    change, so several LoRAs on one layer add up and one restore brings back the original bits. On
    an error the weights are restored before raising.
    """
    targets = _targets(model)
    backups: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def restore() -> None:
        with torch.no_grad():
            for param, original in backups.values():
                param.copy_(original.to(param.device))

    report = []
    try:
        for name, path, w_unet, w_te in loras:
            try:
                pairs = load_pairs(path)
            except Exception as exc:
                raise BadLora(f"LoRA {name!r} cannot be read: {exc}") from exc
            done = skipped = 0
            for pair in pairs:
                strength = w_unet if pair.component == "unet" else w_te
                module = targets.get(pair.component, {}).get(pair.module)
                if module is None:
                    skipped += 1
                    continue
                if strength == 0:  # weight 0: the layer is left exactly as it is
                    continue
                param = module.weight
                if id(param) not in backups:
                    backups[id(param)] = (param, param.detach().to("cpu", copy=True))
                try:
                    delta = _delta(pair, param).to(param.device)
                except BadLora as exc:
                    raise BadLora(f"LoRA {name!r} does not fit this model (made for another family?): {exc}") from exc
                param.copy_((param.float() + strength * delta).to(param.dtype))
                done += 1
            if skipped and not done and skipped == len(pairs):
                raise BadLora(f"LoRA {name!r} matches no layer of this model (made for another model family?)")
            if skipped:
                log.warning("LoRA %s: %d of %d layers not found in the model", name, skipped, len(pairs))
            report.append(Applied(name, done, skipped))
    except BaseException:
        restore()
        raise
    return report, restore
