"""Load a checkpoint into resident torch modules, offline, in the dtype and on the device it runs on.

Single-file checkpoints: `checkpoint.read_checkpoint` streams each tensor into its component's dtype
on the device; the components are built empty (meta device) from the configs in `arch` (never the
hub) and take the tensors as they are (`assign`), after diffusers' own LDM → diffusers key
conversion. No float32 round trip, no second copy. Diffusers folders go through
`from_pretrained(local_files_only=True)` in the target dtype.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import arch, detect
from .batchinv import make_batch_invariant
from .checkpoint import read_checkpoint, read_header
from .testnets import from_config, text_model
from .tokenizer import clip_tokenizer


class PickleRefused(PermissionError):
    pass


@dataclass
class LoadedModel:
    """The components the pipelines use; stays resident until another model is selected."""

    name: str
    family: arch.Family
    device: torch.device
    dtype: torch.dtype
    unet: Any
    vae: Any
    text_encoders: list[Any]
    tokenizers: list[Any]
    scheduler_config: dict[str, Any]
    vae_dtype: torch.dtype = torch.float32
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    def push_undo(self, fn: Callable[[], None]) -> None:
        """Register a per-job change (LoRA patch, VAE swap) to revert when the job ends."""
        self.extras.setdefault("undo", []).append(fn)

    def undo_job_changes(self) -> None:
        """Revert every per-job change, newest first (the queue calls this after each job)."""
        undo = self.extras.get("undo", [])
        while undo:
            undo.pop()()


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def vae_dtype_for(vae_config: dict[str, Any], dtype: torch.dtype) -> torch.dtype:
    """SDXL's VAE overflows in fp16 (NaN → black images): it runs in fp32 when its config says so."""
    return torch.float32 if vae_config.get("force_upcast", False) and dtype == torch.float16 else dtype


def _ready(model: LoadedModel) -> LoadedModel:
    """Inference mode, and the batch-invariant UNet (`batchinv`) every sampling path relies on."""
    for m in (model.unet, model.vae, *model.text_encoders):
        m.eval().requires_grad_(False)
    make_batch_invariant(model.unet)
    return model


def _tokenizers(family: arch.Family) -> list[Any]:
    if family.refiner:
        return [clip_tokenizer("!")]
    return [clip_tokenizer()] + ([clip_tokenizer("!")] if family.xl else [])


def _scheduler_config(config: dict[str, Any]) -> dict[str, Any]:
    """The scheduler config as diffusers fills it in (defaults included), as a pipeline would hold it."""
    import diffusers

    return dict(getattr(diffusers, config["_class_name"]).from_config(config).config)


# LDM prefixes the components are read from; anything else in a file (EMA weights, …) is skipped.
_VAE_PREFIX = "first_stage_model."
_USED = ("model.diffusion_model.", _VAE_PREFIX, "cond_stage_model.", "conditioner.embedders.")


def _empty(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    from accelerate import init_empty_weights

    with init_empty_weights():  # parameters on the meta device: nothing allocated, nothing initialised
        return build()


def _fill(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    """Give an empty module the loaded tensors themselves (no copy); every parameter must be there."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"the checkpoint has no {what} weights for {missing[:3]} ({len(missing)} missing)")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        shapes = f"{tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
        raise ValueError(f"{what} weight {k} is {shapes}")
    module.load_state_dict({k: state[k] for k in own}, strict=True, assign=True)
    return module


def _text_encoders(sd: dict[str, torch.Tensor], family: arch.Family) -> list[Any]:
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    def clip(config: dict[str, Any]) -> Any:
        model = _empty(lambda: text_model(config))
        state = convert_ldm_clip_checkpoint(sd)
        if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
            state = {k.removeprefix("text_model."): v for k, v in state.items()}
        return _fill(model, state, "text encoder")

    def open_clip(config: dict[str, Any], prefix: str) -> Any:
        model = _empty(lambda: text_model(config))
        return _fill(model, convert_open_clip_checkpoint(model, sd, prefix=prefix), "text encoder")

    cfg = family.configs
    if family.refiner:
        return [open_clip(cfg["text_encoder_2"], "conditioner.embedders.0.model.")]
    if family.xl:
        return [clip(cfg["text_encoder"]), open_clip(cfg["text_encoder_2"], "conditioner.embedders.1.model.")]
    if family.name == "sd2":
        return [open_clip(cfg["text_encoder"], "cond_stage_model.model.")]
    return [clip(cfg["text_encoder"])]


def build(
    sd: dict[str, torch.Tensor], name: str, family: arch.Family, device: torch.device, dtype: torch.dtype
) -> LoadedModel:
    """A model from an LDM-layout state dict whose tensors are already on `device` in their dtypes."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    cfg = family.configs
    unet = _fill(
        _empty(lambda: from_config(UNet2DConditionModel, cfg["unet"])),
        convert_ldm_unet_checkpoint(sd, cfg["unet"]),
        "UNet",
    )
    vae = _fill(
        _empty(lambda: from_config(AutoencoderKL, cfg["vae"])), convert_ldm_vae_checkpoint(sd, cfg["vae"]), "VAE"
    )
    tes = _text_encoders(sd, family)
    sched = _scheduler_config(cfg["scheduler"])
    model = LoadedModel(name, family, device, dtype, unet, vae, tes, _tokenizers(family), sched)
    model.vae_dtype = vae_dtype_for(cfg["vae"], dtype)
    return _ready(model)  # already on the device in its dtypes: the tensors were read there


def load_single_file(
    path: Path, name: str, device: torch.device, dtype: torch.dtype, allow_pickle: bool
) -> LoadedModel:
    if path.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin"):
        if not allow_pickle:
            raise PickleRefused(
                f"{path.name} is a pickled checkpoint; loading it can run arbitrary code. "
                "Convert it to .safetensors or start the server with --allow-pickle."
            )
        raw = torch.load(str(path), map_location="cpu", weights_only=False)
        state = {k: v for k, v in raw.get("state_dict", raw).items() if isinstance(v, torch.Tensor)}
        family = detect.family_for({k: tuple(v.shape) for k, v in state.items()}, None)
        vdt = vae_dtype_for(family.configs["vae"], dtype)
        sd = {
            k: v.to(device, vdt if k.startswith(_VAE_PREFIX) else dtype) if v.is_floating_point() else v.to(device)
            for k, v in state.items()
            if k.startswith(_USED)
        }
        return build(sd, name, family, device, dtype)
    shapes, meta = read_header(path)
    family = detect.family_for(shapes, meta)
    vdt = vae_dtype_for(family.configs["vae"], dtype)

    def dtype_for(key: str) -> torch.dtype | None:
        if key.startswith(_VAE_PREFIX):
            return vdt
        return dtype if key.startswith(_USED) else None

    return build(read_checkpoint(path, device, dtype_for), name, family, device, dtype)


def _weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())


def file_stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """What identifies the loaded contents: size and mtime of the file (of a folder's index and weights)."""
    files = [path] if path.is_file() else [path / "model_index.json", *_weight_files(path)]
    return tuple((str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in files)


def estimate_bytes(path: Path, dtype: torch.dtype) -> int:
    """Memory the loaded model will take, known before loading it (from a safetensors header: exactly)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in _weight_files(path))
    if path.suffix.lower() != ".safetensors":
        return path.stat().st_size
    shapes, meta = read_header(path)
    vdt = vae_dtype_for(detect.family_for(shapes, meta).configs["vae"], dtype)
    total = 0
    for key, shape in shapes.items():
        if key.startswith(_USED):
            n = 1
            for d in shape:
                n *= d
            total += n * (vdt if key.startswith(_VAE_PREFIX) else dtype).itemsize
    return total


def load_diffusers_folder(path: Path, name: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    import diffusers

    index = json.loads((path / "model_index.json").read_text())
    xl = "text_encoder_2" in index
    unet_cfg = json.loads((path / "unet" / "config.json").read_text())
    inpaint = unet_cfg.get("in_channels") == 9
    fam_name = ("sdxl" if xl else "sd15") + ("-inpaint" if inpaint else "")
    if not xl and unet_cfg.get("cross_attention_dim") == 1024:
        fam_name = "sd2"
    native = int(unet_cfg.get("sample_size", 64)) * 8
    family = arch.Family(fam_name, xl, inpaint, native, {})
    cls = getattr(diffusers, family.pipeline_class)
    extra: dict[str, Any] = {} if xl else {"safety_checker": None, "requires_safety_checker": False}
    vdt = vae_dtype_for(json.loads((path / "vae" / "config.json").read_text()), dtype)
    dtypes = {"default": dtype, "vae": vdt}  # read in the dtypes they run in: no float32 round trip
    pipe = cls.from_pretrained(str(path), local_files_only=True, torch_dtype=dtypes, **extra)
    tes = [pipe.text_encoder] + ([pipe.text_encoder_2] if xl else [])
    sched = dict(pipe.scheduler.config)
    model = LoadedModel(name, family, device, dtype, pipe.unet, pipe.vae, tes, _tokenizers(family), sched)
    model.vae_dtype = vdt
    for te in tes:
        te.to(device)
    pipe.unet.to(device)
    pipe.vae.to(device)
    return _ready(model)
